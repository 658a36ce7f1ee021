"""Phase 4 of U-Flow: a contrario segmentation with a number of false alarms.

Under normality the latents are i.i.d. N(0, 1), so at every pixel of a scale
with ``C`` latent channels ``u = sum_k z_k^2`` follows a chi-square law with
``C`` degrees of freedom. Candidate regions are the connected components of
the upper level sets of ``u`` (4-connectivity), which form a tree. A region
``R`` whose pixels all exceed ``lambda = min_R u`` has probability
``PFA(R) = P(chi2_C >= lambda) ** |R|`` under normality. The tree is reduced
to its most significant regions (the paper's procedures 1 and 2) and each
region's number of false alarms is ``NFA = N_T * PFA``, where ``N_T`` counts
the connected regions of its size that could have been tested (polyominoes). A region
with ``NFA <= epsilon`` is detected: under normality, at most ``epsilon`` false
regions per image are expected. A flow's latents are near that model, not on
it, so the segmenter calibrates the NFA on held-out normal images
(:mod:`sklearn_uflow.calibration`): then a normal image holds a detection with
probability at most ``epsilon``, as measured rather than assumed.

The tree reduction is vectorised: see :func:`significant_regions` for how the
iterated prune-and-merge procedures reduce to range queries over a depth-first
order of the tree.
"""

import numbers
from typing import NamedTuple

import numpy as np
import torch
from joblib import Parallel, delayed
from scipy import ndimage, special
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._component_tree import RangeMin, component_tree
from ._docstrings import ROWS, fill_docstring
from ._images import resize_maps, split_features
from .anomaly_map import smoothed_anomaly_maps
from .calibration import ConformalCalibration, conformal_calibration, false_alarm_curve

__all__ = [
    "ACotrarioSegmenter",
    "AContrarioSegmenter",
    "log10_chi2_sf",
    "log10_number_of_tests",
    "log10_nfa_ceiling",
    "component_tree",
    "significant_regions",
    "NullModel",
    "fit_null",
    "log_nfa_maps",
    "delineate",
]

# Fixed polyominoes of size r number about ALPHA * BETA**r / r (Jensen, 2001).
POLYOMINO_ALPHA = 0.316915
POLYOMINO_BETA = 4.062570

_LN10 = np.log(10.0)

#: calibration="held_out": the images given to ``fit`` are scored in this many
#: groups, each by a null fitted on the others.
CALIBRATION_FOLDS = 5
#: The default NFA threshold (see the user guide, "Choosing epsilon").
DEFAULT_EPSILON = 0.05
#: delineate(): how far from the map's level to a detection's height, in
#: evidence units, its extent reaches (chosen on the development set).
DELINEATION_SHARE = 0.3


def _log_chi2_sf_continued_fraction(x, df, n_terms=300):
    """Natural log of P(chi2_df >= x) from the Legendre continued fraction of
    the upper incomplete gamma function (modified Lentz), valid for
    x/2 > df/2 + 1; it never underflows because it stays in log space."""
    a, t = 0.5 * df, 0.5 * x
    tiny = 1e-300
    b = t + 1.0 - a
    c = np.full_like(t, 1.0 / tiny)
    d = 1.0 / b
    h = d.copy()
    for i in range(1, n_terms + 1):
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return -t + a * np.log(t) - special.gammaln(a) + np.log(h)


def log10_chi2_sf(x, df):
    """``log10 P(chi2_df >= x)``, accurate from x = 0 to far in the tail.

    Where the probability is representable it is computed exactly by SciPy
    (through the lower tail when it is close to 1, to keep its digits); where
    it underflows double precision, by the continued fraction of the
    incomplete gamma function in log space. The result is never below
    ``log10 0.5`` for ``x`` below the median: small values are not
    significant.

    Parameters
    ----------
    x : array-like
        Non-negative values of the statistic.
    df : float
        Degrees of freedom.

    Returns
    -------
    log_sf : ndarray of float64
        Same shape as ``x``; 0 at ``x = 0``.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import log10_chi2_sf
    >>> print(f"{log10_chi2_sf(2.0, 2):.6f}")  # P = exp(-1)
    -0.434294
    >>> print(f"{log10_chi2_sf(4000.0, 2):.6f}")  # exp(-2000) underflows, its log does not
    -868.588964
    """
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    shape, x = x.shape, x.reshape(-1)
    a = 0.5 * df
    upper = special.gammaincc(a, 0.5 * x)
    out = np.empty_like(x)
    body = x < df
    out[body] = np.log1p(-special.gammainc(a, 0.5 * x[body])) / _LN10
    tail = ~body & (upper > 1e-290)
    out[tail] = np.log10(upper[tail])
    far = ~body & ~tail
    if np.any(far):
        out[far] = _log_chi2_sf_continued_fraction(x[far], df) / _LN10
    return out.reshape(shape)[()]


