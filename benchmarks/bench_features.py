"""Feature extraction time per image for each preset (CPU, median of runs).

The ResNets and MS-CaiT run with untrained weights (the time does not depend
on the weights; their ImageNet weights need internet). The second row times
Lite0 without folding its batch norms into its convolutions, to show what the
folding saves."""

import time

import numpy as np

import sklearn_uflow.features
from _report import write_table
from sklearn_uflow import CNNFeatureTransformer, MSCaiTTransformer


def _unfolded_lite0(X):
    """The Lite0 preset with its batch norms left as they are, for comparison."""
    fold = sklearn_uflow.features.fold_batch_norms
    sklearn_uflow.features.fold_batch_norms = lambda model: model
    try:
        return CNNFeatureTransformer("efficientnet_lite0", device="cpu").fit(X)
    finally:
        sklearn_uflow.features.fold_batch_norms = fold


# name, fitted step from images, images per run, runs
PRESETS = [
    ("efficientnet_lite0", lambda X: CNNFeatureTransformer("efficientnet_lite0", device="cpu").fit(X), 32, 9),
    ("efficientnet_lite0, batch norms not folded", _unfolded_lite0, 32, 9),
    ("resnet18", lambda X: CNNFeatureTransformer("resnet18", weights="untrained", device="cpu").fit(X), 32, 5),
    ("wide_resnet50_2", lambda X: CNNFeatureTransformer("wide_resnet50_2", weights="untrained", device="cpu").fit(X),
     8, 5),
    ("mscait", lambda X: MSCaiTTransformer(weights="untrained", device="cpu").fit(X), 2, 3),
]


def main():
    rows = []
    X = np.random.default_rng(0).integers(0, 256, (32, 256, 256, 3), dtype=np.uint8)
    for name, make, n, repeats in PRESETS:
        step = make(X[:1])
        step.extract(X[:1])  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step.extract(X[:n])
            times.append((time.perf_counter() - start) / n * 1000)
        shapes = ", ".join(f"{c}×{h}×{w}" for c, h, w in step.feature_shapes_)
        size = getattr(step, "input_size", 448)
        rows.append([name, f"{size}²", shapes, f"{np.median(times):.1f}"])
        del step
    write_table("bench_features", "Feature extraction time",
                ["extractor", "input", "feature shapes (C×H×W)", "ms per image (median)"], rows,
                notes="256×256 RGB input images, median of 9 runs (5 for the ResNets, 3 for MS-CaiT), default "
                      "batch sizes. The times move by 10-30 % with the machine's load; compare rows of one run.")


if __name__ == "__main__":
    main()
