import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.model_selection import KFold, ShuffleSplit

from sklearn_uflow import ACotrarioSegmenter, CNNFeatureTransformer, UFlowDetector
from sklearn_uflow.anomaly_map import smoothed_anomaly_maps
from sklearn_uflow.datasets import make_defects
from sklearn_uflow.metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc
from sklearn_uflow.symmetries import AUGMENTATIONS, apply_symmetry


def test_outputs_have_the_contracted_shapes(fitted_detector, defects):
    X, y, _ = defects
    maps = fitted_detector.anomaly_maps(X[:5])
    assert maps.shape == (5, 64, 64) and maps.dtype == np.float32
    assert 0 <= maps.min() and maps.max() <= 1
    log_nfa = fitted_detector.log_nfa_maps(X[:5])
    assert log_nfa.shape == (5, 64, 64)
    assert log_nfa.max() <= fitted_detector.segmenter_.log_nfa_ceiling_
    masks = fitted_detector.predict_masks(X[:5])
    assert masks.dtype == bool and masks.shape == (5, 64, 64)
    scores = fitted_detector.score_samples(X[:5])
    assert scores.shape == (5,) and scores.dtype == np.float64


def test_decisions_agree_with_masks(fitted_detector, defects):
    """contamination="auto": an image is an outlier exactly when it holds an epsilon-meaningful region, which the
    masks and the NFA maps show independently of the scores."""
    X, _, _ = defects
    masks = fitted_detector.predict_masks(X)
    predicted = fitted_detector.predict(X)
    np.testing.assert_array_equal(predicted == -1, masks.reshape(len(X), -1).any(1))
    meaningful = fitted_detector.log_nfa_maps(X).min(axis=(1, 2)) <= np.log10(fitted_detector.epsilon)
    np.testing.assert_array_equal(fitted_detector.decision_function(X) <= 0, meaningful)
    assert 0 < meaningful.sum() < len(X)  # both decisions occur


def test_masks_come_from_the_composed_segmenter(fitted_detector, defects):
    X = defects[0][:4]
    segmenter = fitted_detector.segmenter_
    assert isinstance(segmenter, ACotrarioSegmenter) and segmenter.nfa_null == fitted_detector.nfa_null
    log_nfa = fitted_detector.log_nfa_maps(X)
    np.testing.assert_array_equal(segmenter.log_nfa_of_latents(fitted_detector.latents(X)), log_nfa)
    # one pass for maps and NFA gives the same; the width is the one fitted with the masks' level
    detector = pickle.loads(pickle.dumps(fitted_detector)).set_params(map_smoothing=0.0)
    maps, together = detector.maps_and_log_nfa(X)
    np.testing.assert_array_equal(together, log_nfa)
    np.testing.assert_array_equal(maps, fitted_detector.anomaly_maps(X))


def test_anomaly_map_follows_equation_2_then_smoothing(fitted_detector, defects):
    X, _, _ = defects
    latents = fitted_detector.latents(X[:2])
    # recompute eq. 2 with numpy: per scale exp(-mean_k z^2 / 2), bilinear up, mean, 1 - .
    expected = 0
    for z in latents:
        score = torch.exp(-0.5 * z.pow(2).mean(1, keepdim=True))
        expected = expected + torch.nn.functional.interpolate(score, size=(64, 64), mode="bilinear").squeeze(1)
    expected = (1 - expected / len(latents)).numpy()
    np.testing.assert_allclose(smoothed_anomaly_maps(latents, (64, 64), 0), expected, rtol=1e-5, atol=1e-6)
    # "auto" (the default) is 1/64 of the image's side: 1 pixel here.
    assert fitted_detector.segmenter_.map_smoothing == "auto"
    smoothed = np.stack([ndimage.gaussian_filter(m.astype(np.float64), 1.0, mode="nearest") for m in expected])
    np.testing.assert_allclose(fitted_detector.anomaly_maps(X[:2]), smoothed, rtol=1e-5, atol=1e-6)
    # a number is in cells of the finest latent grid: 64 / 16 = 4 pixels per cell.
    assert latents[0].shape[-1] == 16
    two_cells = smoothed_anomaly_maps(latents, (64, 64), 2.0)
    smoothed = np.stack([ndimage.gaussian_filter(m.astype(np.float64), 8.0, mode="nearest") for m in expected])
    np.testing.assert_allclose(two_cells, smoothed, rtol=1e-5, atol=1e-6)


