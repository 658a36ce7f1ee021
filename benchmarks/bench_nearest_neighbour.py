"""The flow against a nearest-neighbour score on the same features: a diagnostic, not a selection.

PatchCore, what users would pick instead of U-Flow (the detector's targets
name it), scores a cell by its distance to the nearest cell of the training
images' features. This script gives that score the Lite0 preset's own pooled
features (``CNNFeatureTransformer("efficientnet_lite0")``, its stride-8 and
stride-16 maps, the latter upsampled to the former's grid and concatenated,
as PatchCore does with its two layers), with every training cell as memory,
or a random 60,000 of them where there are more (PatchCore subsamples its
memory too), the Euclidean distance upsampled bilinearly to 256x256, and
PatchCore's Gaussian filter of 4 pixels. It asks whether the features or the
flow hold the targets back.

Each score is computed twice, with the default ``UFlowDetector`` beside it
(``random_state=0``, fitted on the same images): on the test images, and on
the pooled held-out score of ``select_pooled_score.py`` (10 % of the good
training images held out, clean and with the four families of planted
defects), on which every default was chosen. If the two evaluations rank the
scores differently, the planted defects are not standing in for the test
defects on that comparison.

Nothing here chooses a default. Writes ``docs/benchmarks/bench_nearest_neighbour.rst``.

Usage: ``python benchmarks/bench_nearest_neighbour.py [category ...]``
"""

import sys
import time

import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F

from _report import data_dir, write_table
from select_defaults import CATEGORIES, held_out_families
from select_pooled_score import pooled

MEMORY = 60_000  # cells at most
SIGMA = 4.0  # pixels, PatchCore's filter


def patch_features(extractor, images, batch_size=16):
    """``(n, C, h, w)``: the stride-16 map upsampled to the stride-8 grid and concatenated to it."""
    out = []
    for start in range(0, len(images), batch_size):
        _, finer, coarser = extractor.extract(images[start : start + batch_size])
        coarser = F.interpolate(coarser, size=finer.shape[-2:], mode="bilinear", align_corners=False)
        out.append(torch.cat([finer, coarser], 1))
    return torch.cat(out)


def nearest_neighbour_maps(extractor, train, images, seed=0):
    """Each cell's distance to its nearest training cell, at the images' size; the memory's size, and the
    training cells'."""
    memory = patch_features(extractor, train)
    memory = memory.permute(0, 2, 3, 1).reshape(-1, memory.shape[1])
    n_cells = len(memory)
    if len(memory) > MEMORY:
        memory = memory[torch.randperm(len(memory), generator=torch.Generator().manual_seed(seed))[:MEMORY]]
    queries = patch_features(extractor, images)
    n, channels, h, w = queries.shape
    queries = queries.permute(0, 2, 3, 1).reshape(-1, channels)
    distance = torch.cat([torch.cdist(queries[i : i + 4096], memory).min(1).values
                          for i in range(0, len(queries), 4096)])
    maps = F.interpolate(distance.reshape(n, 1, h, w), size=images.shape[1:3], mode="bilinear", align_corners=False)
    return gaussian_filter(maps[:, 0].numpy(), (0, SIGMA, SIGMA)), len(memory), n_cells


def rows_of(category, evaluation, train, images, masks):
    """The flow's and the nearest neighbour's rows for one category and one evaluation set."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.metrics import aupro, pixel_roc_auc

    def row(score, maps, memory, seconds):
        auroc, pro = 100 * pixel_roc_auc(masks, maps), 100 * aupro(masks, maps)
        print(category, evaluation, score, f"{auroc:.2f} {pro:.2f}", flush=True)
        return [category, evaluation, score, memory, f"{auroc:.2f}", f"{pro:.2f}", f"{(auroc + pro) / 2:.2f}",
                f"{seconds:.0f}"]

    start = time.perf_counter()
    detector = UFlowDetector(extractor="efficientnet_lite0", random_state=0, device="cpu").fit(train)
    flow_maps = detector.anomaly_maps(images)
    rows = [row("U-Flow (defaults)", flow_maps, "", time.perf_counter() - start)]
    start = time.perf_counter()
    extractor = CNNFeatureTransformer("efficientnet_lite0", device="cpu").fit(train[:1])
    maps, memory, n_cells = nearest_neighbour_maps(extractor, train, images)
    rows.append(row("nearest neighbour", maps, f"{memory:,} of {n_cells:,}",
                    time.perf_counter() - start))
    return rows


def main(categories):
    from sklearn_uflow.datasets import load_anomaly_folder

    rows = []
    for category in categories:
        data = load_anomaly_folder(data_dir() / category, image_size=256)
        rows += rows_of(category, "test images", data.train_images, data.test_images, data.test_masks.astype(bool))
        fit_on, families = held_out_families(data.train_images, swaps=True, bands=True)
        rows += rows_of(category, "held-out, pooled", fit_on, *pooled(families))
    write_table(
        "bench_nearest_neighbour", "The flow and a nearest-neighbour score on the same features (a diagnostic)",
        ["category", "evaluated on", "score", "memory (cells)", "pixel AUROC", "AUPRO (FPR ≤ 0.3)", "mean",
         "fit and scoring s"],
        rows,
        notes="``UFlowDetector(extractor='efficientnet_lite0', random_state=0)`` with its defaults, and the "
              "distance of each cell of the preset's pooled stride-8 and stride-16 features (upsampled to the "
              "stride-8 grid, concatenated) to its nearest cell among the training images' (a random 60,000 "
              "where there are more), upsampled to 256×256 and filtered by a Gaussian of 4 pixels, as PatchCore "
              "scores. Both fitted on the good training images and scored on the test images, then fitted on 90 % "
              "of them and scored on the pooled held-out images of ``select_pooled_score.py``. The test rows "
              "show what limits the maps, never choose a default.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
