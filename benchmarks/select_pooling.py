"""How the default ``pooling`` of the CNN feature step was chosen: without test images.

The same protocol as ``select_defaults.py``: 10 % of the good *training*
images of each category are held out, the detector (Lite0 preset, 256×256,
the other defaults) is fitted on the rest once per candidate, and the
held-out images are scored as they are and with small and large planted
defects, with each width of ``map_smoothing`` (pooling smooths too, so the
two are chosen together). The defaults are the pair with the best mean pixel
AUROC and AUPRO over categories and families, where candidates within 0.1
point of the best are told apart by ``select_defaults_small_data.py``.
Writes ``docs/benchmarks/select_pooling.rst``.

Usage: ``python benchmarks/select_pooling.py [category ...]``
"""

import sys

import numpy as np

from _report import data_dir, write_table
from select_defaults import CATEGORIES, fit_and_score, held_out_families

# Window sides of the strides 4, 8 and 16, finest first; the first is no pooling.
CANDIDATES = ((1, 1, 1), (3, 3, 1), (3, 3, 3), (5, 5, 1))


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import load_anomaly_folder

    rows, scores = [], {}
    for category in categories:
        train = load_anomaly_folder(data_dir() / category, image_size=256).train_images
        fit_on, families = held_out_families(train)
        for pooling in CANDIDATES:
            extractor = CNNFeatureTransformer("efficientnet_lite0", pooling=pooling)
            detector = UFlowDetector(extractor, random_state=0, device="cpu")
            for width, values, fit_seconds in fit_and_score(detector, fit_on, families):
                scores.setdefault((pooling, width), []).append(np.mean(values))
                rows.append([category, str(pooling), width, *(f"{v:.2f}" for v in values),
                             f"{np.mean(values):.2f}", f"{fit_seconds:.2f}"])
                print(rows[-1], flush=True)
    means = {key: np.mean(v) for key, v in scores.items()}
    ranked = sorted(means, key=means.get, reverse=True)[:5]
    best_pooling, best_width = ranked[0]
    write_table("select_pooling", "Choosing the feature pooling on synthetic defects",
                ["category", "pooling (finest first)", "map_smoothing", "small: pixel AUROC", "small: AUPRO",
                 "large: pixel AUROC", "large: AUPRO", "mean", "fit s / image"], rows,
                notes="10 % of the good training images, held out of the fit, as they are and with planted "
                      "defects, small and large (see ``select_defaults.py``); no test image is used. The best "
                      "means over both datasets: " + ", ".join(f"pooling={p}, map_smoothing={w}: {means[p, w]:.2f}"
                                                               for p, w in ranked)
                      + f". Candidates within 0.1 point of the best (``pooling={best_pooling}, "
                      f"map_smoothing={best_width}``) are told apart on a small training set "
                      "(``select_defaults_small_data.py``).")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