def test_it_finds_synthetic_defects(defects, small_extractor):
    X, y, masks = defects
    detector = UFlowDetector(small_extractor, max_epochs=8, random_state=0, device="cpu").fit(X[y == 0])
    maps = detector.anomaly_maps(X)
    assert pixel_roc_auc(masks, maps) > 0.9
    assert image_roc_auc(y, maps.max(axis=(1, 2))) > 0.9
    assert aupro(masks, maps) > 0.7


def test_fit_uses_only_normal_images_from_labels_or_masks(defects, small_extractor):
    X, y, masks = defects
    params = dict(max_epochs=1, random_state=0, device="cpu")
    reference = UFlowDetector(small_extractor, **params).fit(X[y == 0])
    for target in (y, masks):
        other = UFlowDetector(small_extractor, **params).fit(X, target)
        np.testing.assert_array_equal(other.anomaly_maps(X[:2]), reference.anomaly_maps(X[:2]))


def test_contamination_sets_the_share_of_training_outliers(defects, small_extractor):
    """A share moves the offset only: the maps are those of the "auto" fit, and the flagged training images are
    the most anomalous, as many as the share allows. With nothing held out the training images are scored
    through the flow itself, so the share shows on them; most hold no region and tie at the NFA's ceiling."""
    X, y, _ = defects
    normal = X[y == 0]
    params = dict(max_epochs=3, validation_fraction=0, nfa_null="theory", random_state=0, device="cpu")
    auto = UFlowDetector(small_extractor, **params).fit(normal)
    share = UFlowDetector(small_extractor, contamination=0.5, **params).fit(normal)
    np.testing.assert_array_equal(share.anomaly_maps(X[:3]), auto.anomaly_maps(X[:3]))
    assert auto.offset_ == np.log10(auto.epsilon)
    scores = share.score_samples(normal)
    flagged = share.predict(normal) == -1
    assert 0 < flagged.sum() <= len(normal) // 2
    assert scores[flagged].max() < scores[~flagged].min()
    # the next score up would flag more than half: the ties at the ceiling
    assert np.sum(scores <= scores[~flagged].min()) > len(normal) // 2
    assert np.sum(scores == share.segmenter_.log_nfa_ceiling_) > 1
    # held out (the default), the images tie at the ceiling beyond the share: a percentile would flag them all
    held_out = UFlowDetector(small_extractor, max_epochs=3, contamination=0.25, random_state=0,
                             device="cpu").fit(normal)
    assert np.mean(held_out.predict(normal) == -1) <= 0.25


def test_the_rules_that_tie_parameters_together(defects, small_extractor):
    """Each parameter's own range is scikit-learn's check_param_validation's; these rules span two."""
    X = defects[0][:4]
    with pytest.raises(ValueError, match="feature_shapes"):
        UFlowDetector("precomputed").fit(np.zeros((4, 256)))
    with pytest.raises(ValueError, match="cannot be turned"):
        UFlowDetector("precomputed", feature_shapes=[(4, 8, 8)], augmentation="flips").fit(np.zeros((4, 256)))
    with pytest.raises(ValueError, match="needs held-out images"):
        UFlowDetector(small_extractor, validation_fraction=0).fit(X)
    # folds hold images out whatever validation_fraction says
    fitted = UFlowDetector(small_extractor, validation_fraction=0, cv=2, max_epochs=1, device="cpu").fit(X)
    assert fitted.n_splits_ == 2


