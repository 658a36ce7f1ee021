"""Accuracy, speed and memory of UFlowDetector on the real datasets.

For each category under the data folder (``$SKLEARN_UFLOW_DATA``, default
``../shared/data``): fit ``UFlowDetector(extractor="efficientnet_lite0")`` with
its defaults on ``train/good`` (images resized to 256x256), then score
``test/``. Each category runs in its own process so that peak memory is its
own. Writes its tables (accuracy, scores by defect type, segmentation
quality) into ``docs/benchmarks/accuracy.rst``, the figure
``docs/_static/miou_vs_epsilon.png`` and one figure of masks per category,
``docs/_static/masks_<dataset>.png``.

Usage: ``python benchmarks/bench_detector.py [category ...]``
"""

import json
import resource
import subprocess
import sys
import time

import numpy as np
from scipy import ndimage

from _report import DOCS, data_dir, write_table
from sklearn_uflow.metrics import mean_iou
from sklearn_uflow.plotting import overlay

STATIC = DOCS.parent / "_static"

EPSILONS = -np.linspace(0, 6, 25)  # log10 epsilon


def _segmentation_scores(masks, predicted, good):
    return {"miou": mean_iou(masks, predicted), "miou_defective": mean_iou(masks, predicted, defective_only=True),
            "good_with_detection": float(predicted[good].any(axis=(1, 2)).mean()),
            "defective_without_detection": float(1 - predicted[~good].any(axis=(1, 2)).mean()),
            "components": float(np.median([ndimage.label(m)[1] for m in predicted[~good]]))}


