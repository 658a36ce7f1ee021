"""The experiment harness: any settings of the detector side by side, on the development protocol.

A setting is a JSON object of ``UFlowDetector`` parameters (Lite0 and
``random_state`` unless it says otherwise; ``extractor__*`` keys go to the
feature step), or ``"patchcore"``: PatchCore's score on the same features (a
memory of 60,000 random training cells, the distance to the nearest, a
Gaussian of 4 pixels). Each is fitted on every dataset's good training images
(at 256x256, ``--image-size H W``, or a setting's ``"image_size": [H, W]``)
and scored on its test images; the last rows pool the datasets. A setting's
``"letterbox": true`` fits each image into the frame at its own aspect ratio
(the rest reflected) and scores its map, cropped back, on the squashed grid.
``--n-train N --draws D``: fits on N random training images, D draws (the
few-shot regime). ``--seeds``: full fits over seeds. ``--held-out``: score
held-out training images with planted defects (``planted.py``) instead.
``--any-pose``: every image and mask turned by a random flip or quarter turn.
``--write NAME``: the table into ``docs/benchmarks/`` (its page in
``_report.PAGES``).

Usage::

    python benchmarks/compare.py '{}' '{"augmentation": "none"}' patchcore --n-train 30 --draws 3
"""

import argparse
import json
import shlex
import sys
import time

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F

from _report import data_dir, write_table
from planted import held_out_set

CATEGORIES = ("hazelnut_toy/hazelnut_toy", "mpdd/metal_plate", "magnetic_tile/magnetic_tile")
MEMORY = 60_000  # PatchCore's memory, in cells at most
SIGMA = 4.0  # pixels, PatchCore's filter


def patchcore_maps(extractor, train, test, seed=0):
    """PatchCore's anomaly maps on a fitted feature step's two coarser scales."""
    def cells(images):
        out = []
        for start in range(0, len(images), 16):
            finer, coarser = extractor.extract(images[start : start + 16])[-2:]
            coarser = F.interpolate(coarser, size=finer.shape[-2:], mode="bilinear", align_corners=False)
            out.append(torch.cat([finer, coarser], 1))
        return torch.cat(out)

    memory = cells(train)
    memory = memory.permute(0, 2, 3, 1).reshape(-1, memory.shape[1])
    if len(memory) > MEMORY:
        memory = memory[torch.randperm(len(memory), generator=torch.Generator().manual_seed(seed))[:MEMORY]]
    queries = cells(test)
    n, channels, h, w = queries.shape
    queries = queries.permute(0, 2, 3, 1).reshape(-1, channels)
    distance = torch.cat([torch.cdist(queries[i : i + 4096], memory).min(1).values
                          for i in range(0, len(queries), 4096)])
    maps = F.interpolate(distance.reshape(n, 1, h, w), size=test.shape[1:3], mode="bilinear", align_corners=False)
    return gaussian_filter(maps[:, 0].numpy(), (0, SIGMA, SIGMA))


def any_pose(data, seed=0):
    """The dataset, each image (and its mask) turned in place by a random one of the eight symmetries."""
    from sklearn_uflow.symmetries import apply_symmetry, symmetries

    eight = symmetries("eight", data.train_images.shape[1:3])
    rng = np.random.default_rng(seed)

    def turn(images):
        return np.stack([apply_symmetry(image[None], eight[k])[0]
                         for image, k in zip(images, rng.integers(len(eight), size=len(images)))])

    data.train_images = turn(data.train_images)
    state = rng.bit_generator.state  # the test masks take the same turns as their images
    data.test_images = turn(data.test_images)
    rng.bit_generator.state = state
    data.test_masks = turn(data.test_masks)
    return data


