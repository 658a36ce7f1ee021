"""The pooling and the smoothing width chosen again over three seeds: without test images.

``select_pooling_context.py`` kept ``pooling=(5, 5, 1)`` with three cells of
smoothing (81.49) over ``(3, 3, 3)`` with two (81.47), and
``select_image_context.py`` kept three cells over two and four by 0.1 to 0.2
point, each from one fit per candidate; the same detector fitted with three
seeds spread by 0.56 point (``bench_seeds.py --held-out``, run then). Here each
pooling is fitted with ``random_state`` 0, 1 and 2 under the same protocol
(10 % of the good *training* images held out, the same held-out images for
every fit, four families of planted defects, every other default), its maps
scored at each width. A seed draws the same validation split, initial weights
and batch order for both poolings, and the widths are scored on the same
fit, so candidates are compared seed by seed.

The rule, written before the run: the pair (pooling, width) with the best
mean over the three seeds becomes the default if it beats the current pair,
``(5, 5, 1)`` and three cells, by more than 0.1 point on that mean *and* on
each of the three seeds; otherwise the defaults stay. Writes
``docs/benchmarks/select_over_seeds.rst``. Its run made ``(3, 3, 3)`` (``pooling=3``) and two cells
(``map_smoothing="auto"``, 2/64 of the side) the defaults; ``DEFAULT`` keeps the pair they were compared with.

Usage: ``python benchmarks/select_over_seeds.py [category ...]``
"""

import sys

import numpy as np

from _report import write_table
from select_defaults import CATEGORIES, score_candidates
from select_defaults_small_data import TIE_MARGIN
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES

POOLINGS = ((5, 5, 1), (3, 3, 3))
SEEDS = (0, 1, 2)
WIDTHS = (1.0, 2.0, 3.0, 4.0)  # cells of the 64-cell finest grid; map_smoothing="auto" was 3, now 2
DEFAULT = ((5, 5, 1), 3.0)


def choose(means, default=DEFAULT, seeds=SEEDS):
    """The (pooling, width) the rule picks from ``{(pooling, seed, width): mean}`` (over the pairs fitted with
    every seed), the means over seeds and the per-seed gains over ``default``."""
    pairs = {(p, w) for p, _, w in means if all((p, s, w) in means for s in seeds)}
    over_seeds = {pair: np.mean([means[pair[0], s, pair[1]] for s in seeds]) for pair in pairs}
    best = max(over_seeds, key=over_seeds.get)
    gains = [means[best[0], s, best[1]] - means[default[0], s, default[1]] for s in seeds]
    chosen = best if over_seeds[best] - over_seeds[default] > TIE_MARGIN and min(gains) > 0 else default
    return chosen, over_seeds, gains


def rule_summary(over_seeds, gains, chosen, default=DEFAULT, name="pooling"):
    """The verdict of :func:`choose` and the sentences that report it under a table; ``name`` is the parameter
    whose values are compared."""
    ranked = sorted(over_seeds, key=over_seeds.get, reverse=True)[:5]
    verdict = ("the defaults stay" if chosen == default else
               f"the defaults become {name}={chosen[0]}, map_smoothing={chosen[1]} cells")
    return verdict, (", ".join(f"{name}={v}, map_smoothing={w}: {over_seeds[v, w]:.2f}" for v, w in ranked)
                     + ". The best pair's gain over the default pair, seed by seed: "
                     + ", ".join(f"{g:+.2f}" for g in gains) + f"; by the rule, {verdict}.")


def score_pairs(categories, pairs, make_detector, widths=WIDTHS):
    """:func:`select_defaults.score_candidates` (every family) for ``(value, seed)`` pairs, each fitted as
    ``make_detector(value, seed)``: the rows, labelled with the value and the seed, and the means over both
    datasets as ``{(value, seed, width): mean}``."""
    rows, means = score_candidates(categories, pairs, lambda pair: make_detector(*pair), widths,
                                   swaps=True, bands=True)
    by_label = {str(pair): pair for pair in pairs}  # score_candidates labels its rows with str(candidate)
    for row in rows:
        value, seed = by_label[row[1]]
        row[1:2] = [str(value), seed]
    return rows, {(value, seed, width): m for ((value, seed), width), m in means.items()}


def screen_then_seeds(categories, default, candidates, make_detector, widths=WIDTHS, seeds=SEEDS):
    """Fit ``default`` and every candidate with ``seeds[0]``; then the default and the finalist, the candidate
    with the best mean at its best width, with the other seeds (:func:`score_pairs`).

    Returns the rows, the means, the screen ``{candidate: best seed-0 mean}`` and the finalist."""
    rows, means = score_pairs(categories, [(value, seeds[0]) for value in (default, *candidates)], make_detector,
                              widths)
    screen = {value: max(means[value, seeds[0], w] for w in widths) for value in candidates}
    finalist = max(screen, key=screen.get)
    print("finalist", finalist, flush=True)
    more_rows, more_means = score_pairs(categories, [(value, seed) for value in (default, finalist)
                                                     for seed in seeds[1:]], make_detector, widths)
    return rows + more_rows, {**means, **more_means}, screen, finalist


