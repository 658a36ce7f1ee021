"""What each scale's latents give on the test images: a diagnostic, not a selection.

Equation 2 averages the likelihood maps of every scale. This script fits
``UFlowDetector(extractor="efficientnet_lite0")`` with its defaults on
``train/good`` (256x256), once for each of the seeds 0, 1 and 2, and scores the test images with the map
of equation 2 restricted to each subset of the scales (each alone, each pair,
all three), unsmoothed and with the default smoothing, all from the same
latents. If no subset nor width of a fit reaches a target, the map's
combination and filtering cannot: the latents must change.

Nothing here chooses a default. Writes ``docs/benchmarks/bench_scales.rst``.

Usage: ``python benchmarks/bench_scales.py [category ...]``
"""

import sys
from itertools import combinations

from _report import write_table
from bench_false_positives import rows_of_default_fits
from select_defaults import CATEGORIES

SEEDS = (0, 1, 2)


def scale_rows(category, detector, images, masks):
    """One row per subset of the scales and per width, from one pass of the flow."""
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    latents = detector.latents(images)
    strides = [detector.image_size_[0] // h for _, h, _ in detector.latent_shapes_]
    n_scales = len(latents)
    rows = []
    for size in range(n_scales, 0, -1):
        for subset in combinations(range(n_scales), size):
            for name, width in (("none", 0.0), ("auto", "auto")):
                # the detector's own map (equation 2, then map_smoothing) of these scales' latents
                smoothed = detector.set_params(map_smoothing=width)._map([latents[s] for s in subset])
                rows.append([category, detector.random_state, " + ".join(str(strides[s]) for s in subset), name,
                             f"{100 * pixel_roc_auc(masks, smoothed):.2f}", f"{100 * aupro(masks, smoothed):.2f}"])
                print(rows[-1], flush=True)
    return rows


def main(categories):
    rows = rows_of_default_fits(categories, scale_rows, SEEDS)
    write_table(
        "bench_scales", "Each scale's share of the map, on the test images (a diagnostic)",
        ["category", "random_state", "scales (stride)", "map_smoothing", "pixel AUROC", "AUPRO (FPR ≤ 0.3)"],
        rows,
        notes="``UFlowDetector(extractor='efficientnet_lite0')`` with its defaults, one fit per seed; the map "
              "of equation 2 over the scales named (their latents' strides in pixels of the 256×256 image), from "
              "the fit's latents, unsmoothed and with the default width. Scored on test images to show what "
              "limits the maps, never to choose a default.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
