"""Property-based tests: random latents and maps never break the invariants."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

from sklearn_uflow.acontrario import log10_nfa_ceiling, log_nfa_maps, significant_regions
from sklearn_uflow.metrics import aupro, mean_iou, pixel_roc_auc

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def latent_batches(draw):
    n = draw(st.integers(1, 3))
    scales = draw(st.integers(1, 3))
    size = draw(st.integers(1, 12))
    latents = []
    for s in range(scales):
        side = max(size >> s, 1)
        channels = draw(st.integers(1, 6))
        latents.append(draw(arrays(np.float32, (n, channels, side, side), elements=finite)))
    return latents


@settings(max_examples=60, deadline=None)
@given(latent_batches(), st.tuples(st.integers(1, 20), st.integers(1, 20)))
def test_nfa_maps_are_bounded_and_shaped(latents, size):
    maps = log_nfa_maps(latents, size)
    assert maps.shape == (len(latents[0]), *size)
    assert np.all(np.isfinite(maps))
    assert maps.max() <= log10_nfa_ceiling([z.shape[2] * z.shape[3] for z in latents]) + 1e-9


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 10), st.integers(1, 10)), elements=st.floats(0, 1e6)),
       st.integers(1, 50))
def test_regions_are_disjoint_subsets_of_the_image(u, df):
    labels, log_nfa = significant_regions(u, df)
    assert labels.shape == u.shape
    assert labels.min() >= 0 and labels.max() == len(log_nfa)
    assert set(np.unique(labels[labels > 0])) == set(range(1, len(log_nfa) + 1))
    assert np.all(np.isfinite(log_nfa))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_metrics_agree_with_independent_computations(data):
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(2, 8), st.integers(2, 8)))
    masks = data.draw(arrays(bool, shape))
    maps = data.draw(arrays(np.float64, shape, elements=st.floats(-10, 10)))
    predicted = data.draw(arrays(bool, shape))
    # IoU image by image, with the paper's convention: nothing to find and nothing found is a perfect 1
    ious = [1.0 if not (m | p).any() else (m & p).sum() / (m | p).sum() for m, p in zip(masks, predicted)]
    assert mean_iou(masks, predicted) == pytest.approx(np.mean(ious))
    if masks.any():
        defective = [iou for iou, m in zip(ious, masks) if m.any()]
        assert mean_iou(masks, predicted, defective_only=True) == pytest.approx(np.mean(defective))
    if masks.any() and not masks.all():
        assert pixel_roc_auc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
        # both rank pixels only: doubling the scores (exact in floating point) changes neither; reversing the
        # ranking turns the ROC AUC into its complement
        assert pixel_roc_auc(masks, -maps) == pytest.approx(1 - pixel_roc_auc(masks, maps))
        assert aupro(masks, 2 * maps) == aupro(masks, maps)