def _mask_figure(category, images, masks, predicted, defective, n=6):
    """Defective test images spread over the test set, with the true contour
    (green) and the mask's (cyan)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = defective[np.linspace(0, len(defective) - 1, n).round().astype(int)]
    fig, axes = plt.subplots(1, n, figsize=(2.7 * n, 2.9))
    for ax, i in zip(axes, chosen):
        ax.imshow(overlay(images[i], mask=predicted[i], true_mask=masks[i]))
        ax.set_title(f"IoU {mean_iou(masks[i:i + 1], predicted[i:i + 1]):.2f}", fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(STATIC / f"masks_{category.split('/')[0]}.png", dpi=100)
    plt.close(fig)


def run_category(category):
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow.datasets import load_anomaly_folder
    from sklearn_uflow.metrics import aupro, image_roc_auc, pixel_roc_auc

    data = load_anomaly_folder(data_dir() / category, image_size=256)
    detector = UFlowDetector(extractor="efficientnet_lite0", random_state=0, device="cpu")
    start = time.perf_counter()
    detector.fit(data.train_images)
    fit_seconds = time.perf_counter() - start

    test, masks, labels = data.test_images, data.test_masks, data.test_labels
    detector.anomaly_maps(test[:8])  # warm-up
    start = time.perf_counter()
    maps = detector.anomaly_maps(test)
    maps_ms = (time.perf_counter() - start) / len(test) * 1000
    start = time.perf_counter()
    log_nfa = detector.log_nfa_maps(test)
    nfa_ms = (time.perf_counter() - start) / len(test) * 1000
    # Peak memory of loading, fitting and scoring; the metrics below sort
    # every test pixel and would dominate it.
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    good = labels == 0
    by_type = {}
    for kind in sorted(set(data.test_types[~good])):  # each defect type against the good images
        of_kind = data.test_types == kind
        chosen = good | of_kind
        by_type[kind] = {"n_images": int(of_kind.sum()), "pixel_share": float(masks[of_kind].sum() / masks.sum()),
                         "pixel_auroc": pixel_roc_auc(masks[chosen], maps[chosen]),
                         "aupro": aupro(masks[chosen], maps[chosen])}
    # The paper's regions, from the same fit, for comparison.
    detector.segmenter_.set_params(delineation="tree")
    tree_log_nfa = detector.log_nfa_maps(test)
    detector.segmenter_.set_params(delineation="map")
    defective = ~good
    levels = np.quantile(maps[:, ::4, ::4], np.linspace(0.5, 1.0, 201))  # one threshold on the maps
    oracle = max(mean_iou(masks, maps >= t) for t in levels)
    segmentation = {name: _segmentation_scores(masks, nfa <= 0, good)
                    for name, nfa in (("map", log_nfa), ("tree", tree_log_nfa))}
    _mask_figure(category, test, masks, log_nfa <= 0, np.flatnonzero(defective))
    return {
        "category": category,
        "n_train": len(data.train_images), "n_test": len(test),
        "pixel_auroc": pixel_roc_auc(masks, maps), "aupro": aupro(masks, maps),
        "image_auroc_max_map": image_roc_auc(labels, maps.max(axis=(1, 2))),
        "image_auroc_min_log_nfa": image_roc_auc(labels, -log_nfa.min(axis=(1, 2))),
        "fit_seconds": fit_seconds, "fit_seconds_per_image": fit_seconds / len(data.train_images),
        "epochs": len(detector.validation_loss_curve_) or detector.n_iter_, "best_epoch": detector.n_iter_,
        "anomaly_maps_ms": maps_ms, "log_nfa_maps_ms": nfa_ms,
        "segmentation": segmentation,
        "miou_oracle_map": oracle,
        "true_components": float(np.median([ndimage.label(m)[1] for m in masks[defective]])),
        "miou_curve": {name: [mean_iou(masks, nfa <= e) for e in EPSILONS]
                       for name, nfa in (("map", log_nfa), ("tree", tree_log_nfa))},
        "by_type": by_type,
        "peak_rss_gib": peak_gib,
    }


def main(categories):
    results = []
    for category in categories:
        out = subprocess.run([sys.executable, __file__, "--one", category], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    rows = [[r["category"], f"{r['n_train']} / {r['n_test']}", f"{100 * r['pixel_auroc']:.2f}",
             f"{100 * r['aupro']:.2f}", f"{100 * r['image_auroc_max_map']:.2f}",
             f"{100 * r['image_auroc_min_log_nfa']:.2f}", f"{r['fit_seconds']:.1f} ({r['fit_seconds_per_image']:.2f})",
             f"{r['best_epoch']} / {r['epochs']}", f"{r['anomaly_maps_ms']:.1f}", f"{r['log_nfa_maps_ms']:.1f}",
             f"{r['peak_rss_gib']:.2f}"] for r in results]
    write_table(
        "bench_detector", "Detection accuracy, speed and memory",
        ["category", "train / test images", "pixel AUROC", "AUPRO (FPR ≤ 0.3)", "image AUROC (max of map)",
         "image AUROC (min log10 NFA)", "fit s (s per train image)", "best / run epochs",
         "anomaly_maps ms/image", "log_nfa_maps ms/image", "peak RSS GiB (fit + scoring)"],
        rows,
        notes="``UFlowDetector(extractor='efficientnet_lite0', random_state=0)`` with its defaults, images "
              "resized to 256×256, maps at 256×256. Times include feature extraction. Peak RSS is that of the "
              "whole process (about 0.8 GiB of it is importing torch) after loading, fitting and scoring, before "
              "the metrics, which sort every test pixel.")
    rows = [[r["category"], kind, t["n_images"], f"{100 * t['pixel_share']:.1f} %", f"{100 * t['pixel_auroc']:.2f}",
             f"{100 * t['aupro']:.2f}"] for r in results for kind, t in r["by_type"].items()]
    write_table(
        "bench_detector_types", "Accuracy by defect type",
        ["category", "defect type", "test images", "share of the defective pixels", "pixel AUROC", "AUPRO"],
        rows,
        notes="The same fits and maps as above, each defect type scored against the good test images only. "
              "A dataset's pixel AUROC is dominated by the types that hold most of its defective pixels.")
    rows = []
    for r in results:
        for name, label in (("map", "masks (``delineation='map'``)"), ("tree", "the paper's regions (``'tree'``)")):
            seg = r["segmentation"][name]
            rows.append([r["category"], label, f"{seg['miou']:.3f}",
                         f"{r['miou_oracle_map']:.3f} ({seg['miou'] / r['miou_oracle_map']:.2f})",
                         f"{seg['miou_defective']:.3f}", f"{seg['components']:g} / {r['true_components']:g}",
                         f"{100 * seg['good_with_detection']:.1f} %",
                         f"{100 * seg['defective_without_detection']:.1f} %"])
    write_table(
        "bench_segmentation_quality", "Segmentation at ε = 1",
        ["category", "regions", "mIoU", "oracle one-threshold mIoU (ratio)", "mIoU, defective images",
         "regions / true regions per defective image (median)", "good test images with a detection",
         "defective test images with no detection"],
        rows,
        notes="The same fits as above, masks from ``predict_masks`` at ε = 1 and, from the same fit, the paper's "
              "regions (``detector.segmenter_.set_params(delineation='tree')``). mIoU follows the paper (every "
              "test image counts; a good image without detection scores 1). The oracle thresholds the anomaly "
              "maps at the one level that gives the best mIoU on the test masks: for comparison only. The figure "
              "shows mIoU against -log10 ε for both.\n\n.. image:: /_static/miou_vs_epsilon.png")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for k, r in enumerate(results):
        for name, style in (("map", "-"), ("tree", ":")):
            ax.plot(-EPSILONS, r["miou_curve"][name], style, color=f"C{k}", marker="o", markersize=2.5,
                    label=f"{r['category'].split('/')[0]} ({name})")
    ax.set_xlabel("-log10 ε")
    ax.set_ylabel("mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    STATIC.mkdir(exist_ok=True)
    fig.savefig(STATIC / "miou_vs_epsilon.png", dpi=120)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(run_category(sys.argv[2])))
    else:
        root = data_dir()
        main(sys.argv[1:] or sorted(str(p.parent.parent.relative_to(root)) for p in root.glob("*/*/train/good")))
