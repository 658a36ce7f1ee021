"""A model file that never unpickles: safetensors for tensors, JSON for the rest.

``UFlowDetector.save(path)`` writes one safetensors file. Its tensors are the
flow's and the backbone's weights; its header metadata holds the format name
and version, the library version, the detector's parameters and fitted
attributes as JSON, and a SHA-256 checksum of the tensors and of that
metadata. Loading verifies the checksum, reads the JSON with ``json.loads``,
checks it has the structure ``fit`` gives, builds only the classes of this
library it names and loads the tensors: nothing in the file is executed, and
an edited or damaged file is a :class:`ModelFileError`.
What a fitted detector is made of, and how it is put together again, is
written here and nowhere else; each part rebuilds itself from its stored
state through its own public seam (:func:`~sklearn_uflow.flow.load_uflow`,
the feature steps' ``set_fitted_state``, the segmenter's ``restore_fit``).
"""

import hashlib
import json
import math
import os
import struct

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.base import clone
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from ._docstrings import LOADING, fill_docstring
from .outputs import atomic_path
from ._torch_utils import resolve_device

__all__ = ["save_detector", "load_detector", "is_model_file", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "sklearn-uflow-detector"
# 2: the backbone is stored with its batch norms folded into its convolutions.
# 3: the flow's couplings may have image-context weights (``image_context``).
# 4: they may have positional weights (``positional_encoding``).
# 5: the a contrario step is stored as the segmenter's fitted state.
# 6: the augmentation the flow was fitted with, and the feature step's own fitted state.
# 7: the segmenter's parameter ``null`` is named ``nfa_null``, as the detector's.
# 8: the segmenter's calibration (the parameter and the fitted ``calibration_`` knots).
# 9: the checksum covers the JSON metadata as well as the tensors; the fit's record is in named attributes
#    (n_iter_, loss curves, the augmentation's evidence...), no longer history_.
FORMAT_VERSION = 9


class ModelFileError(ValueError):
    """The file is not a readable sklearn-uflow model file.

    It is a :class:`ValueError`: the file's content, not the program, is at
    fault. The command line reports it as bad input (exit code 2).

    See Also
    --------
    load_detector : Raises it.

    Examples
    --------
    >>> from sklearn_uflow.model_file import ModelFileError
    >>> issubclass(ModelFileError, ValueError)
    True"""


def _checksum(tensors, metadata):
    """SHA-256 of the tensors and of every metadata entry but the checksum itself."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    for key in sorted(set(metadata) - {"checksum"}):
        for text in (key, metadata[key]):  # length-prefixed, so that no two entries read alike
            data = text.encode()
            digest.update(struct.pack("<Q", len(data)) + data)
    return digest.hexdigest()


def is_model_file(path):
    """Whether ``path`` is a file that :func:`save_detector` wrote (its header says so).

    Only the file's header is read.

    Parameters
    ----------
    path : path-like
        Any path.

    Returns
    -------
    is_model : bool
        True when the file's header names this library's model format.

    See Also
    --------
    load_detector : Read the whole file, checked.

    Examples
    --------
    >>> from sklearn_uflow.model_file import is_model_file
    >>> is_model_file(__file__)
    False
    """
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return False
            header = json.loads(handle.read(length))
        return header.get("__metadata__", {}).get("format") == FORMAT
    except (OSError, ValueError, struct.error, AttributeError):
        return False


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _numbers(value, length=None, positive=False):
    return (isinstance(value, list) and (length is None or len(value) == length)
            and all(_number(v) and (not positive or v > 0) for v in value))


def _check_structure(params, fitted):
    """Raise ModelFileError unless the JSON has the structure ``save_detector`` writes."""
    from .symmetries import AUGMENTATIONS

    def shapes(value, length):
        return isinstance(value, list) and all(_numbers(s, length, positive=True) for s in value)

    checks = {
        "params": isinstance(params, dict) and isinstance(params.get("extractor"), dict)
        and isinstance(params["extractor"].get("params"), dict),
        "extractor_": isinstance(fitted.get("extractor_"), dict),
        "flow_": isinstance(fitted.get("flow_"), dict),
        "latent_shapes_": shapes(fitted.get("latent_shapes_"), 3) and len(fitted["latent_shapes_"]) > 0,
        "image_size_": _numbers(fitted.get("image_size_"), 2, positive=True),
        "n_channels_": fitted.get("n_channels_") in (1, 3),
        "offset_": _number(fitted.get("offset_")),
        "augmentation_": fitted.get("augmentation_") in AUGMENTATIONS,
        "augmentation_validation_loss_": isinstance(fitted.get("augmentation_validation_loss_"), dict)
        and all(k in AUGMENTATIONS and _number(v) for k, v in fitted["augmentation_validation_loss_"].items()),
        "n_splits_": isinstance(fitted.get("n_splits_"), int) and fitted["n_splits_"] >= 1,
        "n_iter_": isinstance(fitted.get("n_iter_"), int) and fitted["n_iter_"] >= 0,
        "loss_curve_": _numbers(fitted.get("loss_curve_")),
        "validation_loss_curve_": _numbers(fitted.get("validation_loss_curve_")),
        "best_validation_loss_": fitted.get("best_validation_loss_") is None
        or _number(fitted.get("best_validation_loss_")),
        "fit_seconds_": _number(fitted.get("fit_seconds_")),
    }
    segmenter = fitted.get("segmenter_")
    calibration = segmenter.get("calibration_") if isinstance(segmenter, dict) else None
    checks["segmenter_"] = (
        isinstance(segmenter, dict) and isinstance(segmenter.get("params"), dict)
        and isinstance(segmenter.get("null_"), list)
        and (not checks["latent_shapes_"] or len(segmenter["null_"]) == len(fitted["latent_shapes_"]))
        and all(_numbers(m, 5) for m in segmenter["null_"]) and _number(segmenter.get("map_level_"))
        and isinstance(calibration, dict) and _numbers(calibration.get("raw"))
        and _numbers(calibration.get("calibrated"), len(calibration.get("raw") or []))
        and _number(calibration.get("ceiling")))
    wrong = [key for key, valid in checks.items() if not valid]
    if wrong:
        raise ModelFileError(f"its {', '.join(wrong)} do not have the structure fit writes (edited file?)")


def _extractor_config(extractor):
    from .features import CNNFeatureTransformer, MSCaiTTransformer

    if not isinstance(extractor, (CNNFeatureTransformer, MSCaiTTransformer)):
        raise TypeError(f"only the library's feature steps can be saved, not {type(extractor).__name__}.")
    params = extractor.get_params()
    if not isinstance(params["weights"], (str, dict)):
        params["weights"] = os.fspath(params["weights"])
    return {"class": type(extractor).__name__, "params": params}


def _prefixed(tensors, prefix):
    """The tensors whose names start with ``prefix``, without it."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# What a fit records of itself, stored as it is.
_FIT_RECORD = ("augmentation_validation_loss_", "n_splits_", "n_iter_", "loss_curve_", "validation_loss_curve_",
               "best_validation_loss_", "fit_seconds_")


def _fitted_state(detector):
    """A fitted detector's tensors (the flow's and the backbone's weights, on
    the CPU) and its other fitted attributes as JSON values."""
    check_is_fitted(detector, "flow_")
    if detector.extractor_ is None:
        raise TypeError("a detector on precomputed features has no feature step to save; save the Pipeline.")
    backbone, extractor_state = detector.extractor_.get_fitted_state()
    tensors = {**{f"flow.{k}": v for k, v in detector.flow_.state_dict().items()},
               **{f"extractor.{k}": v for k, v in backbone.items()}}
    segmenter = detector.segmenter_
    state = {
        "extractor_": extractor_state, "flow_": detector.flow_.build_options,
        "latent_shapes_": detector.latent_shapes_, "image_size_": detector.image_size_,
        "n_channels_": detector.n_channels_, "offset_": detector.offset_, "augmentation_": detector.augmentation_,
        "segmenter_": {"params": segmenter.get_params(), **segmenter.fitted_state()},
        **{name: getattr(detector, name) for name in _FIT_RECORD},
    }
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, state


def _calibration(stored):
    from .calibration import ConformalCalibration

    return ConformalCalibration(np.asarray(stored["raw"], dtype=np.float64),
                                np.asarray(stored["calibrated"], dtype=np.float64), float(stored["ceiling"]))


def _restore(detector, tensors, state):
    """Put a detector built from the file's parameters in the fitted state the
    file holds, on its ``device`` (the CPU where CUDA is absent)."""
    from .acontrario import ACotrarioSegmenter, NullModel
    from .features import make_feature_extractor
    from .flow import load_uflow

    validate_parameter_constraints(detector._parameter_constraints, detector.get_params(deep=False),
                                   caller_name=type(detector).__name__)
    device = resolve_device(detector.device) if torch.cuda.is_available() else torch.device("cpu")
    detector.device_ = device
    extractor = clone(make_feature_extractor(detector.extractor))
    detector.extractor_ = extractor.set_fitted_state(_prefixed(tensors, "extractor."), state["extractor_"], device)
    detector.feature_shapes_ = detector.extractor_.feature_shapes_
    detector.latent_shapes_ = [tuple(s) for s in state["latent_shapes_"]]
    detector.image_size_ = tuple(state["image_size_"])
    detector.n_channels_ = int(state["n_channels_"])
    detector.offset_ = float(state["offset_"])
    detector.augmentation_ = str(state["augmentation_"])
    segmenter = state["segmenter_"]
    params = {**segmenter["params"], "latent_shapes": detector.latent_shapes_,
              "output_size": tuple(segmenter["params"]["output_size"])}
    detector.segmenter_ = ACotrarioSegmenter(**params).restore_fit(
        [NullModel(*map(float, m)) for m in segmenter["null_"]], float(segmenter["map_level_"]),
        _calibration(segmenter["calibration_"]))
    for name in _FIT_RECORD:
        setattr(detector, name, state[name])
    detector.flow_ = load_uflow(state["flow_"], _prefixed(tensors, "flow.")).to(device).requires_grad_(False)
    return detector


def save_detector(detector, path):
    """Write a fitted :class:`~sklearn_uflow.UFlowDetector` to ``path``.

    The file holds tensors and JSON metadata only, no pickle: loading it runs
    no code from it, and a checksum over both refuses a changed file.

    Parameters
    ----------
    detector : UFlowDetector
        A fitted detector with its own feature step.
    path : str or path-like
        The file to write, whole or not at all.

    See Also
    --------
    load_detector : Read it back.
    sklearn_uflow.UFlowDetector.save : The same, as a method.

    Examples
    --------
    >>> from sklearn_uflow.model_file import save_detector
    >>> save_detector(detector, "detector.uflow")  # doctest: +SKIP
    """
    from ._version import __version__

    tensors, fitted = _fitted_state(detector)
    params = detector.get_params(deep=False)
    params["extractor"] = _extractor_config(detector.extractor_)
    params["device"] = detector.device if isinstance(detector.device, str) else str(detector.device)
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None  # a RandomState instance does not travel
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "library_version": __version__,
        "params": json.dumps(params),
        "fitted": json.dumps(fitted, default=float),
    }
    metadata["checksum"] = _checksum(tensors, metadata)
    with atomic_path(path) as temporary:  # whole or absent, with the umask's permissions
        save_file(tensors, temporary, metadata=metadata)


