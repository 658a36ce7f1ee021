"""Lite0's coarsest scale from two stages instead of one, judged on the pooled held-out score.

The Lite0 preset takes each scale from the last stage at its stride: 24, 40
and 112 channels at strides 4, 8 and 16. Two stages of EfficientNet-Lite0 run
at stride 16, the 80-channel stage 3 (three 3x3 depthwise blocks) and the
112-channel stage 4 (three 5x5 blocks). ``screen_pooled_score.py`` (one fit,
``random_state=0``) found the 80-channel stage alone worse on MPDD (86.92
against the default's 88.63 at one cell) and both stages concatenated, 192
channels, about as good on MPDD (88.73) and better on Magnetic Tile (74.64
against 73.85): the pooling aggregates neighbouring cells, the two stages
aggregate levels of abstraction, as PatchCore's layers 2 and 3 do.

Protocol that of ``select_pooled_score.py``: 10 % of the good *training*
images held out, the same held-out images for every fit, every other
parameter at its default, each candidate fitted with ``random_state`` 0, 1
and 2, the clean held-out images and the four families of planted defects
pooled and scored at once at each width.

The rule, written before the run: the pair (stages, width) with the best
pooled mean over both datasets and the three seeds replaces the default pair
(stage 4, one cell) if it is better by more than 0.1 point on that mean *and*
on each seed; otherwise the defaults stay. The concatenation widens the flow's
coarsest scale, so a chosen pair becomes the default only if the fit then
still meets its target of 0.5 s per training image in ``bench_detector.py``.
Writes ``docs/benchmarks/select_stage_features.rst``.

Usage: ``python benchmarks/select_stage_features.py [category ...]``
"""

import sys

from screen_pooled_score import stage_features
from select_defaults import CATEGORIES
from select_pooled_score import score_candidates, select_pooled

WIDTHS = (0.5, 1.0, 2.0)  # cells of the 64-cell finest grid; the default is 1
STAGES = {"112": [[1], [2], [4]], "80+112": [[1], [2], [3, 4]]}  # timm's Lite0 stages, per scale
DEFAULT = ("112", 1.0)


def score_seed(category, seed, fit_on, families):
    """Rows and ``{(stages, seed, width): pooled mean}`` of one fit per candidate."""
    from sklearn_uflow import UFlowDetector

    return score_candidates(category, seed, fit_on, families, {
        name: lambda seed, stages=stages: UFlowDetector(stage_features(stages, "auto"), random_state=seed,
                                                        device="cpu")
        for name, stages in STAGES.items()}, WIDTHS)


def main(categories):
    select_pooled("select_stage_features", "The coarsest scale from one Lite0 stage or two", "stride-16 channels",
                  "stages", categories, score_seed, DEFAULT,
                  "``112``: the default, Lite0's stage 4 at stride 16; ``80+112``: its stages 3 and 4 concatenated.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