def test_augmentation_fits_on_the_copies_and_holds_out_images_as_they_are(defects, small_extractor, monkeypatch):
    from sklearn_uflow import training

    X = defects[0][defects[1] == 0][:10]
    batches, trained, scored = [], [], []
    extract = CNNFeatureTransformer.extract
    monkeypatch.setattr(CNNFeatureTransformer, "extract",
                        lambda self, images: batches.append(np.array(images)) or extract(self, images))
    init = training.FlowTraining.__init__
    monkeypatch.setattr(training.FlowTraining, "__init__", lambda self, *a, **k: init(self, *a, **k) or trained.append(
        (np.asarray(a[2]), k["n_rows"], k["n_copies"], self.images.numpy())))
    per_image_nll = training.per_image_nll
    monkeypatch.setattr(training, "per_image_nll", lambda flow, f, index, *a: scored.append(np.asarray(index)) or
                        per_image_nll(flow, f, index, *a))
    detector = UFlowDetector(small_extractor, augmentation="eight", cv=ShuffleSplit(1, test_size=0.2, random_state=0),
                             max_epochs=2, random_state=0, device="cpu").fit(X)
    assert detector.augmentation_ == "eight"
    batches = batches[1:]  # the first fitted the feature step
    assert [len(b) for b in batches] == [10] * 8  # the eight copies of every image, each extracted once
    scaled = X / np.float32(255)  # the feature step reads floats in [0, 1]
    for copy, symmetry in zip(batches, AUGMENTATIONS["eight"]):
        np.testing.assert_array_equal(copy, apply_symmetry(scaled, symmetry))
    [(train_index, n_rows, n_copies, rows)] = trained
    held_out = np.setdiff1d(np.arange(10), train_index)
    assert n_rows == 10 and n_copies == 8 and len(held_out) == 2
    # the training images, each as a random one of its copies (test_training), and nothing of the held-out images
    np.testing.assert_array_equal(rows, train_index)
    # the held-out images are judged as they are: rows of the first copy, the identity
    assert all(np.array_equal(index, held_out) for index in scored)
    assert len(scored) == len(detector.validation_loss_curve_)


def test_auto_augmentation_takes_copies_when_the_parts_come_in_any_pose(defects):
    """The textures' gratings have fixed orientations: a flow that learns from turned copies finds the
    held-out images less likely, and the copies are not taken. The same images each turned by a random
    symmetry come in any pose: learning from the copies makes the held-out images more likely."""
    from sklearn_uflow.symmetries import symmetries

    X = defects[0][defects[1] == 0]
    turns = symmetries("eight", X.shape[1:3])
    any_pose = np.stack([apply_symmetry(x[None], turns[k])[0]
                         for x, k in zip(X, np.random.default_rng(0).integers(8, size=len(X)))])
    chosen = {}
    for pose, images in (("fixed", X), ("any", any_pose)):
        detector = UFlowDetector(CNNFeatureTransformer(input_size=32, device="cpu"), max_epochs=2, random_state=0,
                                 device="cpu").fit(images)
        val_bpd = detector.augmentation_validation_loss_
        chosen[pose] = detector.augmentation_, val_bpd["eight"] < val_bpd["none"]
    assert chosen == {"fixed": ("none", False), "any": ("eight", True)}
    # on an oblong frame the copies are the flips; with nothing held out, nothing to choose by
    oblong = UFlowDetector(CNNFeatureTransformer(input_size=32, device="cpu"), max_epochs=1, random_state=0,
                           device="cpu").fit(any_pose[:, :, :48])
    assert oblong.augmentation_ == "flips"
    unvalidated = UFlowDetector(CNNFeatureTransformer(input_size=32, device="cpu"), validation_fraction=0,
                                nfa_null="theory", max_epochs=1, random_state=0, device="cpu").fit(any_pose)
    assert unvalidated.augmentation_ == "none" and unvalidated.augmentation_validation_loss_ == {}


def _spied_fit(detector, X, monkeypatch):
    """Fit ``detector`` on feature rows whose first value is the image's number, and record which images
    each flow trained on and which flow's latents of which images the segmenter's null was fitted on."""
    from sklearn_uflow.flow import UFlow

    trained, produced, null = {}, {}, []
    forward = UFlow.forward

    def spy(self, features, *args, **kwargs):
        out = forward(self, features, *args, **kwargs)
        images = features[0][:, 0, 0, 0].round().long().tolist()
        if self.training:
            trained.setdefault(id(self), set()).update(images)
        else:
            for image, row in zip(images, out[0][0]):
                produced[row.float().numpy().tobytes()] = (id(self), image)
        return out

    monkeypatch.setattr(UFlow, "forward", spy)
    fit_latents = ACotrarioSegmenter.fit_latents
    monkeypatch.setattr(ACotrarioSegmenter, "fit_latents",
                        lambda self, latents: null.extend(produced[r.numpy().tobytes()] for r in latents[0]) or
                        fit_latents(self, latents))
    detector.fit(X)
    return trained, null


