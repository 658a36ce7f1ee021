"""Couplings that know where they are: positional conditioning, against none, without test images.

The flow models each feature vector given its neighbours and the image's
context, the same at every position. On images whose parts sit at fixed
places (a tile's edges, a part in its fixture), what is normal depends on
where it is; CFlow-AD conditions its flow on a positional encoding for this
reason. Here each coupling's hidden layer gets a learned 1x1 map of a few
cosines of the row and of the column, ``cos(pi k (i + 1/2) / H)`` for ``k``
from 1 to n (``UFlowDetector(positional_encoding=n)``), initialised at zero
(the flow starts as without them).

Protocol (that of ``select_weight_decay.py``): 10 % of the good *training*
images held out, the same held-out images for every fit, four families of
planted defects, every other default; every candidate and the default (no
positions) are fitted with ``random_state=0``, then the candidate with the
best mean at its best width and the default with ``random_state`` 1 and 2.

The rule, written before the run: the (candidate, width) pair with the best
mean over both datasets and the three seeds replaces the default pair (no
positions, two cells) if it is better by more than 0.1 point on that mean
*and* on each seed; otherwise the defaults stay. Writes
``docs/benchmarks/select_positions.rst``. Its run made four frequencies
(``positional_encoding=4``) the default, with the width unchanged;
``DEFAULT`` keeps the pair it was compared with.

Usage: ``python benchmarks/select_positions.py [category ...]``
"""

import sys

from select_defaults import CATEGORIES
from select_over_seeds import select_by_screen

DEFAULT = ((), 2.0)
CANDIDATES = ((1, 2), (1, 2, 3, 4))  # the frequencies k of the cosines, per axis
WIDTHS = (1.0, 2.0, 3.0, 4.0)  # cells of the 64-cell finest grid
SEEDS = (0, 1, 2)


def positioned_detector(frequencies, seed):
    """The Lite0 preset with the cosines of ``frequencies`` (1 to n: ``positional_encoding=n``)."""
    from sklearn_uflow import UFlowDetector

    return UFlowDetector("efficientnet_lite0", positional_encoding=len(frequencies), random_state=seed, device="cpu")


def main(categories):
    print(select_by_screen(
        "select_positions", "Positional conditioning", "cosine frequencies", categories, DEFAULT, CANDIDATES,
        positioned_detector, name="frequencies", widths=WIDTHS, seeds=SEEDS,
        sort_key=lambda row: (row[0] != categories[0], len(row[1]), row[2]),
        notes="The frequencies k of the cosines of the rows and of the columns that each coupling sees; () is "
              "the default, without positions. ",
    ))


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
