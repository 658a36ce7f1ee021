"""The log10 NFA map of an image: each scale's most significant regions, brought to the image's size and merged.

NumPy and SciPy only, so that the torch-free runtime (:mod:`sklearn_uflow.runtime`) draws the same maps from the
same per-scale ``u = sum_k z_k^2`` as the library.
"""

import numpy as np

from ._component_tree import significant_regions
from ._delineation import delineate
from ._nfa_law import NullModel, log10_nfa_ceiling, squared_norms
from ._resize import resize_nearest

__all__ = ["log_nfa_maps", "image_log_nfa", "segmented_log_nfa"]


def image_log_nfa(norms, null, size):
    """log10 NFA map of one image from its per-scale ``u`` maps.

    Parameters
    ----------
    norms : list of ndarray of shape (H_l, W_l)
        ``u = sum_k z_k^2`` of each scale.
    null : list of NullModel
        The null model of each scale.
    size : tuple of int
        The output ``(H, W)``.

    Returns
    -------
    log_nfa : ndarray of shape (H, W), float64
        The smallest log10 NFA of the scales' regions at each pixel, the
        ceiling where there is none.
    """
    pixels = [u.size for u in norms]
    merged = np.full(size, log10_nfa_ceiling(pixels))
    for u, model in zip(norms, null):
        labels, log_nfa = significant_regions(u, None, sum(pixels), model)
        scale_map = np.concatenate(([np.inf], log_nfa))[labels]
        np.minimum(merged, resize_nearest(scale_map, size), out=merged)
    return merged


def log_nfa_maps(latents, size=None, n_jobs=None, null=None):
    """Compute the log10 NFA maps of a batch from its per-scale latents.

    Each scale's selected regions carry their log10 NFA; the scales are
    resized to ``size`` by nearest neighbour (no value is invented between a
    region and its surroundings) and merged by the pixel-wise minimum.

    Parameters
    ----------
    latents : list of torch.Tensor or ndarray of shape (n, C_l, H_l, W_l)
        The flow's latents, one entry per scale.
    size : tuple of int, default=None
        Output ``(H, W)``; default the finest scale's size.
    n_jobs : int, default=None
        Images processed in parallel by joblib.
    null : list of NullModel, default=None
        The null model of each scale (:func:`~sklearn_uflow.acontrario.fit_null`); default the theory
        of i.i.d. N(0, 1) latents.

    Returns
    -------
    log_nfa : ndarray of shape (n, H, W), float64
        Pixels outside every selected region carry
        :func:`~sklearn_uflow.acontrario.log10_nfa_ceiling`, and no pixel carries more.

    See Also
    --------
    sklearn_uflow.acontrario.significant_regions : The regions of one scale.
    sklearn_uflow.acontrario.ACotrarioSegmenter : The estimator that fits the null and calibrates the maps.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import log_nfa_maps
    >>> z = np.zeros((1, 2, 8, 8))
    >>> z[0, :, 2:4, 2:4] = 6.0
    >>> log_nfa = log_nfa_maps([z], size=(16, 16))
    >>> log_nfa.shape, bool(log_nfa[0, 5, 5] < 0), bool(log_nfa[0, 0, 0] < 0)
    ((1, 16, 16), True, False)
    """
    null = null or [NullModel.theory(z.shape[1]) for z in latents]
    return _log_nfa_of_norms([squared_norms(z) for z in latents], size, n_jobs, null)


def _log_nfa_of_norms(squared, size, n_jobs, null):
    size = tuple(int(v) for v in (size if size is not None else squared[0].shape[1:]))
    jobs = [([s[i] for s in squared], null, size) for i in range(len(squared[0]))]
    if n_jobs in (None, 1):
        return np.stack([image_log_nfa(*job) for job in jobs])
    from joblib import Parallel, delayed  # here: the runtime scores in one process, without joblib

    return np.stack(Parallel(n_jobs=n_jobs)(delayed(image_log_nfa)(*job) for job in jobs))


def segmented_log_nfa(norms, anomaly_maps, *, null, size, delineation, map_level, calibration, n_jobs=None):
    """The fitted segmenter's log10 NFA maps, from the per-scale ``u`` and the smoothed anomaly maps.

    The scales' regions merged (:func:`log_nfa_maps`), given the extent the
    anomaly map shows (``delineation="map"``), then calibrated: what
    :meth:`~sklearn_uflow.acontrario.ACotrarioSegmenter.log_nfa_of_latents`
    returns, shared with the torch-free runtime.

    Parameters
    ----------
    norms : list of ndarray of shape (n, H_l, W_l)
        ``u = sum_k z_k^2`` of each scale, float64.
    anomaly_maps : ndarray of shape (n, H, W) or None
        The smoothed anomaly maps at ``size``; only read with ``delineation="map"``.
    null : list of NullModel
        The segmenter's ``null_``.
    size : tuple of int
        Its ``output_size_``.
    delineation : {"map", "tree"}
        Its ``delineation``.
    map_level : float
        Its ``map_level_``.
    calibration : ConformalCalibration
        Its ``calibration_``.
    n_jobs : int, default=None
        Images processed in parallel by joblib.

    Returns
    -------
    log_nfa : ndarray of shape (n, H, W), float64
        The calibrated log10 NFA of the region that holds each pixel.
    """
    log_nfa = _log_nfa_of_norms(norms, size, n_jobs, null)
    if delineation == "map":
        log_nfa = delineate(log_nfa, anomaly_maps, map_level, log10_nfa_ceiling([u[0].size for u in norms]))
    return calibration(log_nfa)
