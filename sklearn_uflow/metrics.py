"""Metrics of anomaly detection and segmentation, and scikit-learn scorers.

Maps and masks are arrays of shape ``(n_images, H, W)``; a pixel's ground
truth is ``True`` on a defect.
"""

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from ._docstrings import fill_docstring

__all__ = [
    "pixel_roc_auc",
    "aupro",
    "mean_iou",
    "image_roc_auc",
    "pixel_roc_auc_scorer",
    "aupro_scorer",
    "mean_iou_scorer",
    "image_roc_auc_scorer",
]


def _check_pair(masks, maps):
    masks = np.asarray(masks).astype(bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape:
        raise ValueError(f"masks of shape {masks.shape} and maps of shape {maps.shape} must match.")
    if masks.ndim == 2:
        masks, maps = masks[None], maps[None]
    if masks.ndim != 3 or masks.size == 0:
        raise ValueError(f"expected masks and maps of shape (n_images, H, W), got {masks.shape}.")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values.")
    return masks, maps


def pixel_roc_auc(masks, maps):
    """Area under the ROC curve of pixel scores against pixel ground truth.

    Every pixel of every image counts once, as in the MVTec AD protocol: a
    threshold-free measure of how well the maps rank defect pixels above
    normal ones.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W)
        Ground truth, true on defects.
    maps : array-like of shape (n_images, H, W)
        Anomaly scores, higher is more anomalous.

    Returns
    -------
    auc : float
        In [0, 1].

    See Also
    --------
    aupro : Each defect counts equally, whatever its size.
    sklearn.metrics.roc_auc_score : The computation, on the flattened pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.metrics import pixel_roc_auc
    >>> pixel_roc_auc(np.array([[[0, 1]]]), np.array([[[0.2, 0.9]]]))
    1.0
    """
    masks, maps = _check_pair(masks, maps)
    if masks.all() or not masks.any():
        raise ValueError("pixel ROC AUC needs both defective and normal pixels.")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


def aupro(masks, maps, *, max_fpr=0.3):
    """Area under the per-region overlap curve up to a false positive rate.

    Each connected defect (8-connectivity, per image) counts equally,
    whatever its size: at a threshold, its overlap is the share of its pixels
    above the threshold, and PRO is the mean overlap over all defects. The
    curve of PRO against the false positive rate on normal pixels is
    integrated (trapezoids, every distinct threshold) from 0 to ``max_fpr``
    and divided by ``max_fpr``, so a perfect map scores 1.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W)
        Ground truth, true on defects.
    maps : array-like of shape (n_images, H, W)
        Anomaly scores.
    max_fpr : float, default=0.3
        Upper limit of the false positive rate.

    Returns
    -------
    aupro : float
        In [0, 1].

    See Also
    --------
    pixel_roc_auc : Each pixel counts equally.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.metrics import aupro
    >>> masks = np.zeros((1, 4, 4), dtype=bool)
    >>> masks[0, 1:3, 1:3] = True
    >>> aupro(masks, masks.astype(float))  # a perfect map
    1.0
    """
    masks, maps = _check_pair(masks, maps)
    if not masks.any() or masks.all():
        raise ValueError("AUPRO needs both defective and normal pixels.")
    labels = np.zeros(masks.shape, dtype=np.int64)
    n_regions = 0
    structure = np.ones((3, 3), dtype=bool)
    for i, mask in enumerate(masks):
        lab, count = ndimage.label(mask, structure=structure)
        labels[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += count
    labels, scores = labels.ravel(), maps.ravel()
    region_size = np.bincount(labels, minlength=n_regions + 1)
    # Each defect pixel carries 1 / (n_regions * its region's size): summed
    # over the pixels above a threshold, that is the mean per-region overlap.
    weight = np.where(labels > 0, 1.0 / (n_regions * region_size[labels]), 0.0)
    normal = labels == 0
    order = np.argsort(-scores, kind="stable")
    scores, weight, normal = scores[order], weight[order], normal[order]
    last_of_threshold = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    fpr = np.r_[0.0, np.cumsum(normal)[last_of_threshold] / normal.sum()]
    pro = np.r_[0.0, np.cumsum(weight)[last_of_threshold]]
    keep = fpr <= max_fpr
    fpr_cut, pro_cut = fpr[keep], pro[keep]
    if fpr_cut[-1] < max_fpr:  # close the curve at max_fpr by interpolation
        fpr_cut, pro_cut = np.r_[fpr_cut, max_fpr], np.r_[pro_cut, np.interp(max_fpr, fpr, pro)]
    return float(np.trapezoid(pro_cut, fpr_cut) / max_fpr)


def mean_iou(masks, predicted, *, defective_only=False):
    """Mean intersection over union of predicted and true masks, per image.

    This measures the masks themselves, at the threshold they were drawn
    with, where the ROC measures rank the maps at every threshold.

    Parameters
    ----------
    masks : array-like of shape (n_images, H, W)
        Ground truth.
    predicted : array-like of shape (n_images, H, W)
        Predicted masks (bool).
    defective_only : bool, default=False
        ``False`` follows the U-Flow paper: every image counts, and a normal
        image with no detection scores 1 (an empty union). ``True`` averages
        over the images with a defect only.

    Returns
    -------
    miou : float
        In [0, 1].

    See Also
    --------
    mean_iou_scorer : The same for a detector, in model selection.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.metrics import mean_iou
    >>> truth = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 0]]], dtype=bool)
    >>> pred = np.array([[[1, 0, 0, 0]], [[0, 0, 0, 0]]], dtype=bool)
    >>> mean_iou(truth, pred), mean_iou(truth, pred, defective_only=True)
    (0.75, 0.5)
    """
    masks = np.asarray(masks).astype(bool)
    predicted = np.asarray(predicted)
    if predicted.dtype != bool:
        raise ValueError(f"predicted masks must be boolean, got dtype {predicted.dtype}.")
    if masks.shape != predicted.shape or masks.ndim != 3 or masks.size == 0:
        raise ValueError(f"masks {masks.shape} and predicted {predicted.shape} must share a shape (n, H, W).")
    inter = (masks & predicted).reshape(len(masks), -1).sum(1)
    union = (masks | predicted).reshape(len(masks), -1).sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    if defective_only:
        defective = masks.reshape(len(masks), -1).any(1)
        if not defective.any():
            raise ValueError("defective_only=True needs at least one image with a defect.")
        iou = iou[defective]
    return float(iou.mean())


def image_roc_auc(labels, scores):
    """Compute the ROC AUC of image scores against image labels.

    The image-level detection measure: how well the scores rank defective
    images above normal ones, whatever the threshold.

    Parameters
    ----------
    labels : array-like of shape (n_images,) or (n_images, H, W)
        1 for defective images, 0 for normal ones; or masks (an image is
        defective when its mask is not empty).
    scores : array-like of shape (n_images,)
        Higher is more anomalous.

    Returns
    -------
    auc : float
        The area under the ROC curve, in [0, 1].

    See Also
    --------
    image_roc_auc_scorer : The same for a detector, in model selection.
    sklearn.metrics.roc_auc_score : The computation.

    Examples
    --------
    >>> from sklearn_uflow.metrics import image_roc_auc
    >>> image_roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels = np.asarray(labels)
    if labels.ndim == 3:  # masks: an image is defective when its mask is not empty
        labels = labels.reshape(len(labels), -1).any(1)
    return float(roc_auc_score(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)))


# The scorers' first parameters; and, for those scored against masks, their
# parameters and the return's type, which each scorer's next line describes.
_SCORED = """
Parameters
----------
estimator : UFlowDetector or Pipeline
    A fitted detector, or a Pipeline ending with one.
X : array-like of shape (n_images, H, W[, C])
    Images.
"""
_SCORED_AGAINST_MASKS = _SCORED + """y : array-like of shape (n_images, H, W)
    Their true masks.

Returns
-------
score : float
"""

_USE = """A scorer for :class:`~sklearn.model_selection.GridSearchCV` and
:func:`~sklearn.model_selection.cross_validate`, whose ``y`` carries the
ground truth that anomaly detectors' own ``score`` does not take."""


def _example(name):
    return f""">>> from sklearn.model_selection import GridSearchCV
>>> from sklearn_uflow import UFlowDetector
>>> from sklearn_uflow.metrics import {name}
>>> search = GridSearchCV(UFlowDetector("efficientnet_lite0"), {{"epsilon": [0.01, 0.05]}},
...                       scoring={name})"""


# Scorers: ``scorer(estimator, X, y)`` with ``y`` the masks of X (n, H, W);
# they rank fitted detectors in GridSearchCV / cross_val_score. A Pipeline
# ending with a detector is scored through its last step.
def _call(estimator, method, X):
    if hasattr(estimator, method):
        return getattr(estimator, method)(X)
    if hasattr(estimator, "steps"):  # a Pipeline: transform, then ask its last step
        return getattr(estimator[-1], method)(estimator[:-1].transform(X))
    raise TypeError(f"{type(estimator).__name__} has no {method}; score a UFlowDetector or a Pipeline ending with one.")


@fill_docstring(scored=_SCORED_AGAINST_MASKS, use=_USE, example=_example('pixel_roc_auc_scorer'))
def pixel_roc_auc_scorer(estimator, X, y):
    """Score the anomaly maps by their pixel ROC AUC against the masks.

    {use}

    {scored}
        The pixel ROC AUC of ``estimator.anomaly_maps(X)``; higher is better.

    See Also
    --------
    pixel_roc_auc : The measure it computes.

    Examples
    --------
    {example}
    """
    return pixel_roc_auc(y, _call(estimator, "anomaly_maps", X))


@fill_docstring(scored=_SCORED_AGAINST_MASKS, use=_USE, example=_example('aupro_scorer'))
def aupro_scorer(estimator, X, y):
    """Score the anomaly maps by their AUPRO (FPR up to 0.3) against the masks.

    {use}

    {scored}
        The AUPRO of ``estimator.anomaly_maps(X)``; higher is better.

    See Also
    --------
    aupro : The measure it computes.

    Examples
    --------
    {example}
    """
    return aupro(y, _call(estimator, "anomaly_maps", X))


@fill_docstring(scored=_SCORED_AGAINST_MASKS, use=_USE, example=_example('mean_iou_scorer'))
def mean_iou_scorer(estimator, X, y):
    """Score the predicted masks by their mean IoU against the true ones.

    {use}

    {scored}
        The mean IoU of ``estimator.predict_masks(X)``; higher is better.

    See Also
    --------
    mean_iou : The measure it computes.

    Examples
    --------
    {example}
    """
    return mean_iou(y, _call(estimator, "predict_masks", X))


@fill_docstring(scored=_SCORED, use=_USE, example=_example('image_roc_auc_scorer'))
def image_roc_auc_scorer(estimator, X, y):
    """Score the images' scores by their ROC AUC against the labels.

    {use}

    {scored}
    y : array-like of shape (n_images,) or (n_images, H, W)
        Image labels (1 = defective), or the true masks.

    Returns
    -------
    score : float
        The ROC AUC of ``-estimator.score_samples(X)``; higher is better.

    See Also
    --------
    image_roc_auc : The measure it computes.

    Examples
    --------
    {example}
    """
    return image_roc_auc(y, -estimator.score_samples(X))
