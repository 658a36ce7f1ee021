"""Shared by the examples: real images when available, synthetic ones otherwise."""

import os
from pathlib import Path

from sklearn_uflow.datasets import load_anomaly_folder, make_defects


def example_data(category="hazelnut_toy/hazelnut_toy", image_size=128):
    """``(train_images, test_images, test_masks, test_labels, name)``."""
    root = os.environ.get("SKLEARN_UFLOW_DATA")
    if root and (Path(root) / category).is_dir():
        data = load_anomaly_folder(Path(root) / category, image_size=image_size)
        return data.train_images, data.test_images, data.test_masks, data.test_labels, category
    X, y, masks = make_defects(n_samples=60, image_size=image_size, random_state=0)
    train, test = X[y == 0][:20], slice(20, None)
    return train, X[test], masks[test], y[test], "make_defects (synthetic)"
