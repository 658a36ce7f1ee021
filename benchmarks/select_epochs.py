"""The number of epochs chosen again, under the current defaults: without test images.

``max_epochs=25`` was chosen by ``select_defaults.py`` with the paper's flow,
no pooling and two families of planted defects. The pooling, the image
context and three cells of smoothing came later, and training longer would
be the first use of a faster flow step, so the epochs are chosen again under
the protocol of ``select_image_context.py``: 10 % of the good *training*
images held out, the detector (Lite0 preset, 256×256, every other default,
``map_smoothing="auto"``) fitted on the rest once per candidate, its maps
scored on the four families (small, large, texture swaps, edge bands). Only
candidates that train no longer than the current 25 epochs are eligible: 25
meet the target of 0.5 s per training image only just (``bench_detector.py``),
and this machine's load moves a fit's time by more than the margin, so a
measured time would not say reliably which longer candidate fits. The best mean pixel AUROC and AUPRO over both
datasets and the four families wins, and eligible candidates within 0.1
point of the best are told apart on a small training set (``select_defaults_small_data.small_data_scores``, 16 good
64×64 images of ``make_defects``, three seeds). Writes
``docs/benchmarks/select_epochs.rst``.

Usage: ``python benchmarks/select_epochs.py [category ...]``
"""

import sys

import numpy as np

from _report import write_table
from select_defaults import CATEGORIES, score_candidates
from select_defaults_small_data import small_data_scores
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_pooling import pooled_detector

CANDIDATES = (15, 20, 25, 30)
LONGEST_ELIGIBLE = 25  # the current default, at the fit target


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer

    pooling = CNNFeatureTransformer().pooling
    rows, means = score_candidates(categories, CANDIDATES, lambda e: pooled_detector(pooling, max_epochs=e),
                                   ("auto",), swaps=True, bands=True)
    means = {epochs: mean for (epochs, _), mean in means.items()}
    eligible = {epochs: mean for epochs, mean in means.items() if epochs <= LONGEST_ELIGIBLE}
    best = max(eligible, key=eligible.get)
    tied = sorted(epochs for epochs, mean in eligible.items() if mean >= eligible[best] - 0.1)
    small = {epochs: small_data_scores(pooling, widths=("auto",), max_epochs=epochs)[0] for epochs in tied}
    chosen = max(tied, key=lambda epochs: small[epochs].mean())
    write_table("select_epochs", "The number of epochs chosen again",
                ["category", "max_epochs", "map_smoothing", *FAMILY_COLUMNS], rows,
                notes=FAMILY_NOTES + " Every other parameter at its default. Means over both datasets: "
                      + ", ".join(f"{e} epochs: {means[e]:.2f}" + ("" if e in eligible else " (not eligible)")
                                  for e in CANDIDATES)
                      + ". Within 0.1 point of the best, on 16 good 64×64 images of ``make_defects`` (pixel AUROC "
                      "/ AUPRO, three seeds): "
                      + ", ".join(f"{e} epochs: {small[e][0]:.2f} / {small[e][1]:.2f}" for e in tied)
                      + f". Chosen: ``max_epochs={chosen}``.")
    print("chosen", chosen, {e: np.round(m, 2) for e, m in means.items()})


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
