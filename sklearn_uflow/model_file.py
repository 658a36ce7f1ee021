"""A model file that never unpickles: safetensors for tensors, JSON for the rest.

``UFlowDetector.save(path)`` writes one safetensors file. Its tensors are the
flow's and the backbone's weights; its header metadata holds the format name
and version, the library version, the detector's parameters and fitted
attributes as JSON, and a SHA-256 checksum of the tensors. Loading reads the
JSON with ``json.loads``, builds only the classes of this library it names,
verifies the checksum and loads the tensors: nothing in the file is executed.
What a fitted detector is made of, and how it is put together again, is
written here and nowhere else; each part rebuilds itself from its stored
state through its own public seam (:func:`~sklearn_uflow.flow.load_uflow`,
the feature steps' ``set_fitted_state``, the segmenter's ``restore_fit``).
"""

import hashlib
import json
import os

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.base import clone
from sklearn.utils._param_validation import validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from ._docstrings import LOADING, fill_docstring
from ._files import atomic_path
from ._torch_utils import resolve_device

__all__ = ["save_detector", "load_detector", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "sklearn-uflow-detector"
# 2: the backbone is stored with its batch norms folded into its convolutions.
# 3: the flow's couplings may have image-context weights (``image_context``).
# 4: they may have positional weights (``positional_encoding``).
# 5: the a contrario step is stored as the segmenter's fitted state.
# 6: the augmentation the flow was fitted with, and the feature step's own fitted state.
# 7: the segmenter's parameter ``null`` is named ``nfa_null``, as the detector's.
# 8: the segmenter's calibration (the parameter and the fitted ``calibration_`` knots).
FORMAT_VERSION = 8


class ModelFileError(ValueError):
    """The file is not a readable sklearn-uflow model file."""


def _checksum(tensors):
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
        "segmenter_": {"params": segmenter.get_params(), "null_": [list(m) for m in segmenter.null_],
                       "map_level_": segmenter.map_level_,
                       "calibration_": {"raw": segmenter.calibration_.raw.tolist(),
                                        "calibrated": segmenter.calibration_.calibrated.tolist(),
                                        "ceiling": segmenter.calibration_.ceiling}},
        "history_": detector.history_,
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
    detector.history_ = state["history_"]
    detector.flow_ = load_uflow(state["flow_"], _prefixed(tensors, "flow.")).to(device).requires_grad_(False)
    return detector


def save_detector(detector, path):
    """Write a fitted :class:`~sklearn_uflow.UFlowDetector` to ``path``.

    Parameters
    ----------
    detector : UFlowDetector
        A fitted detector with its own feature step.
    path : str or path-like
        The file to write, whole or not at all.
    """
    from . import __version__

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
        "checksum": _checksum(tensors),
    }
    with atomic_path(path) as temporary:  # whole or absent, with the umask's permissions
        save_file(tensors, temporary, metadata=metadata)


@fill_docstring(loading=LOADING)
def load_detector(path):
    """Read a :class:`~sklearn_uflow.UFlowDetector` written by :func:`save_detector`.

    {loading}
    """
    from . import UFlowDetector
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
    if _checksum(tensors) != metadata.get("checksum"):
        raise ModelFileError(f"{path!r}: the weights do not match the file's checksum (corrupted file).")
    try:
        params = json.loads(metadata["params"])
        fitted = json.loads(metadata["fitted"])
        config = params.pop("extractor")
        classes = {"CNNFeatureTransformer": CNNFeatureTransformer, "MSCaiTTransformer": MSCaiTTransformer}
        if config.get("class") not in classes:
            raise ModelFileError(f"{path!r} names an unknown feature step {config.get('class')!r}.")
        # JSON turns tuples (the feature step's ``pooling``) into lists; turn them back.
        extractor_params = {k: tuple(v) if isinstance(v, list) else v for k, v in config["params"].items()}
        detector = UFlowDetector(classes[config["class"]](**extractor_params), **params)
        return _restore(detector, tensors, fitted)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has unreadable parameters: {exc}") from None