def test_cross_fitting_never_judges_an_image_by_a_flow_that_trained_on_it(monkeypatch):
    shapes, n = [(4, 8, 8), (8, 4, 4)], 12
    X = np.random.default_rng(0).standard_normal((n, sum(int(np.prod(s)) for s in shapes)))
    X[:, 0] = np.arange(n)  # feature 0 of scale 0 at (0, 0) names the image
    detector = UFlowDetector("precomputed", feature_shapes=shapes, cv=3, max_epochs=2, random_state=0, device="cpu")
    trained, null = _spied_fit(detector, X, monkeypatch)
    # three fold flows and the final one; the final flow trained on every image, each fold flow on two thirds
    assert sorted(len(images) for images in trained.values()) == [8, 8, 8, 12]
    assert trained[id(detector.flow_)] == set(range(n))
    # the null read every image once, each through a fold flow that never saw it
    assert sorted(image for _, image in null) == list(range(n))
    assert all(image not in trained[flow] for flow, image in null)
    assert detector.n_splits_ == 3
    # cv="auto" cross-fits a set this small in 5 folds; one split keeps its flow, whose held-out images are the
    # null's
    trained, null = _spied_fit(detector.set_params(cv=ShuffleSplit(1, test_size=0.25, random_state=0)), X,
                               monkeypatch)
    assert len(trained) == 1 and len(null) == 3 and not {image for _, image in null} & trained[id(detector.flow_)]
    detector.set_params(cv="auto").fit(X)
    assert detector.n_splits_ == 5


SHAPES = [(4, 8, 8), (8, 4, 4)]


def _rows(n, shapes=SHAPES, seed=0):
    return np.random.default_rng(seed).standard_normal((n, sum(int(np.prod(s)) for s in shapes)))


@pytest.mark.parametrize("cv, n_images, n_splits, held_out", [
    ("auto", 12, 5, 12),  # below 200 images: 5 folds, every image held out once
    ("auto", 4, 4, 4),  # at most a fold per image
    ("auto", 200, 1, 20),  # from 200 on: one split of validation_fraction
    (3, 12, 3, 12),
    (KFold(4), 12, 4, 12),
    (ShuffleSplit(2, test_size=3, random_state=0), 12, 2, 6),
    ([(np.arange(8), np.arange(8, 12))], 12, 1, 4),  # an iterable of splits, used as given
])
def test_cv_takes_what_scikit_learn_takes(cv, n_images, n_splits, held_out, monkeypatch):
    from sklearn_uflow import acontrario

    seen = []
    fit_latents = acontrario.ACotrarioSegmenter.fit_latents
    monkeypatch.setattr(acontrario.ACotrarioSegmenter, "fit_latents",
                        lambda self, latents: seen.append(len(latents[0])) or fit_latents(self, latents))
    detector = UFlowDetector("precomputed", feature_shapes=SHAPES, cv=cv, max_epochs=1, n_iter_no_change=1,
                             n_flow_steps=1, random_state=0, device="cpu").fit(_rows(n_images))
    assert detector.n_splits_ == n_splits and seen == [held_out]


def test_cv_refuses_more_splits_than_images_and_deprecates_none():
    detector = UFlowDetector("precomputed", feature_shapes=SHAPES, cv=10, max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="cv asks for 10 splits of 4 training images"):
        detector.fit(_rows(4))
    with pytest.warns(FutureWarning, match="cv=None"):
        single = detector.set_params(cv=None, validation_fraction=0.25).fit(_rows(8))
    assert single.n_splits_ == 1


