"""Where the maps put a defect: small blobs planted in held-out training images.

The maps place each scale's latent cell ``i`` at ``(i + 1/2)`` cells, the
centre that bilinear upsampling with ``align_corners=False`` assumes. That
is where a cell looks only for a backbone whose strided convolutions are
padded symmetrically. ``tf_efficientnet_lite0`` keeps TensorFlow's "SAME"
padding, which pads its stride-2 convolutions by one more pixel at the bottom
and right than at the top and left: the geometric centre of a cell's
receptive field lies ``stride / 2 - 1/2`` input pixels below and right of
the assumed one, 1.5, 3.5 and 7.5 pixels at strides 4, 8 and 16 (the
ResNets' symmetric padding puts it as far above and left). Its trained
weights need not follow that geometry, so this script measures where a defect
actually shows up.

For each category under the data folder, the Lite0 detector (its defaults,
``random_state=0``) is fitted on the good training images less 10 held out.
Into each held-out image, one at a time, a square blob of 6×6 pixels of one
random grey level is planted at a random position at least 64 pixels from the
border. Three offsets, from the blob's centre to a centroid, are measured:

* "receptive field": the centroid of the gradient's magnitude, on the input,
  of a cell's Lite0 features with every weight set to its kernel's mean,
  against the cell's assumed centre (the geometry alone);
* "features": the centroid of the squared change of each scale's
  standardised features (the flow's input);
* "map": the centroid of the increase of equation 2's map of each scale
  alone (:func:`~sklearn_uflow.scoring.anomaly_map` of its latents), and of
  the whole smoothed anomaly map.

Offsets are in pixels of the 256×256 image, rows then columns; positive is
down or right. Writes ``docs/benchmarks/bench_alignment.rst``.

Usage: ``python benchmarks/bench_alignment.py [category ...]``
"""

import sys

import numpy as np
import torch

from _report import data_dir, write_table
from select_defaults import CATEGORIES

N_HELD_OUT = 10
BLOBS_PER_IMAGE = 12
BLOB = 6  # pixels a side
MARGIN = 64  # blob centres this far from the border, so that no window is cut by it
SIZE = 256
WINDOW = 32  # pixels either side of a blob's centre: two cells of the coarsest scale


def centroid_offsets(maps, centres, window=WINDOW):
    """Mean and standard error of the offset from each blob's centre to the centroid of its map within
    ``window`` pixels of it (None: the whole map), in pixels. The window keeps out what planting a blob
    changes far from it (the image's context, which every coupling sees), which would pull the centroid
    towards the image's middle."""
    rows, cols = np.mgrid[: maps.shape[1], : maps.shape[2]] + 0.5  # pixel centres
    weights = maps
    if window is not None:
        weights = maps * ((np.abs(rows - centres[:, :1, None]) <= window)
                          & (np.abs(cols - centres[:, 1:, None]) <= window))
    weights = weights / weights.sum(axis=(1, 2), keepdims=True)
    offsets = np.stack([(weights * rows).sum(axis=(1, 2)), (weights * cols).sum(axis=(1, 2))], 1) - centres
    return offsets.mean(0), offsets.std(0, ddof=1) / np.sqrt(len(offsets))


