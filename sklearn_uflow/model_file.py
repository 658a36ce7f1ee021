"""A model file that never unpickles: safetensors for tensors, JSON for the rest.

``UFlowDetector.save(path)`` writes one safetensors file. Its tensors are the
flow's and the backbone's weights; its header metadata holds the format name
and version, the library version, the detector's parameters and fitted
attributes as JSON, and a SHA-256 checksum of the tensors. Loading reads the
JSON with ``json.loads``, builds only the classes of this library it names,
verifies the checksum and loads the tensors: nothing in the file is executed.
"""

import hashlib
import json
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._files import atomic_path

__all__ = ["save_detector", "load_detector", "ModelFileError", "FORMAT", "FORMAT_VERSION"]

FORMAT = "sklearn-uflow-detector"
# 2: the backbone is stored with its batch norms folded into its convolutions.
# 3: the flow's couplings may have image-context weights (``image_context``).
# 4: they may have positional weights (``positional_encoding``).
# 5: the a contrario step is stored as the segmenter's fitted state.
# 6: the augmentation the flow was fitted with, and the feature step's own fitted state.
FORMAT_VERSION = 6


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


def save_detector(detector, path):
    """Write a fitted :class:`~sklearn_uflow.UFlowDetector` to ``path``."""
    from . import __version__

    tensors, fitted = detector.get_fitted_state()
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


def load_detector(path):
    """Read a :class:`~sklearn_uflow.UFlowDetector` written by :func:`save_detector`.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated, corrupted, of another format or
        version, or names anything but this library's estimators.
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
        return detector.set_fitted_state(tensors, fitted)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has unreadable parameters: {exc}") from None
