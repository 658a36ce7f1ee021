"""Score with an exported detector where torch is not installed: onnxruntime, NumPy and SciPy only.

:func:`sklearn_uflow.export.export_onnx` writes one ONNX file: the graph gives
each image's anomaly map before its filter and each scale's ``u = sum_k z_k^2``, and
its metadata carries the fitted a contrario state. :func:`load` reads it and
returns an object with the detector's scoring methods, which run on the
graph's outputs the library's own NumPy code: the map's filter, the component
trees, the delineation and the calibration. Install with
``pip install "sklearn-uflow[runtime]"``.
"""

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ._nfa_law import NullModel
from ._nfa_maps import segmented_log_nfa
from ._docstrings import fill_docstring
from ._images import as_image_array, check_images
from .anomaly_map import smooth_maps
from .calibration import ConformalCalibration

__all__ = ["load", "ExportedDetector", "ExportedModelError", "is_exported_model"]

FORMAT = "sklearn-uflow-onnx"
#: Version of what the graph returns and the metadata holds.
FORMAT_VERSION = 1
METADATA_KEY = "sklearn_uflow"
CHECKSUM_KEY = "sklearn_uflow_sha256"
#: What the checksum replaces in the file, and is replaced by to check it: the SHA-256 covers the whole file.
PLACEHOLDER = "0" * 64
#: The images an exported detector is given.
_IMAGES = """
Parameters
----------
X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
    Images at ``image_size_``: uint8, or floats in [0, 1] for a model
    exported with ``input_dtype="float32"``.
"""
#: Images per run of the graph: the detector's scoring batch.
BATCH_SIZE = 16


class ExportedModelError(ValueError):
    """The file is not a readable ONNX export of an sklearn-uflow detector.

    A missing file, one changed since export (its checksum), an ONNX file of
    another origin, or one of another format version; the command line reports
    it as bad input.

    See Also
    --------
    load : Raises it.

    Examples
    --------
    >>> from sklearn_uflow import runtime
    >>> try:
    ...     runtime.load("no-such-file.onnx")
    ... except runtime.ExportedModelError as error:
    ...     print(error)
    no exported model at 'no-such-file.onnx'.
    """


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError('the runtime needs onnxruntime: pip install "sklearn-uflow[runtime]"') from None
    return onnxruntime


def is_exported_model(path):
    """Whether ``path`` is a file that :func:`~sklearn_uflow.export.export_onnx` wrote.

    An export replaces only such a file, and only when asked to.

    Parameters
    ----------
    path : path-like
        The file to look at; a folder or a missing path is not one.

    Returns
    -------
    is_exported : bool
        True when the file is ONNX whose metadata names this library's
        format and matches its checksum.

    See Also
    --------
    load : Read it, checked.

    Examples
    --------
    >>> from sklearn_uflow.runtime import is_exported_model
    >>> is_exported_model(__file__)
    False
    """
    try:
        return _read(path)[1].get("format") == FORMAT
    except (ExportedModelError, OSError):
        return False