def test_the_fit_is_recorded_in_named_attributes_the_same_on_every_path():
    """Cross-fitted, one split, nothing held out: the same attributes, with the meaning their names say."""
    paths = {"folds": dict(cv=3), "one split": dict(cv=ShuffleSplit(1, test_size=0.25, random_state=0)),
             "nothing held out": dict(validation_fraction=0, nfa_null="theory")}
    for path, params in paths.items():
        detector = UFlowDetector("precomputed", feature_shapes=SHAPES, max_epochs=4, n_iter_no_change=1, tol=0,
                                 n_flow_steps=1, random_state=0, device="cpu", **params).fit(_rows(12))
        assert len(detector.loss_curve_) == detector.n_iter_ >= 1, path
        assert detector.fit_seconds_ > 0
        if path == "nothing held out":
            assert detector.n_iter_ == 4 and detector.validation_loss_curve_ == []
            assert detector.best_validation_loss_ is None and detector.augmentation_validation_loss_ == {}
            continue
        curve = detector.validation_loss_curve_
        assert detector.best_validation_loss_ == min(curve) == curve[detector.n_iter_ - 1], path
        assert detector.augmentation_validation_loss_ == {"none": detector.best_validation_loss_}
        # early stopping: the curve runs one epoch past its best (n_iter_no_change=1), or to the budget
        assert len(curve) in (detector.n_iter_ + 1, 4)


def test_the_readme_demo_gives_few_false_alarms_from_20_images():
    """The README's demo fits on 20 good images. A single split held 2 of them out, and the null of the NFA
    fitted on those 2 flagged 5 of the 20 other good images (on the code before cross-fitting);
    cross-fitting fits it on all 20."""
    X, y, _ = make_defects(n_samples=80, image_size=128, random_state=0)
    good = np.flatnonzero(y == 0)
    # the demo's settings at half its size and without copies: the false alarms are the null's, and half the time
    detector = UFlowDetector("efficientnet_lite0", augmentation="none", random_state=0, device="cpu")
    detector.fit(X[good[:20]])
    assert detector.n_splits_ == 5
    detected = detector.predict(X) == -1
    assert detected[good[20:]].mean() <= 0.05 and detected[y == 1].mean() >= 0.95


def test_bad_inputs(fitted_detector, defects, small_extractor):
    X = defects[0]
    with pytest.raises(ValueError, match="at least 2 normal training images.*validation_fraction=0 and "
                                         "nfa_null='theory'"):
        UFlowDetector(small_extractor).fit(X[:1])
    # the setting the message suggests fits one image
    one = UFlowDetector(small_extractor, validation_fraction=0, nfa_null="theory", max_epochs=1, device="cpu")
    assert one.fit(X[:1]).predict(X[:2]).shape == (2,)
    with pytest.raises(ValueError, match="fitted on 64x64"):
        fitted_detector.anomaly_maps(np.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="channel"):
        fitted_detector.anomaly_maps(np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="no image as normal"):
        UFlowDetector(small_extractor).fit(X[:4], np.ones(4))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        UFlowDetector(small_extractor).anomaly_maps(X[:1])


def test_model_fitted_on_cuda_loads_on_cpu(fitted_detector, defects, monkeypatch):
    """Simulate a GPU-fitted model: its pickle must load where CUDA is absent."""
    clone = pickle.loads(pickle.dumps(fitted_detector))
    clone.device_ = clone.extractor_.device_ = torch.device("cuda")
    payload = pickle.dumps(clone)  # the modules are stored on the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="CUDA"):
        restored = pickle.loads(payload)
    assert restored.device_.type == restored.extractor_.device_.type == "cpu"
    np.testing.assert_array_equal(restored.anomaly_maps(defects[0][:2]), fitted_detector.anomaly_maps(defects[0][:2]))


def test_real_images_smoke(data_dir):
    from sklearn_uflow.datasets import load_anomaly_folder

    data = load_anomaly_folder(data_dir / "hazelnut_toy/hazelnut_toy", image_size=128)
    detector = UFlowDetector(CNNFeatureTransformer(input_size=128), max_epochs=4, random_state=0, device="cpu")
    detector.fit(data.train_images)
    maps = detector.anomaly_maps(data.test_images)
    assert pixel_roc_auc(data.test_masks, maps) > 0.8
    # the masks are whole defects, not the trees' scatter of small regions
    masks = detector.predict_masks(data.test_images)
    detector.segmenter_.set_params(delineation="tree")  # the paper's regions
    tree = detector.predict_masks(data.test_images)
    defective = data.test_labels == 1
    assert mean_iou(data.test_masks, masks, defective_only=True) > mean_iou(data.test_masks, tree, defective_only=True)
    regions = [ndimage.label(m)[1] for m in masks[defective]]
    assert np.median(regions) <= 2 * np.median([ndimage.label(m)[1] for m in data.test_masks[defective]])


