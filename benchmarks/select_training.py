"""The learning rate and number of epochs chosen again, under the current defaults: without test images.

``learning_rate=0.01, max_epochs=25`` were chosen by ``select_defaults.py``
with the paper's flow, no pooling and two families of planted defects. The
pooling, the image context and three cells of smoothing came later, and
training longer would be the first use of a faster flow step, so they are
chosen again under the protocol of ``select_image_context.py``: 10 % of the
good *training* images held out, the detector (Lite0 preset, 256×256, every
other default, ``map_smoothing="auto"``) fitted on the rest once per
candidate, its maps scored on the four families (small, large, texture swaps,
edge bands). Only candidates that train no longer than the current 25 epochs
are eligible: 25 meet the target of 0.5 s per training image only just
(``bench_detector.py``), and this machine's load moves a fit's time by more
than the margin, so a measured time would not say reliably which longer
candidate fits. The best mean pixel AUROC and AUPRO over both datasets and
the four families wins, and eligible candidates within 0.1 point of the best
are told apart on a small training set
(``select_defaults_small_data.small_data_scores``, 16 good 64×64 images of
``make_defects``, three seeds). Writes ``docs/benchmarks/select_training.rst``.

Usage: ``python benchmarks/select_training.py [category ...]``
"""

import sys

import numpy as np

from _report import write_table
from select_defaults import CATEGORIES, score_candidates
from select_defaults_small_data import break_ties, small_data_scores
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_pooling import pooled_detector

# (learning_rate, max_epochs): the epochs around the current 25, then the rate halved and doubled.
CANDIDATES = ((1e-2, 15), (1e-2, 20), (1e-2, 25), (1e-2, 30), (5e-3, 25), (2e-2, 25))


def _name(candidate):
    return f"learning_rate={candidate[0]:g}, max_epochs={candidate[1]}"


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    pooling = CNNFeatureTransformer().pooling
    longest_eligible = UFlowDetector().max_epochs  # the current default, at the fit target
    rows, means = score_candidates(
        categories, CANDIDATES,
        lambda c: pooled_detector(pooling, learning_rate=c[0], max_epochs=c[1]), ("auto",), swaps=True, bands=True,
    )
    means = {candidate: mean for (candidate, _), mean in means.items()}
    eligible = {c: mean for c, mean in means.items() if c[1] <= longest_eligible}
    chosen, small = break_ties(
        eligible, lambda c: small_data_scores(pooling, widths=("auto",), learning_rate=c[0], max_epochs=c[1])[0]
    )
    write_table("select_training", "The learning rate and epochs chosen again",
                ["category", "(learning_rate, max_epochs)", "map_smoothing", *FAMILY_COLUMNS], rows,
                notes=FAMILY_NOTES + " Every other parameter at its default. Means over both datasets: "
                      + ", ".join(f"{_name(c)}: {means[c]:.2f}" + ("" if c in eligible else " (not eligible)")
                                  for c in CANDIDATES)
                      + ". Within 0.1 point of the best, on 16 good 64×64 images of ``make_defects`` (pixel AUROC "
                      "/ AUPRO, three seeds): "
                      + ", ".join(f"{_name(c)}: {small[c][0]:.2f} / {small[c][1]:.2f}" for c in small)
                      + f". Chosen: ``{_name(chosen)}``.")
    print("chosen", chosen, {c: np.round(m, 2) for c, m in means.items()})


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