def _read(path, providers=("CPUExecutionProvider",)):
    """The file's bytes, its metadata checked against the checksum, and its onnxruntime session."""
    path = Path(path)
    if not path.is_file():
        raise ExportedModelError(f"no exported model at {str(path)!r}.")
    payload = path.read_bytes()
    onnxruntime = _onnxruntime()
    try:
        session = onnxruntime.InferenceSession(payload, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own classes for every kind of bad file
        raise ExportedModelError(f"{str(path)!r} is not a readable ONNX file: {exc}") from None
    properties = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in properties:
        raise ExportedModelError(f"{str(path)!r} is an ONNX file, but not one sklearn-uflow exported.")
    digest = properties.get(CHECKSUM_KEY, "")
    if len(digest) != len(PLACEHOLDER) or payload.count(digest.encode()) != 1:
        raise ExportedModelError(f"{str(path)!r} has no valid checksum.")
    if hashlib.sha256(payload.replace(digest.encode(), PLACEHOLDER.encode())).hexdigest() != digest:
        raise ExportedModelError(f"{str(path)!r} was changed after export (its checksum does not match).")
    return payload, json.loads(properties[METADATA_KEY]), session


def load(path, *, epsilon=None, providers=None):
    """Load a detector exported by :func:`~sklearn_uflow.export.export_onnx`.

    The whole file is checked against its checksum first, so a changed
    weight or threshold is refused rather than scored.

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file.
    epsilon : float, default=None
        The NFA threshold of masks and decisions, > 0; default the
        detector's. Each method also takes one.
    providers : list of str, default=None
        The onnxruntime execution providers, e.g.
        ``["CUDAExecutionProvider", "CPUExecutionProvider"]``; default the CPU.

    Returns
    -------
    detector : ExportedDetector
        Scores images as the detector that was exported.

    Raises
    ------
    ExportedModelError
        If the file is missing, changed since export, not an sklearn-uflow
        export, or of another format version.

    See Also
    --------
    sklearn_uflow.export.export_onnx : Write the file.

    Examples
    --------
    >>> from sklearn_uflow import runtime
    >>> detector = runtime.load("detector.onnx", epsilon=0.01)  # doctest: +SKIP
    >>> masks = detector.predict_masks(images)  # doctest: +SKIP
    """
    providers = providers or ["CPUExecutionProvider"]
    payload, metadata, session = _read(path, providers)
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise ExportedModelError(
            f"{str(path)!r} is format {metadata.get('format_version')!r}; this version of sklearn-uflow reads "
            f"format {FORMAT_VERSION}. Export it again with this version.")
    return ExportedDetector(payload, metadata, epsilon, providers, session=session)


def _check_epsilon(epsilon):
    if not (isinstance(epsilon, (int, float, np.floating)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number above 0, got {epsilon!r}.")
    return float(epsilon)


class ExportedDetector:
    """A detector exported to ONNX, scoring with onnxruntime and NumPy.

    Made by :func:`load`. Its methods return what the exported
    :class:`~sklearn_uflow.UFlowDetector`'s return: maps within float32
    rounding of the backbone's (onnxruntime's kernels are not torch's), and
    the masks and decisions drawn from them by the same code.

    It pickles (the graph travels as the file's bytes), so that a Dask
    cluster can score with it (:func:`sklearn_uflow.batch.score_files`).

    Parameters
    ----------
    payload : bytes
        The ONNX file's content.
    metadata : dict
        The file's ``"sklearn_uflow"`` metadata.
    epsilon : float or None
        The NFA threshold; None for the detector's.
    providers : list of str
        The onnxruntime execution providers.
    session : onnxruntime.InferenceSession, default=None
        The graph's session when the caller has it; built from ``payload``
        otherwise.

    Attributes
    ----------
    epsilon : float
        The NFA threshold used when a method is given none.
    image_size_ : tuple of int
        The ``(H, W)`` images must have.
    n_channels_ : int
        Their channels (1: grayscale, 3: RGB).
    offset_ : float
        As the detector's, at ``epsilon`` when its ``contamination`` is
        ``"auto"``.
    library_version : str
        The sklearn-uflow version that exported the file.

    See Also
    --------
    load : Make one.
    sklearn_uflow.UFlowDetector : The detector it was exported from.

    Examples
    --------
    >>> from sklearn_uflow import runtime
    >>> detector = runtime.load("detector.onnx")  # doctest: +SKIP
    >>> detector.predict(images)  # doctest: +SKIP
    array([ 1, -1])
    """

    def __init__(self, payload, metadata, epsilon, providers, session=None):
        self._payload, self._metadata, self._providers = payload, metadata, list(providers)
        self._session = session or _onnxruntime().InferenceSession(payload, providers=self._providers)
        self.epsilon = _check_epsilon(metadata["epsilon"] if epsilon is None else epsilon)
        self.image_size_ = tuple(metadata["image_size"])
        self.n_channels_ = int(metadata["n_channels"])
        self.library_version = metadata["library_version"]
        self._input_dtype = np.dtype(metadata["input_dtype"])
        self._contamination = metadata["contamination"]
        self._offset = float(metadata["offset"])
        self._map_filter_sigma = tuple(metadata["map_filter_sigma"])
        segmenter = metadata["segmenter"]
        calibration = segmenter["calibration_"]
        self._segmenter = dict(
            null=[NullModel(*map(float, m)) for m in segmenter["null_"]], size=tuple(segmenter["output_size"]),
            delineation=segmenter["delineation"], map_level=float(segmenter["map_level_"]),
            calibration=ConformalCalibration(np.asarray(calibration["raw"], dtype=float),
                                             np.asarray(calibration["calibrated"], dtype=float),
                                             float(calibration["ceiling"])))

    def __reduce__(self):
        # An onnxruntime session does not pickle: the file's bytes do, and build it again.
        return type(self), (self._payload, self._metadata, self.epsilon, self._providers)

    @property
    def scoring_batch_size(self):
        """Images per run of the graph."""
        return BATCH_SIZE

    @property
    def offset_(self):
        """``decision_function = score_samples - offset_`` at ``epsilon``."""
        return math.log10(self.epsilon) if self._contamination == "auto" else self._offset

    def _images(self, X):
        """``X`` checked as the estimators check images, in the graph's input type."""
        X = as_image_array(X, n_channels=self.n_channels_, image_size=self.image_size_)
        if self._input_dtype != np.uint8:
            return check_images(X)
        if X.dtype != np.uint8:
            raise ValueError(f"this model was exported for uint8 images, got {X.dtype}; export it with "
                             "input_dtype='float32' for float images in [0, 1].")
        return X

    def _scored(self, X, want_maps=True, want_log_nfa=True):
        """The smoothed maps and the log10 NFA maps, batch by batch."""
        X = self._images(X)
        maps, log_nfa = [], []
        for start in range(0, len(X), BATCH_SIZE):
            raw, *norms = self._session.run(None, {"images": X[start:start + BATCH_SIZE]})
            smoothed = smooth_maps(raw, self._map_filter_sigma)
            maps.append(smoothed)
            if want_log_nfa:
                log_nfa.append(segmented_log_nfa([u.astype(np.float64) for u in norms], smoothed, **self._segmenter))
        return (np.concatenate(maps) if want_maps else None), (np.concatenate(log_nfa) if want_log_nfa else None)

    @fill_docstring(images=_IMAGES)
    def anomaly_maps(self, X):
        """Compute the anomaly maps: the graph's first output, smoothed as the detector smooths.

        {images}

        Returns
        -------
        maps : ndarray of shape (n_images, H, W), float32
            The exported detector's ``anomaly_maps`` to float32 rounding: in
            [0, 1], higher where more anomalous.
        """
        return self._scored(X, want_log_nfa=False)[0]

    @fill_docstring(images=_IMAGES)
    def log_nfa_maps(self, X):
        """Compute each pixel's log10 NFA from the graph's per-scale ``u``.

        {images}

        Returns
        -------
        log_nfa : ndarray of shape (n_images, H, W), float64
            The calibrated log10 NFA of the region holding each pixel, as the
            exported detector's ``log_nfa_maps``; detected where at most
            ``log10(epsilon)``.
        """
        return self._scored(X, want_maps=False)[1]

    @fill_docstring(images=_IMAGES)
    def maps_and_log_nfa(self, X):
        """Compute both maps with one run of the graph per batch.

        {images}

        Returns
        -------
        maps, log_nfa : ndarray of shape (n_images, H, W)
            What :meth:`anomaly_maps` and :meth:`log_nfa_maps` return.
        """
        return self._scored(X)

    @fill_docstring(images=_IMAGES)
    def predict_masks(self, X, epsilon=None):
        """Segment the anomalies: the pixels whose region has ``NFA <= epsilon``.

        {images}
        epsilon : float, default=None
            The threshold; default ``self.epsilon``.

        Returns
        -------
        masks : ndarray of shape (n_images, H, W), bool
            True on the detected regions.
        """
        epsilon = self.epsilon if epsilon is None else _check_epsilon(epsilon)
        return self.log_nfa_maps(X) <= math.log10(epsilon)

    @fill_docstring(images=_IMAGES)
    def score_samples(self, X):
        """Score each image by the smallest log10 NFA of its regions.

        {images}

        Returns
        -------
        scores : ndarray of shape (n_images,), float64
            Higher is more normal.
        """
        return self.log_nfa_maps(X).min(axis=(1, 2))

    @fill_docstring(images=_IMAGES)
    def decision_function(self, X, epsilon=None):
        """Shift the scores by the offset: non-positive for outliers.

        {images}
        epsilon : float, default=None
            The threshold, which sets the offset when the detector's
            ``contamination`` is ``"auto"``; default ``self.epsilon``.

        Returns
        -------
        decision : ndarray of shape (n_images,), float64
            ``score_samples(X) - offset``.
        """
        epsilon = self.epsilon if epsilon is None else _check_epsilon(epsilon)
        offset = math.log10(epsilon) if self._contamination == "auto" else self._offset
        return self.score_samples(X) - offset

    @fill_docstring(images=_IMAGES)
    def predict(self, X, epsilon=None):
        """Predict whether each image is normal (+1) or anomalous (-1).

        {images}
        epsilon : float, default=None
            As in :meth:`decision_function`.

        Returns
        -------
        labels : ndarray of shape (n_images,), int
            With ``contamination="auto"``, -1 exactly when
            :meth:`predict_masks` detects a region at ``epsilon``.
        """
        return np.where(self.decision_function(X, epsilon) <= 0, -1, 1)
