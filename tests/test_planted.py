"""The planted-defect families of ``benchmarks/planted.py``, the held-out protocol of ``compare.py``."""
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from planted import FAMILIES, PLANTERS, held_out_set  # noqa: E402


@pytest.fixture(scope="module")
def good():
    from sklearn_uflow.datasets import make_defects

    X, y, _ = make_defects(n_samples=40, image_size=256, random_state=0)
    return X[y == 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_changes_the_images_where_its_masks_say(family, good):
    images = good[:4]
    planted, masks = PLANTERS[family](images)
    assert planted.dtype == np.uint8 and masks.dtype == bool and masks.shape == (len(planted), 256, 256)
    assert all(m.any() for m in masks)
    originals = np.repeat(images, len(planted) // len(images), axis=0)  # "small": three per image
    # more than the one grey level that rounding the soft edge's far tail can take
    changed = np.abs(planted.astype(int) - originals).max(axis=-1) > 1
    for c, m in zip(changed, masks):
        # nothing changes away from the region and its soft edge, and most of the region changes
        assert not (c & ~ndimage.binary_dilation(m, iterations=12)).any()
        assert (c & m).sum() >= 0.5 * m.sum()
    again, _ = PLANTERS[family](images)
    np.testing.assert_array_equal(again, planted)  # seeded


def test_held_out_set_never_shows_the_fit_its_images(good):
    fit_on, held_out = held_out_set(good)
    n = len(good) // 10
    assert len(fit_on) == len(good) - n
    assert not any(np.array_equal(a, b) for a in fit_on for b in held_out.test_images[:n])
    # the clean images first (label 0, empty masks), then 3 + 1 + 1 + 1 planted copies of each
    assert len(held_out.test_images) == n * (1 + 3 + 1 + 1 + 1)
    np.testing.assert_array_equal(held_out.test_labels, np.repeat([0, 1], [n, 6 * n]))
    assert not held_out.test_masks[:n].any() and held_out.test_masks[n:].reshape(6 * n, -1).any(1).all()