def screen_summary(screen, means, default, finalist, name, widths=WIDTHS, seeds=SEEDS):
    """The sentences that report :func:`screen_then_seeds`'s screen, before :func:`rule_summary`'s."""
    return (f"With random_state={seeds[0]}, the best mean over both datasets of each {name} (at its best width): "
            + ", ".join(f"{v}: {m:.2f}" for v, m in sorted(screen.items(), key=lambda kv: -kv[1]))
            + f", against {max(means[default, seeds[0], w] for w in widths):.2f} for the default {default}. "
            f"The finalist {finalist} and the default over the seeds " + ", ".join(map(str, seeds)) + ": ")


def select_by_screen(table, title, column, categories, default, candidates, make_detector, *, name, sort_key,
                     widths=WIDTHS, seeds=SEEDS, notes=""):
    """:func:`screen_then_seeds` for ``default = (value, width)``, the rule of :func:`choose`, and the table
    ``docs/benchmarks/<table>.rst`` (rows ordered by ``sort_key``, ``notes`` before the verdict); returns the
    verdict."""
    rows, means, screen, finalist = screen_then_seeds(categories, default[0], candidates, make_detector, widths,
                                                      seeds)
    chosen, over_seeds, gains = choose(means, default, seeds)
    verdict, summary = rule_summary(over_seeds, gains, chosen, default, name)
    write_table(
        table, title, ["category", column, "random_state", "map_smoothing", *FAMILY_COLUMNS],
        sorted(rows, key=sort_key), notes=FAMILY_NOTES + " Every other parameter at its default. " + notes
              + screen_summary(screen, means, default[0], finalist, name, widths, seeds) + summary)
    return verdict


def lite0_detector(name, value, seed):
    """The Lite0 preset with every default but ``name=value``, fitted with ``random_state=seed`` on the CPU."""
    from sklearn_uflow import UFlowDetector

    return UFlowDetector("efficientnet_lite0", **{name: value}, random_state=seed, device="cpu")


def select_parameter(table, title, name, categories, default, candidates, widths=WIDTHS, seeds=SEEDS):
    """:func:`select_by_screen` for the detector parameter ``name`` (a number), each fit a
    :func:`lite0_detector`; rows ordered by dataset (``categories``' first first), value and seed."""
    return select_by_screen(
        table, title, name, categories, default, candidates, lambda value, seed: lite0_detector(name, value, seed),
        name=name, widths=widths, seeds=seeds, sort_key=lambda row: (row[0] != categories[0], float(row[1]), row[2]),
    )


def lite0_features_detector(name, value, seed):
    """The Lite0 preset with every default but the feature step's ``name=value``, fitted with
    ``random_state=seed`` on the CPU."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    return UFlowDetector(CNNFeatureTransformer("efficientnet_lite0", **{name: value}), random_state=seed,
                         device="cpu")


def select_feature_parameter(table, title, column, name, categories, default, candidates, widths=WIDTHS,
                             seeds=SEEDS, notes=""):
    """:func:`select_by_screen` for the feature step's parameter ``name`` (a tuple), each fit a
    :func:`lite0_features_detector`; rows ordered by dataset (``categories``' first first), the default first,
    value and seed."""
    return select_by_screen(
        table, title, column, categories, default, candidates,
        lambda value, seed: lite0_features_detector(name, value, seed), name=name, widths=widths, seeds=seeds,
        sort_key=lambda row: (row[0] != categories[0], row[1] != str(default[0]), row[1], row[2]), notes=notes,
    )


def main(categories):
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector

    rows, means = score_pairs(
        categories, [(pooling, seed) for pooling in POOLINGS for seed in SEEDS],
        lambda pooling, seed: UFlowDetector(CNNFeatureTransformer("efficientnet_lite0", pooling=pooling),
                                            random_state=seed, device="cpu"),
    )
    chosen, over_seeds, gains = choose(means)
    verdict, summary = rule_summary(over_seeds, gains, chosen)
    write_table(
        "select_over_seeds", "The pooling and the smoothing chosen again over three seeds",
        ["category", "pooling (finest first)", "random_state", "map_smoothing", *FAMILY_COLUMNS], rows,
        notes=FAMILY_NOTES + " Every other parameter at its default. Means over both datasets and the seeds "
              + ", ".join(map(str, SEEDS)) + ": " + summary)
    print(verdict)


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
