"""scikit-learn's estimator checks, replayed on images.

scikit-learn's own checks feed tabular 2-D arrays of arbitrary reals, which
are not images: the image estimators reject them by design (the data
contract), so those checks are expected failures in
``test_sklearn_conformance.py``. The checks below are their image
equivalents (as nilearn does for its image estimators).
"""

import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from sklearn_uflow import ACotrarioSegmenter, CNNFeatureTransformer, MSCaiTTransformer, UFlowDetector

X_IMAGES = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
X_NEW = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
ROWS = np.random.default_rng(1).standard_normal((6, 4 * 8 * 8))  # latents: real rows
TABULAR = np.abs(ROWS) / 10  # non-negative and in [0, 1], but 2-D: not images

IMAGE_ESTIMATORS = [
    CNNFeatureTransformer(input_size=32, device="cpu"),
    UFlowDetector(CNNFeatureTransformer(input_size=32), max_epochs=2, random_state=0, device="cpu"),
]
INIT_PARAMS = {type(e).__name__: e.get_params(deep=False) for e in IMAGE_ESTIMATORS}


def _outputs(estimator, X):
    if isinstance(estimator, UFlowDetector):
        return estimator.anomaly_maps(X), estimator.score_samples(X)
    return (estimator.transform(X),)


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.size > 0
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.fixture(params=IMAGE_ESTIMATORS, ids=lambda e: type(e).__name__)
def estimator(request):
    return clone(request.param)


def test_fit_returns_self_and_keeps_params(estimator):
    params = copy.deepcopy(estimator.get_params())
    assert estimator.fit(X_IMAGES) is estimator
    after = estimator.get_params()
    for key, value in params.items():
        if hasattr(value, "get_params"):
            assert type(after[key]) is type(value) and after[key].get_params() == value.get_params()
        else:
            assert after[key] == value, key


def test_fitted_state_is_in_trailing_underscore_attributes(estimator):
    before = set(vars(estimator))
    estimator.fit(X_IMAGES)
    added = set(vars(estimator)) - before
    assert added and all(name.endswith("_") for name in added), added


def test_unfitted_estimator_raises_not_fitted(estimator):
    method = estimator.anomaly_maps if isinstance(estimator, UFlowDetector) else estimator.transform
    with pytest.raises(NotFittedError):
        method(X_IMAGES)


def test_fit_does_not_change_input(estimator):
    X = X_IMAGES.copy()
    estimator.fit(X)
    _outputs(estimator, X)
    np.testing.assert_array_equal(X, X_IMAGES)


def test_fit_is_idempotent_and_clone_refits_identically(estimator):
    first = _outputs(estimator.fit(X_IMAGES), X_IMAGES)
    _assert_same(first, _outputs(estimator.fit(X_IMAGES), X_IMAGES))
    _assert_same(first, _outputs(clone(estimator).fit(X_IMAGES), X_IMAGES))


def test_pickle_gives_identical_outputs(estimator):
    estimator.fit(X_IMAGES)
    _assert_same(_outputs(estimator, X_IMAGES), _outputs(pickle.loads(pickle.dumps(estimator)), X_IMAGES))


def test_dtypes_and_containers_are_equivalent(estimator):
    estimator.fit(X_IMAGES)
    reference = _outputs(estimator, X_IMAGES)
    _assert_same(reference, _outputs(estimator, X_IMAGES.astype(np.float64) / 255))
    _assert_same(reference, _outputs(estimator, list(X_IMAGES)))
    readonly = X_IMAGES.copy()
    readonly.flags.writeable = False
    _assert_same(reference, _outputs(estimator, readonly))


def test_one_image_and_batches_agree(estimator):
    # New images: the detector's held-out image reaches its segmenter's
    # map_level_ exactly, a tie that the last bit of a batch's kernels breaks.
    estimator.fit(X_IMAGES)
    together = _outputs(estimator, X_NEW)
    alone = [_outputs(estimator, X_NEW[i : i + 1]) for i in range(len(X_NEW))]
    for k, full in enumerate(together):
        np.testing.assert_allclose(np.concatenate([a[k] for a in alone]), full, rtol=1e-4, atol=1e-4)


def test_tabular_rows_are_refused_with_a_clear_message(estimator):
    with pytest.raises(ValueError, match="expected images of shape"):
        estimator.fit(TABULAR)
    with pytest.raises(ValueError, match="Negative values"):
        estimator.fit(ROWS)


def test_mscait_checks_parameters_before_building():
    with pytest.raises(ValueError, match="expected images of shape"):
        MSCaiTTransformer(weights="untrained").fit(TABULAR)


def test_segmenter_is_a_plain_transformer_on_rows():
    seg = ACotrarioSegmenter(latent_shapes=[(4, 8, 8)])
    out = seg.fit_transform(ROWS)
    assert out.shape == (6, 64) and seg.n_features_in_ == ROWS.shape[1]
