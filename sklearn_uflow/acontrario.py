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

The module's parts follow the method: the law of ``u`` and the number of
tests (:mod:`sklearn_uflow._nfa_law`), the component tree and its reduction
to the most significant regions (:mod:`sklearn_uflow._component_tree`; see
:func:`significant_regions` for how the iterated prune-and-merge procedures
reduce to range queries over a depth-first order of the tree), the
delineation of the detections by the anomaly map
(:mod:`sklearn_uflow._delineation`), and here the maps of a batch and the
estimator.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context, clone
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._component_tree import component_tree, significant_regions
from ._delineation import DELINEATION_SHARE, delineate
from ._docstrings import ROWS, fill_docstring
from ._nfa_law import NullModel, fit_null, log10_chi2_sf, log10_nfa_ceiling, log10_number_of_tests, squared_norms
from ._nfa_maps import log_nfa_maps, segmented_log_nfa
from ._tensors import split_features
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

#: calibration="held_out": the images given to ``fit`` are scored in this many
#: groups, each by a null fitted on the others.
CALIBRATION_FOLDS = 5
#: The default NFA threshold (see the user guide, "Choosing epsilon").
DEFAULT_EPSILON = 0.05


def _shapes_of(latents):
    """``(C, H, W)`` of each scale of a batch of latents."""
    return [tuple(int(v) for v in z.shape[1:]) for z in latents]


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

    def fitted_state(self):
        """The state that ``fit`` learns, as JSON values: the inverse of :meth:`restore_fit`.

        Returns
        -------
        state : dict
            ``null_`` (each scale's :class:`NullModel` as a list), ``map_level_``
            and ``calibration_`` (its ``raw`` and ``calibrated`` knots and its
            ``ceiling``).
        """
        check_is_fitted(self, "null_")
        return {"null_": [[float(v) for v in m] for m in self.null_], "map_level_": float(self.map_level_),
                "calibration_": {"raw": self.calibration_.raw.tolist(),
                                 "calibrated": self.calibration_.calibrated.tolist(),
                                 "ceiling": float(self.calibration_.ceiling)}}

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
        if self.delineation == "map" and anomaly_maps is None:
            anomaly_maps = smoothed_anomaly_maps(latents, self.output_size_, self.map_smoothing)
        return segmented_log_nfa([squared_norms(z) for z in latents], anomaly_maps, null=self.null_,
                                 size=self.output_size_, delineation=self.delineation, map_level=self.map_level_,
                                 calibration=self.calibration_, n_jobs=self.n_jobs)

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
