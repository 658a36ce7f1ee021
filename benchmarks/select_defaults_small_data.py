"""The candidates of ``select_defaults.py`` and ``select_pooling.py`` on a small training set.

Those scripts fit on 49 to 685 images. Users also fit on a few dozen. This
script fits each (learning_rate, max_epochs) candidate, without pooling as
when they were chosen, and each pooling candidate, with the default training,
on the 16 good images of ``make_defects(n_samples=32, image_size=64)`` (the
synthetic set of the tests, no real image), for three seeds, and reports
pixel AUROC and AUPRO of the maps, with the paper's flow and
``map_smoothing=1.0`` (the defaults then). It breaks
ties between candidates whose mean on the real data's held-out images is
within 0.1 point. It then scores the widths of ``map_smoothing`` (in cells, and ``"auto"``) with the
current defaults, on these images and on their 128×128 version, with the
backbone's input size equal to the image size. Last, it chooses how the
pooling follows the input size (``pooling="auto"``), by the rule in
``POOLING_RULES``' comment, on the same images at both sizes, and
reports the rules' windows at 512 too. Writes
``docs/benchmarks/select_defaults_small_data.rst``,
``docs/benchmarks/select_pooling_small_data.rst``,
``docs/benchmarks/smoothing_small_data.rst`` and
``docs/benchmarks/pooling_by_size.rst``.

Usage: ``python benchmarks/select_defaults_small_data.py [training] [pooling] [smoothing] [pooling_by_size]``
(all four tables when none is named)
"""

import sys

import numpy as np

from _report import write_table
from select_defaults import TRAINING
from select_pooling import CANDIDATES