def log10_number_of_tests(region_size, scale_pixels, total_pixels):
    """``log10 N_T`` for regions of ``region_size`` pixels at a scale.

    The false-alarm budget is split evenly over every (scale, region size)
    pair, and within a pair over every connected region of that size: at
    each of the scale's ``N_s`` pixels, ``ALPHA * BETA**r / r`` fixed
    polyominoes of size ``r`` could be placed. So

    ``N_T(r) = (sum_s N_s) * N_s * ALPHA * BETA**r / r``

    and, summed over all regions of all sizes of all scales, the weights
    ``1 / N_T`` add up to at most 1: the expected number of regions with
    ``NFA <= epsilon`` under normality is at most ``epsilon``.

    Parameters
    ----------
    region_size : int or ndarray of int
        Pixels in the region(s).
    scale_pixels : int
        ``N_s``, pixels of the region's scale.
    total_pixels : int
        ``sum_s N_s`` over the scales.

    Returns
    -------
    log_n_tests : float or ndarray of float64
        ``log10 N_T`` of each region size.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import log10_number_of_tests
    >>> round(float(log10_number_of_tests(1, 1, 1)), 6)  # ALPHA * BETA
    0.109744
    """
    r = np.asarray(region_size, dtype=np.float64)
    return (np.log10(total_pixels) + np.log10(scale_pixels) + np.log10(POLYOMINO_ALPHA)
            + r * np.log10(POLYOMINO_BETA) - np.log10(r))


def log10_nfa_ceiling(scale_pixels):
    """Compute the largest log10 NFA reported, a single pixel's with no evidence.

    That of one pixel with no evidence at all (PFA = 1) at the largest
    scale. Pixels in no selected region carry it, and no region reports
    more.

    Parameters
    ----------
    scale_pixels : sequence of int
        The pixel counts of the scales.

    Returns
    -------
    ceiling : float
        ``log10 N_T(1)`` at the largest scale.
    """
    return float(log10_number_of_tests(1, max(scale_pixels), sum(scale_pixels)))


class NullModel(NamedTuple):
    """What normal latents look like at one scale.

    ``u = sum_k z_k^2`` follows ``scale * chi2(dof)`` at each pixel up to
    ``tail_start``; beyond it, its survival function decays exponentially
    with mean excess ``tail_scale`` (a peaks-over-threshold tail; ``inf``
    for none). Pixels closer than the correlation ``area`` (in pixels) are
    dependent: a region of ``|R|`` pixels counts as ``max(|R| / area, 1)``
    independent observations. The theory of a perfect flow is
    ``NullModel(1, C, 1, inf, 0)``.

    Parameters
    ----------
    scale : float
        Scale of the chi-square law of ``u``.
    dof : float
        Its degrees of freedom.
    area : float
        Correlation area, in pixels.
    tail_start : float, default=inf
        Where the exponential tail starts.
    tail_scale : float, default=0.0
        The tail's mean excess.
    """

    scale: float
    dof: float
    area: float
    tail_start: float = np.inf
    tail_scale: float = 0.0

    @classmethod
    def theory(cls, channels):
        """Build the null of i.i.d. N(0, 1) latents, the paper's.

        Parameters
        ----------
        channels : int
            Latent channels at the scale.

        Returns
        -------
        null : NullModel
            ``NullModel(1, channels, 1)``.
        """
        return cls(1.0, float(channels), 1.0)

    def log10_sf(self, u):
        """Compute ``log10 P(U >= u)`` under this model.

        Parameters
        ----------
        u : array-like
            Values of ``sum_k z_k^2``.

        Returns
        -------
        log_sf : ndarray of float64
            The same shape as ``u``.
        """
        u = np.asarray(u, dtype=np.float64)
        body = log10_chi2_sf(np.minimum(u, self.tail_start) / self.scale, self.dof)
        if not np.isfinite(self.tail_start):
            return body
        excess = np.maximum(u - self.tail_start, 0.0)
        return body - excess / (self.tail_scale * _LN10)