@fill_docstring(loading=LOADING)
def load_detector(path):
    """Read a :class:`~sklearn_uflow.UFlowDetector` written by :func:`save_detector`.

    Only this library's estimators are built from the file, from their
    parameters and fitted tensors; nothing in it is executed.

    {loading}

    See Also
    --------
    save_detector : Write one.
    is_model_file : Check a file's header only.

    Examples
    --------
    >>> from sklearn_uflow.model_file import load_detector
    >>> detector = load_detector("detector.uflow")  # doctest: +SKIP
    """
    from .detector import UFlowDetector
    from .features import CNNFeatureTransformer, MSCaiTTransformer

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"no model file at {path!r}.")
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path!r} is not a readable model file (truncated or corrupted?): {exc}") from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not an sklearn-uflow model file.")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ModelFileError(
            f"{path!r} uses model file format {metadata.get('format_version')!r}; this version of "
            f"sklearn-uflow reads format {FORMAT_VERSION}. Refit, or use the library version that wrote it "
            f"({metadata.get('library_version')})."
        )
    if _checksum(tensors, metadata) != metadata.get("checksum"):
        raise ModelFileError(f"{path!r}: its weights or parameters do not match the file's checksum (corrupted "
                             "or edited file).")
    try:
        params, fitted = json.loads(metadata["params"]), json.loads(metadata["fitted"])
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has unreadable parameters: {exc}") from None
    try:
        _check_structure(params, fitted)
        config = params.pop("extractor")
        classes = {"CNNFeatureTransformer": CNNFeatureTransformer, "MSCaiTTransformer": MSCaiTTransformer}
        if config.get("class") not in classes:
            raise ModelFileError(f"it names an unknown feature step {config.get('class')!r}.")
        # JSON turns tuples (the feature step's ``pooling``) into lists; turn them back.
        extractor_params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        detector = UFlowDetector(classes[config["class"]](**extractor_params), **params)
        return _restore(detector, tensors, fitted)
    except ModelFileError as exc:
        raise ModelFileError(f"{path!r}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # RuntimeError: torch's, on shapes
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path!r} has parameters that do not fit together: {reason}") from None