SEEDS = (0, 1, 2)
SMOOTHING_WIDTHS = (0.0, 1.0, 2.0, 3.0, "auto")
TIE_MARGIN = 0.1  # point of the mean held-out score
SIZES = (64, 128)
# Reported, not part of the rule: where the chosen rule widens the window beyond the default's 3 cells.
CHECK_SIZES = (512,)
# How the window could follow the input size; each maps the feature grids' sides (finest first) to windows.
# At the default input size (grids of 64, 32 and 16 cells) all three give (3, 3, 3), the default chosen
# on the real data's held-out images. Rule, written before the run: the rule whose windows score the best
# mean of pixel AUROC and AUPRO over both small sizes becomes ``pooling="auto"``; "fixed" keeps 3 everywhere.
POOLING_RULES = {
    "fixed": lambda sides: tuple(3 for _ in sides),
    "3 on grids of 16 cells or more, else 1": lambda sides: tuple(3 if g >= 16 else 1 for g in sides),
    # The window's share of the image kept: the largest odd number of cells up to 3 × input size / 256.
    "3 × input size / 256, odd": lambda sides: (max(1, (int(3 * sides[0] / 64) - 1) // 2 * 2 + 1),) * len(sides),
}


def break_ties(means, small_data, prefer=None):
    """The candidate with the best mean held-out score, those within
    ``TIE_MARGIN`` of it told apart by the mean of ``small_data(candidate)``
    (pixel AUROC and AUPRO on a small training set); on an exact tie there,
    ``prefer``, then the first in ``means``, wins.

    Returns the chosen candidate and ``{candidate: small_data(candidate)}`` for
    the tied ones, in the order of ``means``.
    """
    best = max(means.values())
    small = {c: small_data(c) for c, mean in means.items() if mean >= best - TIE_MARGIN}
    return max(small, key=lambda c: (small[c].mean(), c == prefer)), small


def small_data_scores(pooling, image_size=64, widths=SMOOTHING_WIDTHS, **params):
    """Mean pixel AUROC and AUPRO, in %, over the seeds: ``(2,)`` per width of ``map_smoothing``."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.datasets import make_defects
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    values = []
    for seed in SEEDS:
        X, y, masks = make_defects(n_samples=32, image_size=image_size, random_state=seed)
        extractor = CNNFeatureTransformer(input_size=image_size, pooling=pooling, device="cpu")
        detector = UFlowDetector(extractor, random_state=seed, device="cpu", **params).fit(X[y == 0])
        values.append([])
        for width in widths:
            maps = detector.set_params(map_smoothing=width).anomaly_maps(X)
            values[-1].append([100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)])
    return np.mean(values, axis=0)


def candidate_scores(pooling, **params):
    """As when the candidates were chosen: the paper's flow, one cell of smoothing."""
    return small_data_scores(pooling, widths=(1.0,), image_context=False, **params)[0]


def main_training():
    rows = []
    for learning_rate, max_epochs in TRAINING:
        auroc, pro = candidate_scores(1, learning_rate=learning_rate, max_epochs=max_epochs)
        rows.append([f"{learning_rate:g}", max_epochs, f"{auroc:.2f}", f"{pro:.2f}"])
        print(rows[-1], flush=True)
    write_table("select_defaults_small_data", "The training candidates on a small training set",
                ["learning_rate", "max_epochs", "pixel AUROC", "AUPRO"], rows,
                notes="16 good 64×64 images of ``make_defects`` per fit (three seeds, means shown), scored on the "
                      "32 images of the set; Lite0 backbone at input size 64 without pooling; the paper's flow "
                      "(``image_context=False``) and ``map_smoothing=1.0``, the defaults when these candidates "
                      "were chosen.")


def main_pooling():
    rows = []
    for pooling in CANDIDATES:
        auroc, pro = candidate_scores(pooling)
        rows.append([str(pooling), f"{auroc:.2f}", f"{pro:.2f}"])
        print(rows[-1], flush=True)
    write_table("select_pooling_small_data", "The pooling candidates on a small training set",
                ["pooling (finest first)", "pixel AUROC", "AUPRO"], rows,
                notes="As above, with the default training and each pooling of the Lite0 features (at input size "
                      "64 the feature maps are 16×16, 8×8 and 4×4).")


def main_smoothing():
    from sklearn_uflow import CNNFeatureTransformer
    from sklearn_uflow.scoring import AUTO_SMOOTHING

    rows, default_pooling = [], CNNFeatureTransformer().pooling
    for image_size in (64, 128):
        scores = small_data_scores(default_pooling, image_size)
        for width, (auroc, pro) in zip(SMOOTHING_WIDTHS, scores):
            if width == "auto":  # a share of the side, in cells of 4 pixels
                width = f"auto ({AUTO_SMOOTHING * image_size / 4:g})"
            rows.append([image_size, width, f"{auroc:.2f}", f"{pro:.2f}"])
            print(rows[-1], flush=True)
    write_table("smoothing_small_data", "The map smoothing on small images",
                ["image size", "map_smoothing (finest-grid cells)", "pixel AUROC", "AUPRO"], rows,
                notes="``make_defects`` as above, at 64×64 and 128×128 (16 good images per fit, three seeds, means "
                      "shown), the backbone's ``input_size`` equal to the image size, with every default but "
                      "``map_smoothing``; one cell is 4 pixels at both sizes, and "
                      f"``\"auto\"``, the default, is {AUTO_SMOOTHING * 64:g}/64 of the image's side (its width in "
                      "cells in brackets).")


def main_pooling_by_size():
    windows = {size: {rule: f([size // 4, size // 8, size // 16]) for rule, f in POOLING_RULES.items()}
               for size in SIZES + CHECK_SIZES}
    scores = {}  # (size, windows) -> (pixel AUROC, AUPRO); rules that agree share a fit
    rows = []
    for size in SIZES + CHECK_SIZES:
        for pooling in dict.fromkeys([(1, 1, 1), (5, 5, 1), *windows[size].values()]):
            scores[size, pooling] = small_data_scores(pooling, size, widths=("auto",))[0]
            auroc, pro = scores[size, pooling]
            rows.append([size, str(pooling), f"{auroc:.2f}", f"{pro:.2f}", f"{(auroc + pro) / 2:.2f}"])
            print(rows[-1], flush=True)
    means = {rule: np.mean([scores[size, windows[size][rule]].mean() for size in SIZES]) for rule in POOLING_RULES}
    chosen = max(means, key=means.get)
    summary = "; ".join(f"{rule}: {', '.join(str(windows[s][rule]) for s in SIZES)}, mean {m:.2f}"
                        for rule, m in means.items())
    checks = "; ".join(f"{rule}: {windows[s][rule]}, mean {scores[s, windows[s][rule]].mean():.2f}"
                       for s in CHECK_SIZES for rule in POOLING_RULES)
    write_table("pooling_by_size", "The pooling by input size",
                ["image size", "pooling (finest first)", "pixel AUROC", "AUPRO", "mean"], rows,
                notes="``make_defects`` as in the smoothing table (16 good images per fit, three seeds, means shown), "
                      "the backbone's ``input_size`` equal to the image size, every other default (``map_smoothing="
                      "\"auto\"``). The rules, their windows at 64 and 128 and their means over both sizes: "
                      f"{summary}. Chosen for ``pooling=\"auto\"``: {chosen}. At "
                      + ", ".join(map(str, CHECK_SIZES)) + f" (not part of the rule): {checks}.")


if __name__ == "__main__":
    parts = {"training": main_training, "pooling": main_pooling, "smoothing": main_smoothing,
             "pooling_by_size": main_pooling_by_size}
    for name in sys.argv[1:] or parts:
        parts[name]()