def receptive_field_offsets(step):
    """Per scale, the offset of a middle cell's receptive field from its assumed centre: the gradient of
    the cell's features, with every convolution's weights set to its kernel's mean, as a probe of the
    padding's geometry alone. Max pooling is averaged, whose gradient would pick one corner."""
    import copy

    model = copy.deepcopy(step.model_).float()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.MaxPool2d):
                setattr(parent, name, torch.nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    # Small enough that no ReLU6 saturates, which would zero the gradient.
    x = torch.full((1, 3, SIZE, SIZE), 0.01, requires_grad=True)
    offsets = []
    for maps in model(x.contiguous(memory_format=torch.channels_last)):
        cell = maps.shape[-1] // 2
        stride = SIZE // maps.shape[-1]
        (grad,) = torch.autograd.grad(maps[0, :, cell, cell].sum(), x, retain_graph=True)
        centre = np.full((1, 2), (cell + 0.5) * stride)
        offsets.append(centroid_offsets(grad[0].abs().sum(0)[None].numpy(), centre, window=None)[0])
    return offsets


def run_category(category):
    from sklearn_uflow import UFlowDetector
    from sklearn_uflow._images import resize_maps
    from sklearn_uflow.datasets import load_anomaly_folder
    from sklearn_uflow.scoring import anomaly_map

    train = load_anomaly_folder(data_dir() / category, image_size=SIZE).train_images
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train))
    held_out, fit_on = train[order[:N_HELD_OUT]], train[order[N_HELD_OUT:]]
    detector = UFlowDetector(extractor="efficientnet_lite0", random_state=0, device="cpu").fit(fit_on)

    clean_index = np.repeat(np.arange(N_HELD_OUT), BLOBS_PER_IMAGE)
    planted = held_out[clean_index].copy()
    centres = rng.integers(MARGIN, SIZE - MARGIN, (len(planted), 2))
    for image, (r, c) in zip(planted, centres):
        image[r - BLOB // 2 : r + BLOB // 2, c - BLOB // 2 : c + BLOB // 2] = rng.integers(0, 256)
    centres = centres.astype(float)  # pixels r - 3 .. r + 2 span [r - 3, r + 3]: centred on r

    step = detector.extractor_
    rows = []
    for s, offset in enumerate(receptive_field_offsets(step)):
        rows.append([category, "receptive field", f"stride {SIZE // detector.feature_shapes_[s][1]}", offset, None])

    def standardised(images):
        return [(f - getattr(detector.flow_, f"mean_{s}")) * torch.exp(-getattr(detector.flow_, f"log_std_{s}"))
                for s, f in enumerate(step.extract(images))]

    clean_features, planted_features = standardised(held_out), standardised(planted)
    clean_latents, planted_latents = detector.latents(held_out), detector.latents(planted)
    for s, (cf, pf, cz, pz) in enumerate(zip(clean_features, planted_features, clean_latents, planted_latents)):
        stride = f"stride {SIZE // cf.shape[-1]}"
        change = (pf - cf[clean_index]).pow(2).sum(1)
        rows.append([category, "features", stride, *centroid_offsets(
            resize_maps(change, (SIZE, SIZE)).numpy(), centres)])
        increase = (anomaly_map([pz], (SIZE, SIZE)) - anomaly_map([cz[clean_index]], (SIZE, SIZE))).clamp_min(0)
        rows.append([category, "map", stride, *centroid_offsets(increase.numpy(), centres)])
    increase = np.clip(detector.anomaly_maps(planted) - detector.anomaly_maps(held_out)[clean_index], 0, None)
    rows.append([category, "map", "all scales, smoothed", *centroid_offsets(increase, centres)])
    return rows


def main(categories):
    rows = [row for category in categories for row in run_category(category)]
    table = [[category, what, scale, f"{mean[0]:+.2f}, {mean[1]:+.2f}",
              "" if error is None else f"{error[0]:.2f}, {error[1]:.2f}"]
             for category, what, scale, mean, error in rows]
    write_table(
        "bench_alignment", "Where the maps put a defect",
        ["category", "centroid of", "scale", "offset from the blob (rows, columns), px", "standard error, px"],
        table,
        notes=f"``UFlowDetector(extractor='efficientnet_lite0', random_state=0)`` fitted on the good training images "
              f"less {N_HELD_OUT} held out, each of which gets {BLOBS_PER_IMAGE} blobs of {BLOB}×{BLOB} pixels, one "
              "at a time. Offsets in pixels of the 256×256 image; positive is down or right. The receptive-field "
              "rows are the padding's geometry (a middle cell, weights set to their kernel's mean); the others, "
              "where the trained backbone and flow put a planted blob.")


if __name__ == "__main__":
    main(sys.argv[1:] or CATEGORIES)
