"""sklearn-uflow: U-Flow image anomaly detection and segmentation for scikit-learn.

U-Flow (Tailanian, Pardo and Muse) fits a U-shaped normalizing flow on the
multi-scale features of defect-free images; on new images it gives anomaly
maps and segmentation masks whose threshold, a number of false alarms, needs
no labelled defects.
"""

import importlib

from ._version import __version__

# The estimators are imported on first use (PEP 562), so that importing the package, or the command line
# before it installs its signal handlers, does not pull in torch.
_LAZY = {
    "AContrarioSegmenter": "acontrario",
    "ACotrarioSegmenter": "acontrario",
    "UFlowDetector": "detector",
    "CNNFeatureTransformer": "features",
    "MSCaiTTransformer": "features",
    "split_features": "features",
}

__all__ = [
    "AContrarioSegmenter",
    "ACotrarioSegmenter",
    "CNNFeatureTransformer",
    "MSCaiTTransformer",
    "UFlowDetector",
    "split_features",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        try:
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        except ModuleNotFoundError as exc:
            raise ImportError(
                f"{name} needs the full install ({exc.name} is missing): pip install \"sklearn-uflow[full]\". "
                "The runtime alone (sklearn_uflow.runtime) scores exported .onnx models."
            ) from exc
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
