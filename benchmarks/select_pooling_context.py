"""The feature pooling chosen again, under the current defaults: without test images.

``select_pooling.py`` chose ``pooling=(5, 5, 1)`` with the paper's flow, one
cell of map smoothing and two families of planted defects. The image context
and three cells of smoothing came later (``select_image_context.py``), and
both also pool over the image, so the pooling is chosen again here under the
same protocol as the context: 10 % of the good *training* images held out,
the detector (Lite0 preset, 256×256, every other default) fitted on the rest
once per candidate, its maps scored on the four families (small, large,
texture swaps, edge bands) at each width of ``map_smoothing``. The pair
(pooling, width) with the best mean of pixel AUROC and AUPRO over both
datasets and the four families becomes the default, unless the current pair,
``(5, 5, 1)`` and three cells, is within 0.1 point of it. Writes
``docs/benchmarks/select_pooling_context.rst``.

Usage: ``python benchmarks/select_pooling_context.py [category ...]``
"""

import sys

from _report import write_table
from select_defaults import CATEGORIES, score_candidates
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_pooling import CANDIDATES, pooled_detector

WIDTHS = (1.0, 2.0, 3.0, 4.0)  # cells of the 64-cell finest grid; 3 was map_smoothing="auto" at this run


def main(categories):
    rows, means = score_candidates(categories, CANDIDATES, pooled_detector, WIDTHS, swaps=True, bands=True)
    ranked = sorted(means, key=means.get, reverse=True)[:5]
    write_table("select_pooling_context", "The feature pooling chosen again with the image context",
                ["category", "pooling (finest first)", "map_smoothing", *FAMILY_COLUMNS], rows,
                notes=FAMILY_NOTES + " Every other parameter at its default (image context on). The best means "
                      "over both datasets: "
                      + ", ".join(f"pooling={p}, map_smoothing={w}: {means[p, w]:.2f}" for p, w in ranked) + ".")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
