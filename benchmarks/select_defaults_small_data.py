"""The training candidates of ``select_defaults.py`` on a small training set.

``select_defaults.py`` fits on 49 to 685 images. Users also fit on a few
dozen. This script fits each (learning_rate, max_epochs) candidate on the 16
good images of ``make_defects(n_samples=32, image_size=64)`` (the synthetic
set of the tests, no real image), for three seeds, and reports pixel AUROC and
AUPRO of the maps at the default ``map_smoothing``. It breaks ties between
candidates whose mean on the real data's held-out images is within 0.1 point.
Writes ``docs/benchmarks/select_defaults_small_data.rst``.

Usage: ``python benchmarks/select_defaults_small_data.py``
"""

import numpy as np

from _report import write_table
from select_defaults import TRAINING

SEEDS = (0, 1, 2)


def main():
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    rows = []
    for learning_rate, max_epochs in TRAINING:
        values = []
        for seed in SEEDS:
            X, y, masks = make_defects(n_samples=32, image_size=64, random_state=seed)
            detector = UFlowDetector(CNNFeatureTransformer(input_size=64, device="cpu"), learning_rate=learning_rate,
                                     max_epochs=max_epochs, random_state=seed, device="cpu").fit(X[y == 0])
            maps = detector.anomaly_maps(X)
            values.append([100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)])
        auroc, pro = np.mean(values, axis=0)
        rows.append([f"{learning_rate:g}", max_epochs, f"{auroc:.2f}", f"{pro:.2f}"])
        print(rows[-1], flush=True)
    write_table("select_defaults_small_data", "The training candidates on a small training set",
                ["learning_rate", "max_epochs", "pixel AUROC", "AUPRO"], rows,
                notes="16 good 64×64 images of ``make_defects`` per fit (three seeds, means shown), scored on the "
                      "32 images of the set; Lite0 backbone at input size 64; default ``map_smoothing``.")


if __name__ == "__main__":
    main()
