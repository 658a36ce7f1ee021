"""No pooling on the finest scale, against the default: without test images.

Every scale's features are averaged over 3x3 cells by default
(``pooling="auto"``, chosen over the grid of ``select_pooling.py`` and
again over seeds in ``select_over_seeds.py``). That grid pooled the finer
scales at least as much as the coarser ones, and wider windows on the coarser
scales (``select_coarse_pooling.py``) helped the large planted defects and
blurred the small ones. The opposite corner was never tried: the finest scale,
the one that resolves small defects, left as it is, and the coarser ones
pooled as now or wider. A screen by hand on MPDD alone (``random_state=0``)
came first: ``(1, 3, 3)`` raised the held-out mean from 89.62 to 90.02 at two
cells, on every family.

Protocol (that of ``select_coarse_pooling.py``): 10 % of the good *training*
images held out, the same held-out images for every fit, four families of
planted defects, every other default; every candidate and the default
``(3, 3, 3)`` are fitted with ``random_state=0``, then the candidate with the
best mean at its best width and the default with ``random_state`` 1 and 2.

The rule, written before the run: the (pooling, width) pair with the best
mean over both datasets and the three seeds replaces the default pair,
``(3, 3, 3)`` with two cells, if it is better by more than 0.1 point on that
mean *and* on each seed; otherwise the defaults stay. Writes
``docs/benchmarks/select_fine_pooling.rst``.

Usage: ``python benchmarks/select_fine_pooling.py [category ...]``
"""

import sys

from select_defaults import CATEGORIES
from select_over_seeds import select_feature_parameter

DEFAULT = ((3, 3, 3), 2.0)
CANDIDATES = ((1, 3, 3), (1, 5, 5))
WIDTHS = (1.0, 2.0, 3.0, 4.0)  # cells of the 64-cell finest grid
SEEDS = (0, 1, 2)


def main(categories):
    print(select_feature_parameter(
        "select_fine_pooling", "No pooling on the finest scale", "pooling (finest first)", "pooling",
        categories, DEFAULT, CANDIDATES, WIDTHS, SEEDS,
    ))


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
