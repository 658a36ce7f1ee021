"""sklearn-uflow: U-Flow image anomaly detection and segmentation for scikit-learn.

U-Flow (Tailanian, Pardo and Muse) fits a U-shaped normalizing flow on the
multi-scale features of defect-free images; on new images it gives anomaly
maps and segmentation masks whose threshold, a number of false alarms, needs
no labelled defects.
"""

from .acontrario import AContrarioSegmenter, ACotrarioSegmenter
from .detector import UFlowDetector
from .features import CNNFeatureTransformer, MSCaiTTransformer, split_features

__version__ = "0.1.0"

__all__ = [
    "AContrarioSegmenter",
    "ACotrarioSegmenter",
    "CNNFeatureTransformer",
    "MSCaiTTransformer",
    "UFlowDetector",
    "split_features",
    "__version__",
]
