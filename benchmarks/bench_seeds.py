"""How much the accuracy of one fit depends on its seed.

``random_state`` draws the validation split, the flow's initial weights and
the order of the batches. ``bench_detector.py`` reports one fit
(``random_state=0``); this script fits the same detector (Lite0 preset,
256×256, every default) with the seeds 0 to 4 on each category and reports
the mean, the standard deviation and the range of its test scores, so that a
difference between two runs, or between a run and a target, can be read
against the spread of the fits themselves. No setting is chosen from it.
Writes its table into ``docs/benchmarks/accuracy.rst``.

Usage: ``python benchmarks/bench_seeds.py [category ...]``
"""

import sys

import numpy as np

from _report import data_dir, write_table

SEEDS = (0, 1, 2, 3, 4)
METRICS = ("pixel AUROC", "AUPRO", "image AUROC (max of map)", "image AUROC (min log10 NFA)")


def test_scores(detector, data):
    """The scores of ``METRICS``, in %, of a fitted detector on the test images of ``data``."""
    from sklearn_uflow.metrics import aupro, image_roc_auc, pixel_roc_auc

    maps, log_nfa = detector.anomaly_maps(data.test_images), detector.log_nfa_maps(data.test_images)
    masks, labels = data.test_masks, data.test_labels
    values = (pixel_roc_auc(masks, maps), aupro(masks, maps), image_roc_auc(labels, maps.max(axis=(1, 2))),
              image_roc_auc(labels, -log_nfa.min(axis=(1, 2))))
    return dict(zip(METRICS, (100 * v for v in values)))


def scores_by_seed(category, seeds=SEEDS, **params):
    """``{metric: [score in % for each seed]}`` of the default detector on ``category``,
    or of the detector with ``params`` (a diagnostic on test images: nothing is chosen from it)."""
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.datasets import load_anomaly_folder

    data = load_anomaly_folder(data_dir() / category, image_size=256)
    scores = {name: [] for name in METRICS}
    for seed in seeds:
        detector = UFlowDetector(**{"extractor": "efficientnet_lite0", **params}, random_state=seed, device="cpu")
        for name, value in test_scores(detector.fit(data.train_images), data).items():
            scores[name].append(value)
        print(category, seed, {name: round(v[-1], 2) for name, v in scores.items()}, flush=True)
    return scores


def _summary(values):
    values = np.asarray(values)
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} ({values.min():.2f} – {values.max():.2f})"


def main(categories):
    rows = []
    for category in categories:
        scores = scores_by_seed(category)
        rows.append([category, len(SEEDS), *(_summary(scores[name]) for name in METRICS)])
    write_table(
        "bench_seeds", "Accuracy over seeds",
        ["category", "fits", *(f"{name}: mean ± sd (min – max)" for name in METRICS)], rows,
        notes="``UFlowDetector(extractor='efficientnet_lite0', random_state=seed)`` with its defaults, fitted on "
              "``train/good`` and scored on ``test/`` (256×256) for each seed of "
              + ", ".join(map(str, SEEDS)) + "; the seed draws the validation split, the initial weights and "
              "the batch order. The standard deviation is that of the fits (ddof = 1).")


if __name__ == "__main__":
    root = data_dir()
    main(sys.argv[1:] or sorted(str(p.parent.parent.relative_to(root)) for p in root.glob("*/*/train/good")))