def test_pipeline_of_feature_step_and_precomputed_detector(defects, small_extractor):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline

    from sklearn_uflow.metrics import aupro_scorer

    X, y, masks = defects
    shapes = clone(small_extractor).fit(X[:1]).feature_shapes_
    params = dict(max_epochs=2, augmentation="none", random_state=0, device="cpu")
    pipe = make_pipeline(clone(small_extractor),
                         UFlowDetector("precomputed", feature_shapes=shapes, image_size=(64, 64), **params))
    pipe.fit(X, masks)  # the detector trains on the normal images only
    direct = UFlowDetector(small_extractor, **params).fit(X[y == 0])
    np.testing.assert_allclose(pipe.score_samples(X), direct.score_samples(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pipe.predict(X), direct.predict(X))
    maps = pipe[-1].anomaly_maps(pipe[:-1].transform(X))
    np.testing.assert_allclose(maps, direct.anomaly_maps(X), rtol=1e-4, atol=1e-5)
    assert aupro_scorer(pipe, X, masks) == pytest.approx(aupro_scorer(direct, X, masks), abs=1e-4)

    search = GridSearchCV(pipe, {"uflowdetector__n_flow_steps": [1, 2]}, scoring=aupro_scorer,
                          cv=KFold(2, shuffle=True, random_state=1)).fit(X, masks)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert set(search.cv_results_["param_uflowdetector__n_flow_steps"]) == {1, 2}
    with pytest.raises(ValueError, match="feature_shapes"):
        UFlowDetector("precomputed").fit(pipe[:-1].transform(X))
    with pytest.raises(ValueError, match="features per row"):
        pipe[-1].anomaly_maps(np.zeros((1, 5)))
    with pytest.raises(TypeError, match="precomputed"):
        pipe[-1].save("never-written.uflow")


def test_oblong_images_keep_their_aspect_and_size(defects, tmp_path):
    X = np.ascontiguousarray(defects[0][:, 8:56])  # 48 x 64
    y = defects[1]
    detector = UFlowDetector(CNNFeatureTransformer(input_size="auto", device="cpu"), max_epochs=2, random_state=0,
                             device="cpu").fit(X[y == 0])
    assert detector.extractor_.input_size_ == (224, 288)  # 3:4 at about 256x256 pixels, multiples of 16
    maps = detector.anomaly_maps(X[:2])
    assert maps.shape == detector.predict_masks(X[:2]).shape == (2, 48, 64)
    assert detector.augmentation_ in ("none", "flips")  # no quarter turns for an oblong frame
    # the oblong input size survives the model file
    detector.save(tmp_path / "oblong.uflow")
    loaded = UFlowDetector.load(tmp_path / "oblong.uflow")
    assert loaded.extractor_.input_size_ == (224, 288)
    np.testing.assert_array_equal(loaded.anomaly_maps(X[:2]), maps)


@pytest.mark.parametrize("axis", [1, 2], ids=["tall", "wide"])
def test_oblong_maps_find_the_defect_where_it_is(axis):
    """Two synthetic images side by side (or stacked): the map lights up the defective one's defect, so no
    step mixes up height and width on a 1:2 frame."""
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.metrics import pixel_roc_auc

    X, y, masks = make_defects(n_samples=48, image_size=64, random_state=1)
    good, bad, bad_masks = X[y == 0], X[y == 1][:6], masks[y == 1][:6]
    train = np.concatenate([good, good[::-1]], axis=axis)
    test = np.concatenate([np.concatenate([good[:6], bad], axis=axis), np.concatenate([bad, good[:6]], axis=axis)])
    no_defect = np.zeros_like(bad_masks)
    test_masks = np.concatenate([np.concatenate([no_defect, bad_masks], axis=axis),
                                 np.concatenate([bad_masks, no_defect], axis=axis)])
    detector = UFlowDetector(CNNFeatureTransformer(device="cpu"), max_epochs=3, random_state=0,
                             device="cpu").fit(train)
    assert detector.extractor_.input_size_ == ((368, 176) if axis == 1 else (176, 368))
    assert pixel_roc_auc(test_masks, detector.anomaly_maps(test)) > 0.9
