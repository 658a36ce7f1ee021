"""Smooth the latents' energy before the likelihood, or the map after it: without test images.

The anomaly map is ``1 - mean_l exp(-u_l / 2 C_l)`` with ``u_l = sum_k z_k^2``
at scale ``l`` (the paper's equation 2), and ``map_smoothing`` has so far
filtered that map. The exponential saturates: a pixel whose energy is 50
times its expectation scores about as high as one at 10 times it, and the
filter then spreads a thin strong defect's saturated score over its
neighbourhood, diluted by the kernel. Filtering the energy ``u_l / C_l``
itself, on each scale's grid, before the exponential, averages the
chi-square statistic over a neighbourhood (a scan statistic): under
normality its spread shrinks with the window, a wide low-contrast change
adds up, and a thin strong one keeps its strength. With no smoothing both
are the paper's map.

Protocol (that of ``select_weight_decay.py``: 10 % of the good *training*
images held out, the same held-out images for every fit, four families of
planted defects, every parameter at its default): the default detector is
fitted with ``random_state`` 0, 1 and 2, and each fit's held-out maps are
made both ways at each width. Both candidates are scored on the same fits,
so they are compared seed by seed.

The rule, written before the run: the pair (domain, width) with the best
mean over both datasets and the three seeds replaces the default pair
(the map, two cells) if it is better by more than 0.1 point on that mean
*and* on each seed; otherwise the defaults stay. Writes
``docs/benchmarks/select_smoothing_domain.rst``.

Usage: ``python benchmarks/select_smoothing_domain.py [category ...]``
"""

import sys

import numpy as np
import torch

from _report import data_dir, write_table
from select_defaults import CATEGORIES, held_out_families, timed_fit
from select_image_context import FAMILY_COLUMNS, FAMILY_NOTES
from select_over_seeds import choose, rule_summary

SEEDS = (0, 1, 2)
WIDTHS = (1.0, 2.0, 3.0, 4.0, 6.0)  # cells of the 64-cell finest grid; the default is 2
DEFAULT = ("map", 2.0)


def energy_smoothed_maps(latents, size, cells):
    """Equation 2 with each scale's energy ``u_l / C_l`` filtered on its own grid by a Gaussian of ``cells``
    cells of the finest grid (the same width in pixels at every scale), before the exponential."""
    from sklearn_uflow._images import resize_maps
    from sklearn_uflow.scoring import smooth_maps

    finest = latents[0].shape[-1]
    likelihood = 0
    for z in latents:
        energy = z.float().pow(2).mean(dim=1).numpy()
        sigma = cells * z.shape[-1] / finest
        energy = smooth_maps(energy, sigma)  # the filter map_smoothing applies, on this scale's grid
        likelihood = likelihood + resize_maps(torch.exp(-0.5 * torch.from_numpy(energy)), size, mode="bilinear")
    return (1.0 - likelihood / len(latents)).numpy()


def score_seed(category, seed, fit_on, families):
    """Rows and ``{(domain, width): mean}`` of one fit of the default detector."""
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    detector = UFlowDetector("efficientnet_lite0", random_state=seed, device="cpu")
    fit_seconds = timed_fit(detector, fit_on)
    latents = [detector.latents(X) for X, _ in families]
    rows, means = [], {}
    for domain in ("map", "energy"):
        for width in WIDTHS:
            values = []
            for (X, masks), z in zip(families, latents):
                if domain == "map":
                    maps = detector.set_params(map_smoothing=width).anomaly_maps(X)
                else:
                    maps = energy_smoothed_maps(z, detector.image_size_, width)
                values += [100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)]
            record(rows, means, category, domain, seed, width, values, fit_seconds)
    return rows, means


def record(rows, means, category, value, seed, width, values, fit_seconds):
    """Add the scores ``values`` of ``value`` fitted with ``seed`` and smoothed by ``width`` to the table's
    ``rows`` and to ``means`` (their mean, keyed ``(value, seed, width)``)."""
    means[value, seed, width] = np.mean(values)
    rows.append([category, value, seed, width, *(f"{v:.2f}" for v in values), f"{np.mean(values):.2f}",
                 f"{fit_seconds:.2f}"])
    print(rows[-1], flush=True)


def score_fits(categories, score_seed, seeds=SEEDS):
    """``score_seed(category, seed, fit_on, families)`` for every category and seed: the rows, and the means
    over both datasets as ``{(value, seed, width): mean}``."""
    from sklearn_uflow.datasets import load_anomaly_folder

    rows, per_category = [], {}
    for category in categories:
        train = load_anomaly_folder(data_dir() / category, image_size=256).train_images
        fit_on, families = held_out_families(train, swaps=True, bands=True)
        for seed in seeds:
            seed_rows, means = score_seed(category, seed, fit_on, families)
            rows += seed_rows
            for key, mean in means.items():
                per_category.setdefault(key, []).append(mean)
    return rows, {key: np.mean(v) for key, v in per_category.items()}


def select_on_fits(table, title, column, name, categories, score_seed, default, notes, columns=FAMILY_COLUMNS,
                   seeds=SEEDS, sort_key=None):
    """:func:`score_fits`, the rule of :func:`select_over_seeds.choose` against ``default``, and the table
    ``docs/benchmarks/<table>.rst`` (``column`` names the candidates, ``name`` the parameter in the verdict,
    ``notes`` come before the means over seeds)."""
    rows, means = score_fits(categories, score_seed, seeds)
    chosen, over_seeds, gains = choose(means, default, seeds)
    verdict, summary = rule_summary(over_seeds, gains, chosen, default, name=name)
    write_table(table, title, ["category", column, "random_state", "map_smoothing", *columns],
                sorted(rows, key=sort_key) if sort_key else rows,
                notes=notes + " Means over both datasets and the seeds " + ", ".join(map(str, seeds)) + ": " + summary)
    print(verdict)


def main(categories):
    select_on_fits("select_smoothing_domain", "Smoothing the energy or the map", "smoothing of", "smoothing",
                   categories, score_seed, DEFAULT,
                   FAMILY_NOTES + " Every parameter at its default; ``map`` filters the anomaly map (the default), "
                   "``energy`` each scale's mean squared latent before the exponential, both with the width in "
                   "cells of the 64-cell finest grid.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
