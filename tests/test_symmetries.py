import numpy as np
import pytest

from sklearn_uflow.symmetries import AUGMENTATIONS, apply_symmetry, symmetries


def _by_hand(image, k, flip):
    """Independent: a quarter turn counter-clockwise is the transpose, then rows reversed."""
    for _ in range(k):
        image = image.swapaxes(0, 1)[::-1]
    return image[:, ::-1] if flip else image


@pytest.mark.parametrize("symmetry", AUGMENTATIONS["eight"])
def test_apply_symmetry_turns_then_flips_each_image(symmetry, rng):
    images = rng.integers(0, 255, (3, 5, 5, 3), dtype=np.uint8)
    turned = apply_symmetry(images, symmetry)
    assert turned.flags.c_contiguous
    for image, out in zip(images, turned):
        np.testing.assert_array_equal(out, _by_hand(image, *symmetry))


def test_each_augmentation_is_a_group_of_distinct_symmetries(rng):
    image = rng.random((1, 6, 6))
    for name, group in AUGMENTATIONS.items():
        assert group[0] == (0, False), name  # the identity first: copy 0 is the image itself
        copies = [apply_symmetry(image, s)[0] for s in group]
        keys = {c.tobytes() for c in copies}
        assert len(keys) == len(group), name
        # closed: turning any copy by any member gives another copy
        for s in group:
            assert {apply_symmetry(c[None], s)[0].tobytes() for c in copies} == keys, name


def test_quarter_turns_are_refused_on_oblong_frames():
    assert symmetries("flips", (48, 64)) == AUGMENTATIONS["flips"]
    for name in ("quarter_turns", "eight"):
        assert len(symmetries(name, (64, 64))) == len(AUGMENTATIONS[name])
        with pytest.raises(ValueError, match="48x64 frame"):
            symmetries(name, (48, 64))
    with pytest.raises(ValueError, match="augmentation must be one of"):
        symmetries("rotations", (64, 64))
