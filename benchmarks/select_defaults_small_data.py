"""The candidates of ``select_defaults.py`` and ``select_pooling.py`` on a small training set.

Those scripts fit on 49 to 685 images. Users also fit on a few dozen. This
script fits each (learning_rate, max_epochs) candidate, without pooling as
when they were chosen, and each pooling candidate, with the default training,
on the 16 good images of ``make_defects(n_samples=32, image_size=64)`` (the
synthetic set of the tests, no real image), for three seeds, and reports
pixel AUROC and AUPRO of the maps at the default ``map_smoothing``. It breaks
ties between candidates whose mean on the real data's held-out images is
within 0.1 point. Writes ``docs/benchmarks/select_defaults_small_data.rst``
and ``docs/benchmarks/select_pooling_small_data.rst``.

Usage: ``python benchmarks/select_defaults_small_data.py``
"""

import numpy as np

from _report import write_table
from select_defaults import TRAINING
from select_pooling import CANDIDATES

SEEDS = (0, 1, 2)


def small_data_scores(pooling, **params):
    """Mean pixel AUROC and AUPRO, in %, over the seeds."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    values = []
    for seed in SEEDS:
        X, y, masks = make_defects(n_samples=32, image_size=64, random_state=seed)
        extractor = CNNFeatureTransformer(input_size=64, pooling=pooling, device="cpu")
        detector = UFlowDetector(extractor, random_state=seed, device="cpu", **params).fit(X[y == 0])
        maps = detector.anomaly_maps(X)
        values.append([100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)])
    return np.mean(values, axis=0)


def main():
    rows = []
    for learning_rate, max_epochs in TRAINING:
        auroc, pro = small_data_scores(1, learning_rate=learning_rate, max_epochs=max_epochs)
        rows.append([f"{learning_rate:g}", max_epochs, f"{auroc:.2f}", f"{pro:.2f}"])
        print(rows[-1], flush=True)
    write_table("select_defaults_small_data", "The training candidates on a small training set",
                ["learning_rate", "max_epochs", "pixel AUROC", "AUPRO"], rows,
                notes="16 good 64×64 images of ``make_defects`` per fit (three seeds, means shown), scored on the "
                      "32 images of the set; Lite0 backbone at input size 64 without pooling; default "
                      "``map_smoothing``.")
    rows = []
    for pooling in CANDIDATES:
        auroc, pro = small_data_scores(pooling)
        rows.append([str(pooling), f"{auroc:.2f}", f"{pro:.2f}"])
        print(rows[-1], flush=True)
    write_table("select_pooling_small_data", "The pooling candidates on a small training set",
                ["pooling (finest first)", "pixel AUROC", "AUPRO"], rows,
                notes="As above, with the default training and each pooling of the Lite0 features (at input size "
                      "64 the feature maps are 16×16, 8×8 and 4×4).")


if __name__ == "__main__":
    main()