def _correlation_area(u):
    """Integral of the spatial autocorrelation of ``u`` (``(n, H, W)``) over
    the lags, within a quarter of the map, where it stands clear of the
    estimate's noise: the area over which pixels are dependent."""
    n, height, width = u.shape
    centred = u - u.mean(axis=(1, 2), keepdims=True)
    spectrum = np.fft.rfft2(centred, s=(2 * height, 2 * width))
    correlation = np.fft.irfft2(np.abs(spectrum) ** 2, s=(2 * height, 2 * width)).sum(0)
    if correlation[0, 0] <= 0:
        return 1.0
    correlation /= correlation[0, 0]
    rows = np.r_[0 : max(height // 4, 1), -max(height // 4, 1) + 1 : 0]
    cols = np.r_[0 : max(width // 4, 1), -max(width // 4, 1) + 1 : 0]
    window = correlation[np.ix_(rows % (2 * height), cols % (2 * width))]
    noise = 3.0 / np.sqrt(u.size)  # ~3 standard errors of a null correlation
    return float(max(window[window > noise].sum(), 1.0))


def fit_null(latents):
    """Estimate the null model of each scale from latents of normal images.

    A trained flow does not make latents exactly i.i.d. N(0, 1): channels
    of a pixel stay correlated, which inflates the variance of ``u``, and
    neighbouring pixels stay dependent. Matching the first two moments of
    ``u`` by ``scale * chi2(dof)`` (Satterthwaite's approximation) and
    measuring the correlation area from the autocorrelation keeps the a
    contrario test's form with the dependence the data show.

    Parameters
    ----------
    latents : list of torch.Tensor or ndarray of shape (n, C, H, W)
        Latents of held-out normal images, one entry per scale.

    Returns
    -------
    null : list of NullModel
        One per scale.
    """
    null = []
    for z in latents:
        u = _squared_norms(z)
        mean, var = float(u.mean()), float(u.var())
        if not var > 0:
            null.append(NullModel.theory(z.shape[1]))
            continue
        # The moments fit the bulk; the extreme tail, which decides the
        # false alarms, is heavier: model it beyond the 99th percentile by
        # the exponential decay of the observed excesses, but never lighter
        # than the scaled chi-square's own tail.
        scale, dof = var / (2 * mean), 2 * mean**2 / var
        start = float(np.quantile(u, 0.99))
        excess = u[u > start] - start
        tail_scale = max(float(excess.mean()) if excess.size else 0.0, 2 * scale)
        null.append(NullModel(scale, dof, _correlation_area(u), start, tail_scale))
    return null


def _squared_norms(z):
    """``u = sum_k z_k^2`` per image, ``(n, H, W)`` float64.

    Summed image by image in the latents' own precision (float32 from the
    flow), which keeps the work in cache: a float64 copy of a batch of
    MS-CaiT latents would cost more than the whole segmentation. float64 is
    used where float32 overflows.
    """
    z = z.detach().cpu().numpy() if torch.is_tensor(z) else np.asarray(z)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float32)
    u = np.stack([np.einsum("chw,chw->hw", x, x) for x in z]).astype(np.float64)
    if not np.isfinite(u).all():
        z = z.astype(np.float64)
        u = np.stack([np.einsum("chw,chw->hw", x, x) for x in z])
    return u


def significant_regions(u, df, total_pixels=None, null=None):
    """Most significant regions of one scale and their ``log10 NFA``.

    Parameters
    ----------
    u : ndarray of shape (H, W)
        ``sum_k z_k^2`` at each pixel.
    df : int
        Number of latent channels ``C`` (degrees of freedom); unused when
        ``null`` is given.
    total_pixels : int, default=None
        Pixels of all scales together (for the number of tests); default
        this scale's.
    null : NullModel, default=None
        The law of ``u`` under normality; default ``NullModel.theory(df)``.
        Region sizes are then counted in independent units of
        ``null.area`` pixels; positions are still counted in pixels.

    Returns
    -------
    labels : ndarray of int64, shape (H, W)
        0 outside the selected regions, ``k + 1`` inside region ``k``.
    log_nfa : ndarray of float64, shape (n_regions,)
        ``log10 N_T(|R|) + |R| * log10 P(chi2_C >= min_R u)`` of each region
        (with a null model: ``|R|`` in units of its area, ``chi2`` scaled).

    Notes
    -----
    The nodes of the component tree are the connected components of the
    upper level sets ``{u >= lambda}``; a node is more significant when its
    NFA is lower. The paper's procedures are: (1)
    replace each branch that hangs from a leaf through single-child nodes by
    its most significant node; (2) when all children of a node are leaves and
    the node is at least as significant as each of them, replace them by the
    node; repeat until nothing changes. Following the procedures bottom-up
    shows that a subtree ends as a single leaf exactly when no node with two
    or more children inside it is less significant than one of its
    descendants, and that leaf is then the subtree's most significant node.
    The final leaves are the maximal such subtrees. With the nodes in
    depth-first preorder every subtree is a contiguous range, so all of this
    is prefix sums and range-minimum queries: no recursion and no Python loop
    over nodes.
    """
    u = np.asarray(u, dtype=np.float64)
    pixels = u.size
    margin = 2 if min(u.shape) < 3 else 0
    if margin:
        # skimage's max_tree needs 3 pixels a side: frame the map with a
        # level below all others, which only adds pixels to the root.
        u = np.pad(u, margin, constant_values=u.min() - 1)
    tree = component_tree(u)
    n_nodes = len(tree.level)
    pre, start, end = tree.preorder, tree.start, tree.end
    null = null or NullModel.theory(df)
    observations = np.maximum(tree.area / null.area, 1.0)
    # Positions are counted in pixels, shapes in independent units: shapes
    # that differ below the correlation scale are the same test.
    log_nfa = log10_number_of_tests(observations, pixels, total_pixels or pixels)
    log_nfa += observations * null.log10_sf(tree.level)

    root = tree.root
    n_children = np.bincount(tree.parent[np.arange(n_nodes) != root], minlength=n_nodes)
    lowest = RangeMin(log_nfa[pre])
    below = lowest.values[lowest.argmin(start + 1, end)]
    blocking = (n_children >= 2) & (log_nfa > below)
    blocked = np.concatenate(([0], np.cumsum(blocking[pre])))
    collapses = (blocked[end] - blocked[start]) == 0
    final = collapses & (~collapses[tree.parent] | (np.arange(n_nodes) == root))
    final = np.flatnonzero(final)
    best = pre[lowest.argmin(start[final], end[final])]

    # Mark each chosen region's preorder range, then map nodes back to pixels.
    marks = np.zeros(n_nodes + 1, np.int64)
    region = np.arange(1, len(best) + 1)
    np.add.at(marks, start[best], region)
    np.add.at(marks, end[best], -region)
    node_label = np.empty(n_nodes, np.int64)
    node_label[pre] = np.cumsum(marks[:-1])
    labels = node_label[tree.owner].reshape(u.shape)
    if margin:
        labels = labels[margin:-margin, margin:-margin]
    return labels, log_nfa[best]


def _image_log_nfa(squared_norms, null, size):
    """log10 NFA map of one image from its per-scale ``u`` maps."""
    pixels = [u.size for u in squared_norms]
    merged = np.full(size, log10_nfa_ceiling(pixels))
    for u, model in zip(squared_norms, null):
        labels, log_nfa = significant_regions(u, None, sum(pixels), model)
        scale_map = np.concatenate(([np.inf], log_nfa))[labels]
        np.minimum(merged, resize_maps(torch.from_numpy(scale_map)[None], size, mode="nearest")[0].numpy(),
                   out=merged)
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
        The null model of each scale (:func:`fit_null`); default the theory
        of i.i.d. N(0, 1) latents.

    Returns
    -------
    log_nfa : ndarray of shape (n, H, W), float64
        Pixels outside every selected region carry
        :func:`log10_nfa_ceiling`, and no pixel carries more.
    """
    squared = [_squared_norms(z) for z in latents]
    null = null or [NullModel.theory(z.shape[1]) for z in latents]
    size = tuple(int(v) for v in (size if size is not None else squared[0].shape[1:]))
    jobs = [([s[i] for s in squared], null, size) for i in range(len(squared[0]))]
    if n_jobs in (None, 1):
        return np.stack([_image_log_nfa(*job) for job in jobs])
    return np.stack(Parallel(n_jobs=n_jobs)(delayed(_image_log_nfa)(*job) for job in jobs))


def _shapes_of(latents):
    """``(C, H, W)`` of each scale of a batch of latents."""
    return [tuple(int(v) for v in z.shape[1:]) for z in latents]


_PLANAR = np.zeros((3, 3, 3), bool)
_PLANAR[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within an image, never across


def delineate(log_nfa, maps, level, ceiling):
    """Give the regions that the NFA finds the extent that the anomaly map shows.

    The component trees decide *whether* and *where* the latents are
    significant, with a calibrated number of false alarms; but their regions
    are level sets of ``u`` on each latent grid, which follow the texture
    inside a defect (many small regions, the most significant of each
    branch) rather than its outline. The smoothed anomaly map, at the
    images' size, follows the outline, blurred by the upsampling of the
    coarse scales and the filter. So:

    * each connected component of ``{map >= level}`` carries the smallest
      log10 NFA of the trees' regions it meets (a component that meets none
      carries ``ceiling``, as do the pixels outside every component);
    * its height is the median of the map over that most significant region,
      where the trees say the defect is (a median, so that neither a noisy
      peak nor the blurred rim moves it);
    * its extent is where the map's evidence, ``-log(1 - map)``, stands at
      least :data:`DELINEATION_SHARE` of the way from the level's to the
      height's. The map is one minus a mean of likelihoods, so over a strong
      defect it saturates at 1 on a plateau wider than the defect, and a cut
      in map units takes the whole plateau; in evidence units the plateau
      keeps its relief, and the cut does not depend on how strong the defect
      is.

    The detections are those of the trees that reach above ``level``, so the
    bound on false detections under normality still holds.

    Parameters
    ----------
    log_nfa : ndarray of shape (n, H, W)
        The trees' log10 NFA maps (:func:`log_nfa_maps`).
    maps : ndarray of shape (n, H, W)
        Anomaly maps of the same images, at the same size.
    level : float
        What the anomaly map of a normal image reaches: the segmenter uses
        the median over normal images of their map's maximum.
    ceiling : float
        The log10 NFA of pixels in no region (:func:`log10_nfa_ceiling`).

    Returns
    -------
    log_nfa : ndarray of shape (n, H, W), float64
        Each kept pixel carries its component's log10 NFA, the others
        ``ceiling``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import delineate
    >>> maps = np.array([[[0.1, 0.5, 0.9, 0.6, 0.1, 0.7]]])
    >>> trees = np.array([[[3.0, -5.0, -5.0, 3.0, 3.0, 3.0]]])
    >>> delineate(trees, maps, level=0.4, ceiling=3.0)  # height 0.7: cut at 1 - 0.6**0.7 * 0.3**0.3 = 0.513
    array([[[ 3.,  3., -5., -5.,  3.,  3.]]])
    """
    maps = np.asarray(maps)
    out = np.full(maps.shape, ceiling, dtype=np.float64)
    components, n = ndimage.label(maps >= level, structure=_PLANAR)
    if n == 0:
        return out
    # Work on the components' pixels only: a few percent of the image.
    inside = np.flatnonzero(components)
    label = components.ravel()[inside]
    values = maps.ravel()[inside]
    region_nfa = np.asarray(log_nfa, dtype=np.float64).ravel()[inside]
    index = np.arange(1, n + 1)
    nfa = np.concatenate(([ceiling], ndimage.minimum(region_nfa, label, index)))
    core = region_nfa == nfa[label]
    height = np.concatenate(([np.inf], ndimage.median(values[core], label[core], index)))
    share = DELINEATION_SHARE
    kept = values >= 1.0 - (1.0 - level) ** (1.0 - share) * (1.0 - height[label]) ** share
    out.ravel()[inside[kept]] = nfa[label[kept]]
    return out


class ACotrarioSegmenter(TransformerMixin, BaseEstimator):
    """Unsupervised segmentation of latents by their number of false alarms.

    The latents of normal images are i.i.d. N(0, 1) (``nfa_null="theory"``) or
    follow the law measured on the latents given to ``fit``
    (``nfa_null="empirical"``). Regions whose number of false alarms (NFA) is
    at most ``epsilon`` are detected: under normality, at most ``epsilon``
    false regions per image are expected, whatever the image; calibrated on
    the latents given to ``fit`` (the default), a normal image holds a
    detection with probability at most ``epsilon``.

    Input rows are latents flattened scale by scale (channel-major), as
    produced by :func:`sklearn_uflow.features.flatten_maps`; output rows are
    log10 NFA maps at ``output_size``, flattened. :meth:`fit_latents` and
    :meth:`log_nfa_of_latents` take the flow's per-scale latents as they are.

    Parameters
    ----------
    latent_shapes : list of (C, H, W), default=None
        Shapes of the scales in a row, finest first. ``None`` reads a row of
        ``d`` values as one scale of shape ``(1, 1, d)``: a 1-D signal of
        N(0, 1) values.
    epsilon : float, default=0.05
        Detection threshold on the NFA, > 0. Calibrated, the largest
        probability that a normal image holds a detection; with
        ``calibration="none"``, the expected number of false regions per
        image under the null law. Smaller is stricter.
    output_size : tuple of int, default=None
        ``(H, W)`` of the output maps; default the finest scale's size.
    nfa_null : {"empirical", "theory"}, default="empirical"
        The law of normal latents. ``"empirical"``: a scaled chi-square law
        of ``u`` with a heavier tail and the spatial correlation of the
        latents, measured by :func:`fit_null` on the latents given to
        ``fit``, which must be those of normal images not used to train the
        flow. ``"theory"``: i.i.d. N(0, 1), the paper's assumption of a
        perfect flow.
    delineation : {"map", "tree"}, default="map"
        The extent of a detection. ``"map"``: the part of the anomaly map
        around it whose evidence stands at least a set share of the way from
        ``map_level_`` to the map's median over the detected region
        (:func:`delineate`).
        ``"tree"``: the regions of the component trees themselves, as in
        the paper.
    map_smoothing : "auto" or float, default="auto"
        Width of the Gaussian filter of the anomaly map used by
        ``delineation="map"``: ``"auto"`` is 1/64 of the output's side, a
        float is in cells of the finest latent grid, >= 0.
    calibration : {"held_out", "none"}, default="held_out"
        How the NFA's false alarms are bounded. ``"held_out"``: measured on
        the images given to ``fit``, each scored by a null fitted on the
        others, and every log10 NFA mapped by the conformal calibration
        (:func:`~sklearn_uflow.calibration.conformal_calibration`) under
        which a new normal image holds a region with ``NFA <= epsilon``
        with probability at most ``epsilon``, for ``epsilon`` down to
        ``1 / (n + 1)`` with ``n`` images. ``"none"``: the null model's
        bound alone, as in the paper.
    n_jobs : int, default=None
        Images whose component trees are computed in parallel by joblib.

    Attributes
    ----------
    latent_shapes_ : list of tuple of int
        The scales' shapes used.
    null_ : list of NullModel
        The null model of each scale.
    map_level_ : float
        What the anomaly map of a normal image reaches: the median over the
        images given to ``fit`` of their map's maximum.
    calibration_ : ConformalCalibration
        The monotone map applied to every log10 NFA
        (:func:`~sklearn_uflow.calibration.conformal_calibration`); the
        identity with ``calibration="none"`` (or a single image given to
        ``fit``).
    held_out_scores_ : ndarray of shape (n_samples,) or None
        With ``calibration="held_out"``: the smallest calibrated log10 NFA
        of each image given to ``fit``, from a null fitted without it.
    false_alarm_curve_ : dict or None
        With ``calibration="held_out"``: the false alarms measured on those
        images at each of :data:`~sklearn_uflow.calibration.EPSILONS`
        (:func:`~sklearn_uflow.calibration.false_alarm_curve`).
    output_size_ : tuple of int
        ``(H, W)`` of the output maps.
    log_nfa_ceiling_ : float
        The log10 NFA of pixels in no region (the largest value).
    n_features_in_ : int
        Length of an input row.

    See Also
    --------
    log_nfa_maps : The component trees of each scale, merged.
    delineate : How ``delineation="map"`` draws the regions.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow import ACotrarioSegmenter
    >>> rng = np.random.default_rng(0)
    >>> normal = rng.standard_normal((20, 16 * 8 * 8))
    >>> Z = rng.standard_normal((2, 16 * 8 * 8))
    >>> Z[1].reshape(16, 8, 8)[:, 2:6, 2:6] += 3.0  # a strong blob
    >>> seg = ACotrarioSegmenter(latent_shapes=[(16, 8, 8)]).fit(normal)
    >>> seg.predict_masks(Z).reshape(2, -1).any(axis=1)
    array([False,  True])
    """

    _parameter_constraints = {
        "latent_shapes": ["array-like", None],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "output_size": ["array-like", None],
        "nfa_null": [StrOptions({"empirical", "theory"})],
        "delineation": [StrOptions({"map", "tree"})],
        "map_smoothing": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="left")],
        "calibration": [StrOptions({"held_out", "none"})],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(self, latent_shapes=None, *, epsilon=DEFAULT_EPSILON, output_size=None, nfa_null="empirical",
                 delineation="map", map_smoothing="auto", calibration="held_out", n_jobs=None):
        self.latent_shapes = latent_shapes
        self.epsilon = epsilon
        self.output_size = output_size
        self.nfa_null = nfa_null
        self.delineation = delineation
        self.map_smoothing = map_smoothing
        self.calibration = calibration
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Learn what normal latents look like from rows of latents.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Latent rows of normal images.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted segmenter.
        """
        X = validate_data(self, X, dtype=np.float64)
        shapes = [tuple(int(v) for v in s) for s in (self.latent_shapes or [(1, 1, X.shape[1])])]
        if sum(int(np.prod(s)) for s in shapes) != X.shape[1]:
            raise ValueError(f"latent_shapes {shapes} describe {sum(int(np.prod(s)) for s in shapes)} values "
                             f"per row, but X has {X.shape[1]} columns.")
        return self._fit(split_features(X, shapes))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_latents(self, latents):
        """Learn what normal latents look like from the flow's latents.

        Parameters
        ----------
        latents : list of torch.Tensor or ndarray of shape (n, C_l, H_l, W_l)
            Latents of normal images, one entry per scale, finest first,
            in any float precision (none is copied to float64).

        Returns
        -------
        self : object
            The fitted segmenter.
        """
        if self.latent_shapes is not None and _shapes_of(latents) != [tuple(s) for s in self.latent_shapes]:
            raise ValueError(f"latents of shapes {_shapes_of(latents)} do not match latent_shapes "
                             f"{self.latent_shapes}.")
        return self._fit(latents)

    def _fit(self, latents):
        shapes = _shapes_of(latents)
        null = fit_null(latents) if self.nfa_null == "empirical" else [NullModel.theory(c) for c, _, _ in shapes]
        self._set_fitted(shapes, null, map_level=None)
        peaks = smoothed_anomaly_maps(latents, self.output_size_, self.map_smoothing).max(axis=(1, 2))
        self.map_level_ = float(np.median(peaks))
        self.held_out_scores_ = self.false_alarm_curve_ = None
        if self.calibration == "held_out" and len(latents[0]) > 1:
            held_out = self._cross_fitted_log_nfa(latents)
            self.calibration_ = conformal_calibration(held_out.min(axis=(1, 2)), self.log_nfa_ceiling_)
            held_out = self.calibration_(held_out)
            self.held_out_scores_ = held_out.min(axis=(1, 2))
            self.false_alarm_curve_ = false_alarm_curve(held_out)
        return self

    def _cross_fitted_log_nfa(self, latents):
        """The uncalibrated log10 NFA maps of the images of ``latents``, each
        from a null (and map level) fitted on the other groups of images: a
        null fitted on an image itself would find it more normal than a new
        one, and the calibration would promise too much."""
        judge = clone(self).set_params(calibration="none")
        n_images = len(latents[0])
        out = np.empty((n_images, *self.output_size_))
        for train, test in KFold(min(CALIBRATION_FOLDS, n_images)).split(np.arange(n_images)):
            judge._fit([z[train] for z in latents])
            out[test] = judge.log_nfa_of_latents([z[test] for z in latents])
        return out

    def restore_fit(self, null, map_level, calibration=None):
        """Set the state that ``fit`` learns from stored values (a model file's).

        Parameters
        ----------
        null : list of NullModel
            The fitted ``null_``.
        map_level : float
            The fitted ``map_level_``.
        calibration : ConformalCalibration, default=None
            The fitted ``calibration_``; None for none.

        Returns
        -------
        self : object
            The fitted segmenter.
        """
        if self.latent_shapes is None:
            raise ValueError("restore_fit needs latent_shapes.")
        self.held_out_scores_ = self.false_alarm_curve_ = None
        return self._set_fitted([tuple(int(v) for v in s) for s in self.latent_shapes], list(null), map_level,
                                calibration)

    def _set_fitted(self, shapes, null, map_level, calibration=None):
        self.latent_shapes_ = shapes
        self.n_features_in_ = sum(int(np.prod(s)) for s in shapes)
        self.output_size_ = tuple(int(v) for v in (self.output_size or shapes[0][1:]))
        self.null_ = null
        self.map_level_ = map_level
        self.log_nfa_ceiling_ = log10_nfa_ceiling([h * w for _, h, w in shapes])
        self.calibration_ = calibration or ConformalCalibration.identity(self.log_nfa_ceiling_)
        return self

    def log_nfa_of_latents(self, latents, anomaly_maps=None):
        """Compute the log10 NFA maps of the flow's latents.

        Parameters
        ----------
        latents : list of torch.Tensor or ndarray of shape (n, C_l, H_l, W_l)
            One entry per scale, of the shapes seen in ``fit``.
        anomaly_maps : ndarray of shape (n, H, W), default=None
            The same images' smoothed anomaly maps at ``output_size_``
            (:func:`~sklearn_uflow.anomaly_map.smoothed_anomaly_maps` with this
            segmenter's ``map_smoothing``), when the caller has them already;
            computed otherwise.

        Returns
        -------
        log_nfa : ndarray of shape (n, H, W), float64
            Each pixel carries the log10 NFA of the region that holds it,
            pixels in none carry ``log_nfa_ceiling_``.
        """
        check_is_fitted(self, "null_")
        if _shapes_of(latents) != self.latent_shapes_:
            raise ValueError(f"latents of shapes {_shapes_of(latents)} do not match the fitted {self.latent_shapes_}.")
        log_nfa = log_nfa_maps(latents, self.output_size_, self.n_jobs, self.null_)
        if self.delineation == "map":
            if anomaly_maps is None:
                anomaly_maps = smoothed_anomaly_maps(latents, self.output_size_, self.map_smoothing)
            log_nfa = delineate(log_nfa, anomaly_maps, self.map_level_, self.log_nfa_ceiling_)
        return self.calibration_(log_nfa)

    @fill_docstring(rows=ROWS)
    def log_nfa_maps(self, X):
        """Compute the log10 NFA maps of latent rows.

        {rows}

        Returns
        -------
        log_nfa : ndarray of shape (n_samples, H, W), float64
            See :meth:`log_nfa_of_latents`.
        """
        check_is_fitted(self, "null_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.log_nfa_of_latents(split_features(X, self.latent_shapes_))

    @fill_docstring(rows=ROWS)
    def transform(self, X):
        """Compute the log10 NFA maps of latent rows, flattened.

        {rows}

        Returns
        -------
        log_nfa : ndarray of shape (n_samples, H * W), float64
            :meth:`log_nfa_maps`, one row per sample.
        """
        maps = self.log_nfa_maps(X)
        return maps.reshape(len(maps), -1)

    @fill_docstring(rows=ROWS)
    def predict_masks(self, X):
        """Segment latent rows: the pixels with ``log10 NFA <= log10 epsilon``.

        {rows}

        Returns
        -------
        masks : ndarray of shape (n_samples, H, W), bool
            The detected pixels.
        """
        return self.log_nfa_maps(X) <= np.log10(self.epsilon)


#: The same class, spelled as readers of "a contrario" expect; ``ACotrarioSegmenter`` is the name the design gave.
AContrarioSegmenter = ACotrarioSegmenter
