"""Batches of eight training images, against four: for speed, without test images.

``batch_size=4`` was never chosen; it came with the paper's flow. On a 2-core
CPU a training step of the Lite0 flow costs 42 ms per image in batches of
four and 34 ms in batches of eight (measured by hand with the timing of
``bench_flow_step.py``), and the flow's training is most of a fit, whose
target (0.5 s per training image) does not hold on every machine of this
kind. With eight images a batch, an epoch has half the iterations; Adam's
steps keep their size whatever the batch, so the learning rate is tried as it
is and scaled by the square root of two.

Protocol (that of ``select_weight_decay.py``): 10 % of the good *training*
images held out, the same held-out images for every fit, four families of
planted defects, every other default; every candidate and the default are
fitted with ``random_state=0``, then the candidate with the best mean at its
best width and the default with ``random_state`` 1 and 2.

The rule, written before the run, is not that of the other selections, since
the change is wanted for its speed: the finalist, at its best width over the
three seeds, replaces the default pair (batches of four, ``learning_rate=0.01``,
two cells) if its mean over both datasets and the three seeds is no more than
0.1 point below the default's (the margin within which the selections take
candidates as tied) and its fits took less time per training image; otherwise
the defaults stay. Writes ``docs/benchmarks/select_batch_size.rst``.

Usage: ``python benchmarks/select_batch_size.py [category ...]``
"""

import sys

import numpy as np

from _report import write_table
from select_defaults import CATEGORIES
from select_defaults_small_data import TIE_MARGIN
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_over_seeds import screen_summary, screen_then_seeds

DEFAULT = ((4, 0.01), 2.0)  # (batch_size, learning_rate), cells of smoothing
CANDIDATES = ((8, 0.01), (8, 0.014))
WIDTHS = (1.0, 2.0, 3.0, 4.0)  # cells of the 64-cell finest grid
SEEDS = (0, 1, 2)


def batched_detector(value, seed):
    """The Lite0 preset fitted in batches of ``batch_size`` with ``learning_rate``."""
    from sklearn_uflow import UFlowDetector

    batch_size, learning_rate = value
    return UFlowDetector("efficientnet_lite0", batch_size=batch_size, learning_rate=learning_rate,
                         random_state=seed, device="cpu")


def choose(means, fit_seconds, finalist):
    """The rule of the module's docstring: the chosen pair, the finalist's best pair, the means over seeds of
    both and the mean fit seconds per training image of the default and of the finalist."""
    over_seeds = {(value, w): np.mean([means[value, s, w] for s in SEEDS])
                  for value in (DEFAULT[0], finalist) for w in WIDTHS}
    best = max(((finalist, w) for w in WIDTHS), key=over_seeds.get)
    speed = {value: np.mean(fit_seconds[value]) for value in (DEFAULT[0], finalist)}
    tied = over_seeds[best] >= over_seeds[DEFAULT] - TIE_MARGIN
    chosen = best if tied and speed[finalist] < speed[DEFAULT[0]] else DEFAULT
    return chosen, best, over_seeds, speed


def main(categories):
    rows, means, screen, finalist = screen_then_seeds(categories, DEFAULT[0], CANDIDATES, batched_detector,
                                                      WIDTHS, SEEDS)
    values = {str(value): value for value in (DEFAULT[0], *CANDIDATES)}
    fit_seconds = {}
    for row in rows:  # [category, value, seed, width, *families, mean, fit s / image]
        fit_seconds.setdefault(values[row[1]], []).append(float(row[-1]))
    chosen, best, over_seeds, speed = choose(means, fit_seconds, finalist)
    verdict = ("the defaults stay" if chosen == DEFAULT else
               f"the defaults become batch_size={chosen[0][0]}, learning_rate={chosen[0][1]}, "
               f"map_smoothing={chosen[1]} cells")
    summary = (f"the finalist at its best width, {best[1]} cells: {over_seeds[best]:.2f}, against "
               f"{over_seeds[DEFAULT]:.2f} for the default pair; fits of {speed[finalist]:.2f} s per training "
               f"image against {speed[DEFAULT[0]]:.2f} (means over every fit of the run). "
               f"By the rule, {verdict}.")
    write_table(
        "select_batch_size", "Batches of eight",
        ["category", "(batch_size, learning_rate)", "random_state", "map_smoothing", *FAMILY_COLUMNS],
        sorted(rows, key=lambda row: (row[0] != categories[0], row[1] != str(DEFAULT[0]), row[1], row[2])),
        notes=FAMILY_NOTES + " Every other parameter at its default. "
              + screen_summary(screen, means, DEFAULT[0], finalist, "(batch_size, learning_rate)", WIDTHS, SEEDS)
              + summary)
    print(verdict)


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
