"""Planted defects: four families of synthetic defects on good 256x256 images.

``compare.py --held-out`` fits on 90 % of the good training images and scores
the other 10 % as they are and with these defects (the protocol on which the
defaults were chosen, see the docs' "How the defaults were chosen"): small
spots and scratches, large regions of changed brightness, contrast or
sharpness, texture swaps from another image, and bands of another finish
along an edge. Each family returns the images and their masks.
"""

import numpy as np
from scipy.ndimage import gaussian_filter
from sklearn.utils import Bunch

FAMILIES = ("small", "large", "swaps", "bands")


def _inside_ellipse(shape, a, b, cy, cx, angle):
    """The pixels inside an ellipse of half-axes ``a`` and ``b``, centre ``(cy, cx)``, turned by ``angle``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    u = ((yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)) / a
    v = (-(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)) / b
    return u**2 + v**2 <= 1


def _ellipse(shape, rng):
    h, w = shape
    a, b = np.exp(rng.uniform(np.log(3), np.log(30), 2))
    if rng.random() < 0.3:
        a, b = rng.uniform(20, 60), rng.uniform(1, 2.5)
    cy, cx, angle = rng.uniform(40, h - 40), rng.uniform(40, w - 40), rng.uniform(0, np.pi)
    return _inside_ellipse(shape, a, b, cy, cx, angle)


def _large_ellipse(shape, rng):
    """Half-axes of 30 to 100 pixels, centred in the middle half of the image."""
    h, w = shape
    a, b = rng.uniform(30, 100, 2)
    cy, cx, angle = rng.uniform(h / 4, 3 * h / 4), rng.uniform(w / 4, 3 * w / 4), rng.uniform(0, np.pi)
    return _inside_ellipse(shape, a, b, cy, cx, angle)


def _blend(image, changed, weight):
    """``changed`` where the soft region ``weight`` is 1, ``image`` where it is 0: the
    planted image, and its mask where the weight passes one half."""
    mask = weight > 0.5
    if image.ndim == 3:
        weight = weight[..., None]
    return np.clip(weight * changed + (1 - weight) * image, 0, 255).astype(np.uint8), mask


def plant_defects(images, per_image=3, seed=0):
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for image in images:
        for _ in range(per_image):
            mask = _ellipse(image.shape[:2], rng)
            other = images[rng.integers(len(images))].astype(float)
            other = np.roll(other, tuple(rng.integers(-80, 80, 2)), axis=(0, 1))
            defect = image.astype(float)
            kind = rng.integers(3)
            if kind == 0:
                defect[mask] = other[mask]
            elif kind == 1:
                defect[mask] *= rng.choice([0.6, 1.4])
            else:
                defect[mask] = 0.5 * other[mask] + 0.5 * defect[mask] * rng.choice([0.5, 1.5])
            out.append(np.clip(defect, 0, 255).astype(np.uint8))
            masks.append(mask)
    return np.stack(out), np.stack(masks)


def plant_large_defects(images, seed=1):
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for image in images:
        h, w = image.shape[:2]
        weight = gaussian_filter(_large_ellipse((h, w), rng).astype(float), 5)  # a soft edge
        image = image.astype(float)
        spatial = (2, 2, 0)[: image.ndim]  # no smoothing across colour channels
        kind = rng.integers(3)
        if kind == 0:
            changed = image * rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.3)])
        elif kind == 1:
            local_mean = gaussian_filter(image, tuple(4 * s for s in spatial))
            changed = local_mean + (image - local_mean) * rng.choice([0.4, 2.0])
        else:
            changed = gaussian_filter(image, spatial)
        planted, mask = _blend(image, changed, weight)
        out.append(planted)
        masks.append(mask)
    return np.stack(out), np.stack(masks)


def plant_texture_swaps(images, seed=2):
    """One large region per image replaced by the same region of another
    image: a texture that is normal, but not in this image. Half the regions
    are ellipses with half-axes of 30 to 100 pixels, half are bands from the
    top edge over 15 to 45 % of the height with a wavy border, rotated by a
    multiple of 90 degrees (square images); half of them get the brightness of
    the region they replace."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        if rng.random() < 0.5:
            region = _large_ellipse((h, w), rng)
        else:
            yy, xx = np.mgrid[:h, :w]
            depth = rng.uniform(0.15, 0.45) * h
            region = yy < depth + 6 * np.sin(xx / rng.uniform(15, 40) + rng.uniform(0, 6))
            region = np.rot90(region, rng.integers(4)) if h == w else region
        other = images[(i + 1 + rng.integers(len(images) - 1)) % len(images)].astype(float)
        image = image.astype(float)
        if rng.random() < 0.5:
            other = other * (image[region].mean() + 1) / (other[region].mean() + 1)
        weight = gaussian_filter(region.astype(float), 2)
        planted, mask = _blend(image, other, weight)
        out.append(planted)
        masks.append(mask)
    return np.stack(out), np.stack(masks)


