"""Metrics against hand computations and brute-force second implementations."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from sklearn_uflow.metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc


def _auc_by_pairs(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_pixel_and_image_auc_match_pair_counting(rng):
    masks = rng.random((3, 5, 5)) < 0.3
    maps = rng.random((3, 5, 5)).round(1) + masks * 0.2
    assert pixel_roc_auc(masks, maps) == pytest.approx(_auc_by_pairs(masks.ravel(), maps.ravel()))
    labels, scores = np.array([0, 1, 1, 0, 1]), np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    assert image_roc_auc(labels, scores) == pytest.approx(4 / 6)


def _aupro_brute_force(masks, maps, max_fpr=0.3):
    """Loop over every threshold; compute FPR and the mean per-region overlap."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fprs.append((above & normal).sum() / normal.sum())
        pros.append(np.mean([above[i][r].mean() for i, r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    pro_at = np.interp(max_fpr, fprs, pros)
    keep = fprs <= max_fpr
    x, y = np.r_[fprs[keep], max_fpr], np.r_[pros[keep], pro_at]
    return np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / max_fpr


@pytest.mark.parametrize("seed", range(5))
def test_aupro_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 8, 8), bool)
    masks[0, 1:3, 1:4] = True
    masks[0, 5:7, 5:7] = True
    masks[2, 3:6, 2:5] = True
    maps = rng.random((3, 8, 8)).round(2) + 0.5 * masks * rng.random((3, 8, 8))
    assert aupro(masks, maps) == pytest.approx(_aupro_brute_force(masks, maps), rel=1e-10)


def test_aupro_known_cases():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    # A map that ranks normal pixels first gives no overlap before FPR 1.
    assert aupro(masks, (~masks).astype(float)) == pytest.approx(0.0)


def test_mean_iou_conventions():
    truth = np.zeros((3, 2, 2), bool)
    truth[0, 0, :] = True  # 2 pixels
    pred = np.zeros((3, 2, 2), bool)
    pred[0, 0, 0] = True  # IoU 1/2
    pred[2, 1, 1] = True  # false alarm on a good image: IoU 0
    # image 1: good and empty, counts as 1 in the paper's convention
    assert mean_iou(truth, pred) == pytest.approx((0.5 + 1 + 0) / 3)
    assert mean_iou(truth, pred, defective_only=True) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="boolean"):
        mean_iou(truth, pred.astype(float))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="must match"):
        pixel_roc_auc(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="both defective and normal"):
        aupro(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        pixel_roc_auc(np.eye(2)[None], np.full((1, 2, 2), np.nan))
