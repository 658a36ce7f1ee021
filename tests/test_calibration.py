"""The NFA calibrated on held-out normal images: the conformal map against
hand computations, and its promise checked on synthetic nulls."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label

from sklearn_uflow import ACotrarioSegmenter
from sklearn_uflow.calibration import ConformalCalibration, conformal_calibration, false_alarm_curve

SHAPES = [(4, 16, 16)]


def _normal(rng, n):
    """Latents a trained flow leaves: N(0, 1) per value, but neighbours dependent, so that the fitted
    null's bound holds with a wide margin."""
    z = ndimage.gaussian_filter(rng.standard_normal((n, *SHAPES[0])), (0, 0, 1, 1), mode="wrap")
    return (z / z.std(axis=(0, 2, 3), keepdims=True)).astype(np.float32)


def test_conformal_knots_by_hand():
    # n = 5, two tied at 2.0 and one image with no region (at the ceiling 9)
    calibration = conformal_calibration([3.0, 2.0, 9.0, 2.0, -1.0], ceiling=9.0)
    np.testing.assert_array_equal(calibration.raw, [-1.0, 2.0, 3.0])
    # knot j carries log10((j + 1) / 6); the tie takes its last rank (3)
    np.testing.assert_allclose(calibration.calibrated, np.log10([2 / 6, 4 / 6, 5 / 6]))
    np.testing.assert_allclose(calibration([-3.0, 0.5, 5.0]),
                               [np.log10(2 / 6) - 2.0, np.log10(2 / 6) + 0.5 * np.log10(2.0), np.log10(5 / 6) + 2.0])
    assert calibration(9.0) == 9.0  # no region stays no region
    assert calibration(8.99) <= 9.0


def test_calibration_is_monotone_and_identity_without_scores_below_the_ceiling():
    rng = np.random.default_rng(0)
    calibration = conformal_calibration(rng.normal(3, 2, 40), ceiling=7.0)
    x = np.linspace(-50, 7, 5001)
    assert np.all(np.diff(calibration(x)) >= 0)
    identity = conformal_calibration([7.0, 7.0], ceiling=7.0)
    np.testing.assert_array_equal(identity(x), x)
    np.testing.assert_array_equal(ConformalCalibration.identity()(x), x)


def test_false_alarm_curve_counts_regions_like_skimage():
    rng = np.random.default_rng(1)
    log_nfa = ndimage.zoom(rng.normal(0, 2, (5, 6, 6)), (1, 3, 3), order=0)
    epsilons = [1e-2, 1.0, 1e2]
    curve = false_alarm_curve(log_nfa, epsilons)
    counts = np.array([[label(m <= np.log10(e), connectivity=1).max() for m in log_nfa] for e in epsilons])
    np.testing.assert_allclose(curve["regions_per_image"], counts.mean(axis=1))
    np.testing.assert_allclose(curve["images_flagged"], (counts > 0).mean(axis=1))


@pytest.mark.parametrize("n_held_out, n_draws", [(20, 30), (200, 8)])
def test_normal_images_are_flagged_at_most_epsilon_of_the_time(n_held_out, n_draws):
    """The promise, measured: over draws of the held-out images, the share of
    new normal images with a region of NFA <= epsilon is at most epsilon,
    and not far below it (the fitted null alone flags almost none)."""
    flagged = {0.05: [], 0.2: []}
    uncalibrated = []
    for draw in range(n_draws):
        rng = np.random.default_rng(draw)
        segmenter = ACotrarioSegmenter(SHAPES).fit_latents([_normal(rng, n_held_out)])
        new = [_normal(rng, 100)]
        scores = segmenter.log_nfa_of_latents(new).min(axis=(1, 2))
        for epsilon, shares in flagged.items():
            shares.append(np.mean(scores <= np.log10(epsilon)))
        raw = segmenter.set_params(calibration="none").fit_latents([_normal(rng, n_held_out)])
        uncalibrated.append(np.mean(raw.log_nfa_of_latents(new).min(axis=(1, 2)) <= np.log10(0.2)))
    for epsilon, shares in flagged.items():
        standard_error = np.std(shares) / np.sqrt(n_draws)
        assert epsilon / 2 <= np.mean(shares) <= epsilon + 2 * standard_error, (epsilon, np.mean(shares))
    assert np.mean(uncalibrated) < 0.02  # the slack that the calibration removes


def test_defaults_find_the_defects_that_a_threshold_below_every_good_image_finds():
    """The test's limit: planted defects that score below every good image.
    The defaults find nearly all of them while sparing the good images; the
    fitted null's own bound (at epsilon = 1, the paper's) finds few."""
    rng = np.random.default_rng(0)
    held_out, good, defective = _normal(rng, 30), _normal(rng, 50), _normal(rng, 50)
    defective[:, :, 6:10, 6:10] += 1.6
    segmenter = ACotrarioSegmenter(SHAPES).fit_latents([held_out])
    good_scores = segmenter.log_nfa_of_latents([good]).min(axis=(1, 2))
    scores = segmenter.log_nfa_of_latents([defective]).min(axis=(1, 2))
    within_reach = scores < good_scores.min()
    assert within_reach.mean() >= 0.5
    found = segmenter.predict_masks(defective.reshape(50, -1)).any(axis=(1, 2))
    assert found[within_reach].mean() >= 0.9
    assert np.mean(good_scores <= np.log10(segmenter.epsilon)) <= 0.1
    paper = ACotrarioSegmenter(SHAPES, epsilon=1.0, calibration="none").fit_latents([held_out])
    assert paper.predict_masks(defective.reshape(50, -1)).any(axis=(1, 2))[within_reach].mean() <= 0.5


def test_calibration_is_measured_on_images_the_null_did_not_see():
    """Each held-out score comes from a null fitted without its image: an
    image scored by a null fitted on itself looks more normal."""
    rng = np.random.default_rng(2)
    latents = [_normal(rng, 25)]
    latents[0][3, :, 4:8, 4:8] += 3.0  # one odd image among the normal ones
    segmenter = ACotrarioSegmenter(SHAPES).fit_latents(latents)
    judge = ACotrarioSegmenter(SHAPES, calibration="none").fit_latents([np.delete(latents[0], np.s_[:5], 0)])
    raw = judge.log_nfa_of_latents([latents[0][:5]]).min(axis=(1, 2))
    np.testing.assert_allclose(segmenter.held_out_scores_[:5], segmenter.calibration_(raw))
    curve = segmenter.false_alarm_curve_
    assert curve["images_flagged"][np.searchsorted(curve["epsilon"], 1.0)] >= 1 / 25
