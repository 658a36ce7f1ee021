"""Feature extraction time per image for each preset (CPU, median of runs).

The ResNets and MS-CaiT run with untrained weights (the time does not depend
on the weights; their ImageNet weights need internet)."""

import time

import numpy as np

from _report import write_table
from sklearn_uflow import CNNFeatureTransformer, MSCaiTTransformer

PRESETS = [
    ("efficientnet_lite0", lambda: CNNFeatureTransformer("efficientnet_lite0", device="cpu"), 32),
    ("resnet18", lambda: CNNFeatureTransformer("resnet18", weights="untrained", device="cpu"), 32),
    ("wide_resnet50_2", lambda: CNNFeatureTransformer("wide_resnet50_2", weights="untrained", device="cpu"), 8),
    ("mscait", lambda: MSCaiTTransformer(weights="untrained", device="cpu"), 2),
]


def main(repeats=3):
    rows = []
    X = np.random.default_rng(0).integers(0, 256, (32, 256, 256, 3), dtype=np.uint8)
    for name, make, n in PRESETS:
        step = make().fit(X[:1])
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
                notes=f"256×256 RGB input images, median of {repeats} runs, default batch sizes.")


if __name__ == "__main__":
    main()
