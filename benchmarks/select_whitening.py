"""Whitening each scale's features before the flow, judged on the pooled held-out score.

The flow sees each scale's features standardised channel by channel, yet
neighbouring channels of a CNN are strongly correlated, and the flow's four
steps per scale must spend their capacity undoing those correlations before
they can model anything else. ``screen_pooled_score.py`` (one fit,
``random_state=0``) tried a fixed ZCA whitening of the standardised
features' channel correlation shrunk by ``s`` towards the identity
(:func:`screen_pooled_score.whitened`, a prototype patched into the library):
on MPDD ``s=0.01`` scored 89.26 at one cell against the default's 88.63,
``s=0.001`` 88.85 and ``s=0.1`` 88.07; on Magnetic Tile ``s=0.01`` scored
74.54 against 73.85.

Protocol and table those of ``select_stage_features.py`` (:func:`select_pooled_score.select_pooled`).

The rule, written before the run: the pair (shrinkage, width) with the best
pooled mean over both datasets and the three seeds replaces the default pair
(no whitening, one cell) if it is better by more than 0.1 point on that mean
*and* on each seed; otherwise the defaults stay. A chosen pair becomes a
library option and the default only if ``bench_detector.py``'s fits then
still take at most 0.5 s per training image. Writes
``docs/benchmarks/select_whitening.rst``.

Usage: ``python benchmarks/select_whitening.py [category ...]``
"""

import sys

from screen_pooled_score import whitened
from select_defaults import CATEGORIES
from select_pooled_score import score_candidates, select_pooled

WIDTHS = (0.5, 1.0, 2.0)  # cells of the 64-cell finest grid; the default is 1
SHRINKAGES = {"none": None, "0.01": 0.01, "0.003": 0.003}
DEFAULT = ("none", 1.0)


def score_seed(category, seed, fit_on, families):
    """Rows and ``{(shrinkage, seed, width): pooled mean}`` of one fit per candidate."""
    from sklearn_uflow import UFlowDetector

    return score_candidates(
        category, seed, fit_on, families,
        {name: lambda seed: UFlowDetector("efficientnet_lite0", random_state=seed, device="cpu")
         for name in SHRINKAGES}, WIDTHS,
        contexts={name: lambda s=s: whitened(s) for name, s in SHRINKAGES.items() if s is not None})


def main(categories):
    select_pooled("select_whitening", "Whitening each scale's features before the flow", "whitening shrinkage",
                  "whitening", categories, score_seed, DEFAULT,
                  "``none``: the default, each channel standardised; a number: the standardised features then "
                  "whitened by ZCA's map of their channel correlation shrunk by that much towards the identity.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