def letterbox(data, root):
    """The dataset with each image read at its own aspect ratio, scaled to fit the frame, the rest of the frame
    filled by reflection; ``data.boxes`` says where each test image lies, to crop its map back."""
    from sklearn_uflow.datasets import read_image, resize_image

    size = data.train_images.shape[1:3]

    def fit(files):
        out, boxes = [], []
        for file in files:
            image = read_image(root / file, color=data.color)
            scale = min(size[0] / image.shape[0], size[1] / image.shape[1])
            inner = [max(1, round(side * scale)) for side in image.shape[:2]]
            top, left = (size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2
            pad = [(top, size[0] - inner[0] - top), (left, size[1] - inner[1] - left)] + [(0, 0)] * (image.ndim - 2)
            out.append(np.pad(resize_image(image, inner), pad, mode="reflect"))
            boxes.append((slice(top, top + inner[0]), slice(left, left + inner[1])))
        return np.stack(out), boxes

    data.train_images = fit(data.train_files)[0]
    data.test_images, data.boxes = fit(data.test_files)
    return data


def evaluate(setting, train, data, seed):
    """Fit one setting and score the test images: figures, fit time, and what the fit chose."""
    from sklearn_uflow import CNNFeatureTransformer, UFlowDetector
    from sklearn_uflow.metrics import aupro, image_roc_auc, mean_iou, pixel_roc_auc

    start = time.perf_counter()
    detected = np.full(len(data.test_images), np.nan)
    if setting == "patchcore":
        extractor = CNNFeatureTransformer("efficientnet_lite0", device="cpu").fit(train[:1])
        maps = patchcore_maps(extractor, train, data.test_images, seed)
        scores, chosen, held_out_bpd = -maps.max(axis=(1, 2)), "", np.nan
        fit_seconds = score_ms = float("nan")
    else:
        params = {"extractor": "efficientnet_lite0", "random_state": seed, "device": "cpu", **setting}
        extractor = {k.removeprefix("extractor__"): v for k, v in params.items() if k.startswith("extractor__")}
        if extractor:  # e.g. {"extractor__input_size": "auto"}
            params = {k: v for k, v in params.items() if not k.startswith("extractor__")}
            params["extractor"] = CNNFeatureTransformer(params["extractor"], **extractor)
        detector = UFlowDetector(**params).fit(train)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        maps, log_nfa = detector.maps_and_log_nfa(data.test_images)
        score_ms = 1000 * (time.perf_counter() - start) / len(maps)
        scores = log_nfa.min(axis=(1, 2))  # score_samples
        detected = scores <= np.log10(detector.epsilon)  # predict, with contamination="auto"
        chosen = detector.augmentation_
        held_out_bpd = detector.best_validation_loss_ if detector.best_validation_loss_ is not None else np.nan
        curve = detector.segmenter_.false_alarm_curve_
        if curve is not None:  # the false alarms measured on the held-out images
            print("  held-out images flagged at epsilon", dict(zip(curve["epsilon"].round(3).tolist(),
                                                                  curve["images_flagged"].round(3).tolist())))
        record = {"n_splits": detector.n_splits_, "n_iter": detector.n_iter_, "seconds": detector.fit_seconds_,
                  "held_out_bpd": held_out_bpd,
                  **{f"bpd_{k}": v for k, v in detector.augmentation_validation_loss_.items()}}
        print("  fit:", {k: v if isinstance(v, (int, str)) else float(f"{v:.3g}") for k, v in record.items()},
              flush=True)
    if "boxes" in data:  # letterboxed: each map cropped to its image and scored on the squashed image's grid
        maps = np.concatenate([F.interpolate(torch.from_numpy(np.ascontiguousarray(m[box]))[None, None],
                                             size=m.shape, mode="bilinear", align_corners=False)[0].numpy()
                               for m, box in zip(maps, data.boxes)])
    masks = data.test_masks.astype(bool)
    good = data.test_labels == 0
    # Where a miss comes from: a threshold just below every good image would find it (the test's limit), or
    # no threshold would (the map's limit).
    reachable = scores[~good] < scores[good].min()
    return {"pixel AUROC": 100 * pixel_roc_auc(masks, maps), "AUPRO": 100 * aupro(masks, maps),
            "image AUROC": 100 * image_roc_auc(data.test_labels, -scores),
            "good detected %": 100 * np.mean(detected[good]), "defective missed %": 100 * (1 - np.mean(detected[~good])),
            "missed, test's limit %": 100 * np.mean(~detected[~good] & reachable),
            "missed, map's limit %": 100 * np.mean(~detected[~good] & ~reachable),
            "defective mIoU": mean_iou(masks[~good], log_nfa[~good] <= np.log10(detector.epsilon))
            if setting != "patchcore" else np.nan,
            "held-out bpd": held_out_bpd, "fit s/image": fit_seconds / len(train), "scoring ms/image": score_ms,
            "chosen": chosen}


def main():
    from sklearn_uflow.datasets import load_anomaly_folder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="JSON objects of UFlowDetector parameters, or 'patchcore'")
    parser.add_argument("--categories", nargs="+", default=CATEGORIES)
    parser.add_argument("--n-train", type=int, default=None, help="training images per fit (default: all)")
    parser.add_argument("--draws", type=int, default=3, help="random draws of the training images with --n-train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of full fits")
    parser.add_argument("--image-size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"),
                        help="images are loaded at H x W (default 256 256)")
    parser.add_argument("--held-out", action="store_true", help="score held-out training images, planted")
    parser.add_argument("--any-pose", action="store_true", help="turn each image by a random symmetry")
    parser.add_argument("--write", metavar="NAME", help="write the table NAME into docs/benchmarks/")
    parser.add_argument("--title", default="Settings compared on the development set")
    args = parser.parse_args()
    settings = [s if s == "patchcore" else json.loads(s) for s in args.settings]
    names = [s if s == "patchcore" else json.dumps(s, sort_keys=True) if s else "defaults" for s in settings]
    seeds = range(args.draws) if args.n_train else args.seeds
    if (args.any_pose or args.held_out) and any(s != "patchcore" and s.get("letterbox") for s in settings):
        # Both replace or turn the test images, which the letterbox's crop boxes would no longer fit.
        parser.error("a letterboxed setting takes neither --any-pose nor --held-out")

    results, n_images = {}, {}  # (category, name) -> figures per seed; category -> training images per fit
    for category in args.categories:
        loaded = {}  # (image size, letterboxed) -> the dataset loaded so

        def load(size, boxed):
            if (size, boxed) not in loaded:
                data = load_anomaly_folder(data_dir() / category, image_size=size)
                if boxed:
                    data = letterbox(data, data_dir() / category)
                if args.any_pose:
                    data = any_pose(data)
                if args.held_out:
                    data.train_images, held_out = held_out_set(data.train_images)
                    data.update(held_out)
                loaded[size, boxed] = data
            return loaded[size, boxed]

        for seed in seeds:
            for setting, name in zip(settings, names):
                size, boxed = tuple(args.image_size), False
                if setting != "patchcore":  # the harness's keys, not parameters
                    setting = dict(setting)
                    size, boxed = tuple(setting.pop("image_size", size)), setting.pop("letterbox", False)
                data = load(size, boxed)
                train = data.train_images
                if args.n_train and args.n_train < len(train):
                    train = train[np.sort(np.random.default_rng(seed).choice(len(train), args.n_train,
                                                                             replace=False))]
                n_images[category] = len(train)
                figures = evaluate(setting, train, data, seed)
                results.setdefault((category, name), []).append(figures)
                print(category, seed, name, {k: round(v, 2) if isinstance(v, float) else v
                                             for k, v in figures.items()}, flush=True)

    category_0 = args.categories[0]
    metrics = ("pixel AUROC", "AUPRO", "image AUROC", "good detected %", "defective missed %",
               "missed, test's limit %", "missed, map's limit %", "defective mIoU", "held-out bpd", "fit s/image",
               "scoring ms/image")
    rows = []
    for category in [*args.categories, "pooled"]:
        for name in names:
            if category == "pooled":  # per seed, the mean over datasets
                runs = [{k: np.mean([results[c, name][i][k] for c in args.categories]) if k != "chosen" else ""
                         for k in results[category_0, name][i]} for i in range(len(seeds))]
                runs += [{"chosen": f["chosen"]} for c in args.categories for f in results[c, name]]
            else:
                runs = results[category, name]
            row = [category, name, n_images.get(category, "")]
            for metric in metrics:
                values = np.array([f[metric] for f in runs if metric in f])
                row.append("" if np.isnan(values).all() else
                           f"{values.mean():.2f}" + (f" ± {values.std():.2f}" if len(values) > 1 else ""))
            chosen = sorted({f["chosen"] for f in runs if f["chosen"]})
            row.append(", ".join(f"{c} ({sum(f['chosen'] == c for f in runs)})" for c in chosen))
            rows.append(row)
    scored = ("10 % of the good training images, held out of the fit, as they are and with planted defects"
              if args.held_out else "the test images")
    regime = (f"images at {args.image_size[0]}×{args.image_size[1]} (or a setting's ``image_size``); "
              + ("every image turned by a random flip or quarter turn; " if args.any_pose else "")
              + (f"{args.n_train} training images, {args.draws} random draws (mean ± sd)" if args.n_train
                 else f"all training images, seeds {list(seeds)}"))
    header = ["dataset", "setting", "train images", *metrics, "augmentation chosen (fits)"]
    if args.write:
        write_table(args.write, args.title, header, rows,
                    notes=f"Fitted on {regime}, scored on {scored}; pooled: the mean over "
                          "datasets (and draws or seeds). ``python benchmarks/compare.py "
                          f"{shlex.join(sys.argv[1:])}``.")
    else:
        for row in [header, *rows]:
            print(" | ".join(map(str, row)))


if __name__ == "__main__":
    main()