def plant_edge_bands(images, seed=3):
    """One band per image from an edge, over 15 to 50 % of the side, with a
    wavy, slanted border, whose surface finish differs from the rest of the
    same image: its fine detail weakened or strengthened (×0.4-0.6 or ×1.6-2.2
    around the local mean), blurred (σ = 1.5-3 pixels), or its brightness
    changed (×0.75-0.85 or ×1.15-1.3). Rotated by a multiple of 90 degrees
    (square images)."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for image in images:
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        border = (rng.uniform(0.15, 0.5) * h + rng.uniform(3, 12) * np.sin(xx / rng.uniform(20, 60) + rng.uniform(0, 6))
                  + rng.uniform(-0.15, 0.15) * (xx - w / 2))
        region = yy < border
        region = np.rot90(region, rng.integers(4)) if h == w else region
        weight = gaussian_filter(region.astype(float), 2)
        image = image.astype(float)
        spatial = (1, 1, 0)[: image.ndim]  # no smoothing across colour channels
        kind = rng.integers(3)
        if kind == 0:
            local_mean = gaussian_filter(image, tuple(3 * s for s in spatial))
            changed = local_mean + (image - local_mean) * rng.choice([rng.uniform(0.4, 0.6), rng.uniform(1.6, 2.2)])
        elif kind == 1:
            changed = gaussian_filter(image, tuple(rng.uniform(1.5, 3) * s for s in spatial))
        else:
            changed = image * rng.choice([rng.uniform(0.75, 0.85), rng.uniform(1.15, 1.3)])
        planted, mask = _blend(image, changed, weight)
        out.append(planted)
        masks.append(mask)
    return np.stack(out), np.stack(masks)


PLANTERS = {"small": plant_defects, "large": plant_large_defects, "swaps": plant_texture_swaps,
            "bands": plant_edge_bands}


def held_out_set(train, families=FAMILIES):
    """The images to fit on, and a test set made of the other 10 %: each
    held-out image as it is (label 0), then with the defects of each family
    (label 1).

    Returns
    -------
    fit_on : ndarray
        The training images the detector may see.
    held_out : Bunch
        ``test_images``, ``test_masks`` and ``test_labels``, as
        :func:`sklearn_uflow.datasets.load_anomaly_folder` gives them.
    """
    order = np.random.default_rng(0).permutation(len(train))
    held_out, fit_on = train[np.sort(order[: len(train) // 10])], train[np.sort(order[len(train) // 10 :])]
    planted = [PLANTERS[family](held_out) for family in families]
    images = np.concatenate([held_out, *(X for X, _ in planted)])
    masks = np.concatenate([np.zeros((len(held_out), *held_out.shape[1:3]), bool), *(m for _, m in planted)])
    labels = np.repeat([0, 1], [len(held_out), len(images) - len(held_out)])
    return fit_on, Bunch(test_images=images, test_masks=masks, test_labels=labels)
