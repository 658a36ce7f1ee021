"""Export a fitted detector to one ONNX file, threshold included, for the torch-free runtime.

The graph holds what needs torch: from images at the model's size, the
feature step's preprocessing and backbone, the flow, each scale's
``u = sum_k z_k^2`` and the anomaly map of equation 2. What follows is NumPy
and SciPy in :mod:`sklearn_uflow.runtime`, the same code the library runs
(the map's Gaussian filter, the component trees, the delineation and the
calibration), driven by the fitted state that the file's metadata carries
with epsilon, the sizes and the library's version. The filter stays out of
the graph: the map saturates near 1 over strong defects, where the
delineation reads ``-log(1 - map)``, and a float32 convolution there moves
mask edges that SciPy's double-precision filter, the library's, does not.
"""

import hashlib
import io
import json
import warnings

import torch
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .anomaly_map import anomaly_map, smoothing_sigma
from .outputs import atomic_path, check_output_file
from .runtime import CHECKSUM_KEY, FORMAT, FORMAT_VERSION, METADATA_KEY, PLACEHOLDER, is_exported_model

__all__ = ["export_onnx", "OPSET"]

#: The ONNX opset written: 18 runs on every onnxruntime on PyPI since 1.14.
OPSET = 18


class _Scoring(torch.nn.Module):
    """Images to the anomaly map before its filter and each scale's ``u``, as the detector computes them."""

    def __init__(self, detector, input_dtype):
        super().__init__()
        self.features = detector.extractor_.as_module()
        self.flow = detector.flow_
        self.image_size = tuple(detector.image_size_)
        self.from_uint8 = input_dtype == "uint8"

    def forward(self, images):
        # uint8 / 255 in float32, as check_images divides.
        x = images.float() / 255.0 if self.from_uint8 else images
        latents, _ = self.flow(self.features(x))
        latents = [z.float() for z in latents]
        return (anomaly_map(latents, self.image_size), *[z.pow(2).sum(dim=1) for z in latents])


def _metadata(detector, input_dtype):
    segmenter = detector.segmenter_
    sigma = smoothing_sigma(segmenter.map_smoothing, detector.image_size_, tuple(detector.latent_shapes_[0][1:]))
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
        "input_dtype": input_dtype, "image_size": list(detector.image_size_), "n_channels": detector.n_channels_,
        "latent_shapes": [list(s) for s in detector.latent_shapes_],
        "map_filter_sigma": [float(v) for v in sigma],
        "epsilon": float(detector.epsilon), "contamination": detector.contamination, "offset": detector.offset_,
        "segmenter": {"delineation": segmenter.delineation, "map_smoothing": segmenter.map_smoothing,
                      "output_size": list(segmenter.output_size_), **segmenter.fitted_state()},
    }


def export_onnx(detector, path, *, input_dtype="uint8", overwrite=False):
    """Write a fitted detector as one ONNX file that :func:`sklearn_uflow.runtime.load` scores.

    The graph takes a batch of images at the detector's ``image_size_``,
    ``(n, H, W, C)`` with ``C`` its ``n_channels_`` (dynamic ``n``), and returns
    the anomaly map of equation 2 ``(n, H, W)`` before its Gaussian filter (the
    metadata's ``map_filter_sigma``, in pixels: ``scipy.ndimage.gaussian_filter``
    with ``mode="nearest"`` gives :meth:`UFlowDetector.anomaly_maps`) and, per
    scale, ``u = sum_k z_k^2``
    ``(n, H_l, W_l)``. The file's metadata (``"sklearn_uflow"``, JSON) holds
    the a contrario null and calibration, epsilon, the sizes and the library
    version, and ``"sklearn_uflow_sha256"`` a checksum of the whole file.

    Parameters
    ----------
    detector : UFlowDetector
        A fitted detector with its own feature step (not ``"precomputed"``).
    path : path-like
        The ``.onnx`` file to write, whole or not at all.
    input_dtype : {"uint8", "float32"}, default="uint8"
        The images the graph takes: 8-bit values, or floats in [0, 1].
    overwrite : bool, default=False
        Whether an existing file that this function wrote may be replaced;
        any other file is never replaced.

    Returns
    -------
    path : str
        The file written.

    Raises
    ------
    ImportError
        If the ``onnx`` package is missing (``pip install "sklearn-uflow[onnx]"``).

    See Also
    --------
    sklearn_uflow.runtime.load : Score with the file, without torch.
    sklearn_uflow.model_file.save_detector : The library's own model file.

    Examples
    --------
    >>> from sklearn_uflow.export import export_onnx
    >>> export_onnx(detector, "detector.onnx")  # doctest: +SKIP
    'detector.onnx'
    """
    check_is_fitted(detector, "flow_")
    if detector.extractor_ is None:
        raise TypeError("a detector fitted on precomputed features has no feature step to export; fit it on images.")
    if input_dtype not in ("uint8", "float32"):
        raise ValueError(f"input_dtype must be 'uint8' or 'float32', got {input_dtype!r}.")
    try:
        import onnx
    except ImportError:
        raise ImportError('exporting to ONNX needs the onnx package: pip install "sklearn-uflow[onnx]"') from None
    check_output_file(path, overwrite=overwrite, replaceable=is_exported_model)

    # Traced where the detector's modules are, so that exporting leaves the detector as it was.
    module = _Scoring(detector, input_dtype).eval()
    height, width = detector.image_size_
    example = torch.zeros((2, height, width, detector.n_channels_), device=detector.device_,
                          dtype=torch.uint8 if input_dtype == "uint8" else torch.float32)
    outputs = ["anomaly_map", *[f"u{k}" for k in range(len(detector.latent_shapes_))]]
    options = dict(input_names=["images"], output_names=outputs, opset_version=OPSET)
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns of every Python-level size test; the sizes are fixed by the fit, so none changes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding")  # strided slices left to the runtime
        try:
            # The TorchScript exporter (deprecated since torch 2.9, still shipped) exports the CNN presets in a
            # second; the torch.export-based one takes ten, but also knows the antialiased resizing of MS-CaiT's
            # second branch and of images larger than the backbone's input.
            torch.onnx.export(module, (example,), buffer, dynamo=False, **options,
                              dynamic_axes={name: {0: "n"} for name in ["images", *outputs]})
        except torch.onnx.errors.UnsupportedOperatorError:
            buffer = io.BytesIO()
            torch.onnx.export(module, (example,), buffer, dynamo=True, verbose=False, **options,
                              dynamic_shapes=({0: torch.export.Dim("n")},))
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(_metadata(detector, input_dtype)),
                                        CHECKSUM_KEY: PLACEHOLDER})
    payload = model.SerializeToString()
    if payload.count(PLACEHOLDER.encode()) != 1:  # the weights' bytes spell it out: practically never
        raise RuntimeError("the checksum's placeholder occurs in the model's own bytes; please report this.")
    payload = payload.replace(PLACEHOLDER.encode(), hashlib.sha256(payload).hexdigest().encode())
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(payload)
    return str(path)
