"""The couplings' soft clamping chosen on held-out images: without test images.

``affine_clamp=2.0`` bounds each coupling's log-scale to (-2, 2), FrEIA's
default and the reference code's; it was never chosen for this flow. Too
tight a bound stops a coupling from contracting the directions in which
normal features vary little, too loose a one lets early training blow up.
The candidates 1, 2 and 3 are compared under the protocol of
``select_training.py``: 10 % of the good *training* images held out, the
detector (Lite0 preset, 256×256, every other default) fitted on the rest once
per candidate, its maps scored on the four families (small, large, texture
swaps, edge bands). The best mean pixel AUROC and AUPRO over both datasets
wins, and candidates within 0.1 point of the best are told apart on a small
training set (``select_defaults_small_data.small_data_scores``), the current
default staying on a tie there too. Writes ``docs/benchmarks/select_clamp.rst``.

Usage: ``python benchmarks/select_clamp.py [category ...]``
"""

import sys

from _report import write_table
from select_defaults import CATEGORIES, score_candidates
from select_defaults_small_data import break_ties, small_data_scores
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_pooling import pooled_detector

CANDIDATES = (1.0, 2.0, 3.0)


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    pooling = CNNFeatureTransformer().pooling
    rows, means = score_candidates(categories, CANDIDATES, lambda c: pooled_detector(pooling, affine_clamp=c),
                                   ("auto",), swaps=True, bands=True)
    means = {candidate: mean for (candidate, _), mean in means.items()}
    chosen, small = break_ties(means, lambda c: small_data_scores(pooling, widths=("auto",), affine_clamp=c)[0],
                               prefer=UFlowDetector().affine_clamp)
    write_table("select_clamp", "The couplings' clamping chosen on held-out images",
                ["category", "affine_clamp", "map_smoothing", *FAMILY_COLUMNS], rows,
                notes=FAMILY_NOTES + " Every other parameter at its default. Means over both datasets: "
                      + ", ".join(f"affine_clamp={c:g}: {means[c]:.2f}" for c in CANDIDATES)
                      + ". Within 0.1 point of the best, on 16 good 64×64 images of ``make_defects`` (pixel AUROC "
                      "/ AUPRO, three seeds): "
                      + ", ".join(f"affine_clamp={c:g}: {small[c][0]:.2f} / {small[c][1]:.2f}" for c in small)
                      + f". Chosen: ``affine_clamp={chosen:g}``.")
    print("chosen", chosen, means)


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
