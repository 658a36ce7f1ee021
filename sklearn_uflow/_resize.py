"""Sizes and resizing without torch: the sizes ``"auto"`` reads images at, and the maps that follow the graph in the
runtime and the files a run writes.

Nearest neighbour for maps of labels or NFA values, whose values must not be
invented; bilinear for scores. Both take pixel centres, as torch's
``"nearest-exact"`` and ``"bilinear"`` (``align_corners=False``) do.
"""

import math

import numpy as np

__all__ = ["AUTO_AREA", "aspect_size", "resize_bilinear", "resize_nearest"]

# "auto" sizes: about as many pixels as the default 256x256.
AUTO_AREA = 256 * 256


def aspect_size(image_size, step, area=AUTO_AREA):
    """``(H, W)`` with the aspect ratio of ``image_size``, about ``area``
    pixels, each side a multiple of ``step`` (at least ``step``)."""
    height = math.sqrt(area * image_size[0] / image_size[1])
    return tuple(max(step, round(side / step) * step) for side in (height, area / height))


def _nearest_source(n_in, n_out):
    # The pixel whose centre is nearest: floor((i + 1/2) * n_in / n_out), in integers, so exact at every ratio
    # (torch's "nearest-exact" computes it in floating point and differs from it by one pixel at some ratios).
    return np.minimum((2 * np.arange(n_out) + 1) * n_in // (2 * n_out), n_in - 1)


def resize_nearest(image, size):
    """Resize a 2-D map to ``size = (H, W)`` by nearest neighbour (pixel centres, as ``"nearest-exact"``).

    Nearest neighbour repeats values and never creates new ones, which is what
    a map of region labels or NFA values needs.
    """
    if tuple(image.shape) == tuple(size):
        return image
    return image[np.ix_(_nearest_source(image.shape[0], size[0]), _nearest_source(image.shape[1], size[1]))]


def _bilinear_weights(n_in, n_out):
    # torch's area_pixel_compute_source_index, in float32 as torch computes it for float32 maps: centre-aligned,
    # clamped at 0; the upper neighbour clamped at the end.
    scale = np.float32(n_in) / np.float32(n_out)
    source = np.maximum(scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                        np.float32(0))
    lower = np.minimum(source.astype(np.int64), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    return lower, upper, source - lower.astype(np.float32)


def resize_bilinear(image, size):
    """Resize a 2-D map to ``size = (H, W)`` bilinearly, as torch's ``interpolate(mode="bilinear")``.

    Pixel centres aligned (``align_corners=False``), no antialiasing, in
    float32; the values agree with torch's to float32 rounding.
    """
    if tuple(image.shape) == tuple(size):
        return image
    image = np.asarray(image, dtype=np.float32)
    # Along the rows first, then between rows: torch's order of operations, so mostly its very bits.
    low, high, weight = _bilinear_weights(image.shape[1], size[1])
    columns = (1 - weight) * image[:, low] + weight * image[:, high]
    low, high, weight = _bilinear_weights(image.shape[0], size[0])
    return (1 - weight[:, None]) * columns[low] + weight[:, None] * columns[high]
