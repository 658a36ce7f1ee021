"""Command line: ``sklearn-uflow run`` fits on good images and writes results.

``sklearn-uflow run [FOLDER] -o OUT`` fits a detector on ``FOLDER/train/good``
(an MVTec-layout folder) or, without ``FOLDER``, on synthetic
:func:`~sklearn_uflow.datasets.make_defects` images; then it writes, for
every test image, the anomaly map, the mask and an overlay as PNG files, and
a ``results.csv`` with the image scores and decisions.
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]


def _save_png(array, path):
    from PIL import Image

    Image.fromarray(array).save(path)


def run(args):
    from . import CNNFeatureTransformer, MSCaiTTransformer, UFlowDetector
    from .datasets import load_anomaly_folder, make_defects
    from .metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc
    from .plotting import heatmap, overlay

    if args.folder is None:
        X, y, masks = make_defects(n_samples=args.n_synthetic, image_size=args.image_size, random_state=args.seed)
        train, test, test_masks = X[y == 0][: len(X) // 4], X, masks
        test_names = [f"synthetic_{i:03d}" for i in range(len(X))]
        labels = y
        print(f"synthetic data: {len(train)} good training images, {len(test)} test images")
    else:
        data = load_anomaly_folder(args.folder, image_size=args.image_size)
        train, test, test_masks, labels = data.train_images, data.test_images, data.test_masks, data.test_labels
        test_names = [name.replace("/", "_").rsplit(".", 1)[0] for name in data.test_files]
        print(f"{args.folder}: {len(train)} good training images, {0 if test is None else len(test)} test images")
    if args.extractor == "mscait":
        extractor = MSCaiTTransformer()
    else:
        extractor = CNNFeatureTransformer(args.extractor, input_size=args.input_size)
    detector = UFlowDetector(extractor, max_epochs=args.max_epochs, epsilon=args.epsilon, device=args.device,
                             random_state=args.seed, verbose=1)
    start = time.perf_counter()
    detector.fit(train)
    print(f"fitted in {time.perf_counter() - start:.1f} s (best epoch {detector.history_['best_epoch']}, "
          f"validation {min(detector.history_.get('val_bpd') or detector.history_['train_bpd']):.4f} bits/dim)")
    if test is None:
        return 0
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    maps = detector.anomaly_maps(test)
    log_nfa = detector.log_nfa_maps(test)
    predicted = log_nfa <= np.log10(args.epsilon)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "max_anomaly_score", "min_log10_nfa", "anomalous"])
        for name, image, amap, mask, nfa in zip(test_names, test, maps, predicted, log_nfa):
            _save_png(heatmap(amap), out / f"{name}_map.png")
            _save_png(mask.astype(np.uint8) * 255, out / f"{name}_mask.png")
            _save_png(overlay(image, amap, mask), out / f"{name}_overlay.png")
            writer.writerow([name, f"{amap.max():.6f}", f"{nfa.min():.3f}", int(mask.any())])
    print(f"wrote {3 * len(test)} PNG files and results.csv to {out}")
    if labels is not None and 0 < labels.sum() < len(labels):
        print(f"pixel ROC AUC {pixel_roc_auc(test_masks, maps):.4f}  AUPRO {aupro(test_masks, maps):.4f}  "
              f"image ROC AUC {image_roc_auc(labels, maps.max(axis=(1, 2))):.4f}  "
              f"mIoU {mean_iou(test_masks, predicted):.4f}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="sklearn-uflow", description="U-Flow anomaly detection and segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="fit on good images and write anomaly maps, masks and overlays")
    p.add_argument("folder", nargs="?", help="MVTec-layout folder (default: synthetic make_defects data)")
    p.add_argument("-o", "--output", default="uflow-output", help="output folder (default: uflow-output)")
    p.add_argument("--extractor", default="efficientnet_lite0",
                   choices=["efficientnet_lite0", "resnet18", "wide_resnet50_2", "mscait"])
    p.add_argument("--image-size", type=int, default=256, help="images are resized to this size")
    p.add_argument("--input-size", type=int, default=256, help="backbone input size (CNNs)")
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--epsilon", type=float, default=1.0, help="NFA threshold of the masks")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-synthetic", type=int, default=80, help="images of the synthetic demo")
    p.set_defaults(func=run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"sklearn-uflow: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
