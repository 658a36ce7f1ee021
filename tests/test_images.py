from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import sparse

from sklearn_uflow._images import check_images
from sklearn_uflow._tensors import images_to_tensor
from sklearn_uflow._resize import resize_nearest


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((2, 4)), "2 dimension"),
        (np.zeros((2, 4, 4, 4, 1)), "5 dimension"),
        (np.zeros((0, 4, 4)), "no images"),
        (np.zeros((1, 4, 4, 2)), "1 \\(grayscale\\) or 3"),
        (np.full((1, 4, 4), np.nan), "NaN or infinite"),
        (np.full((1, 4, 4), np.inf), "NaN or infinite"),
        (np.full((1, 4, 4), -0.5), "Negative values"),
        (np.full((1, 4, 4), 200.0), "divide by 255"),
        (np.full((1, 4, 4), 300, dtype=np.int32), "8-bit values"),
        (np.full((1, 4, 4), -3, dtype=np.int32), "Negative values"),
        (np.full((1, 4, 4), 1.5), "must lie in \\[0, 1\\]"),
        (np.zeros((1, 4, 4), dtype=complex), "Complex data"),
        (np.zeros((1, 4, 4), dtype=bool), "boolean"),
        (np.array([[["a"]]], dtype=object), "dtype object"),
        ([np.zeros((4, 4)), np.zeros((5, 5))], "share height and width"),
        (sparse.csr_matrix(np.eye(4)), "sparse input is not supported"),
        (np.zeros((1, 4, 4, 4)), "1 \\(grayscale\\) or 3"),
    ],
)
def test_bad_images_raise_clear_errors(X, match):
    with pytest.raises(ValueError, match=match):
        check_images(X)


def test_contract_scales_and_shapes():
    gray = check_images(np.full((2, 3, 5), 255, dtype=np.uint8))
    assert gray.shape == (2, 3, 5, 1) and gray.dtype == np.float32 and gray.max() == 1.0
    rgb = check_images([np.zeros((3, 5, 3)), np.ones((3, 5, 3))])
    assert rgb.shape == (2, 3, 5, 3)
    assert check_images(np.zeros((1, 4, 4), np.float16)).dtype == np.float32
    assert check_images(torch.zeros(1, 4, 4, dtype=torch.bfloat16)).shape == (1, 4, 4, 1)


def test_fit_shape_is_enforced():
    with pytest.raises(ValueError, match="fitted on images with 3"):
        check_images(np.zeros((1, 4, 4)), n_channels=3)
    with pytest.raises(ValueError, match="fitted on 8x8"):
        check_images(np.zeros((1, 4, 4)), image_size=(8, 8))


def test_images_to_tensor_replicates_gray_and_normalises():
    x = images_to_tensor(np.full((1, 8, 8, 1), 0.5, np.float32), 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert x.shape == (1, 3, 4, 4)
    torch.testing.assert_close(x, torch.zeros_like(x))


@pytest.mark.parametrize("size, out", [((4, 6), (16, 24)), ((7, 5), (448, 100)), ((28, 28), (256, 256))])
def test_nearest_resize_repeats_the_cell_whose_centre_is_nearest(size, out, rng):
    # Independent: output pixel i takes the input cell floor((i + 1/2) * h / H), as pixel centres align.
    maps = rng.random(size)
    maps[0, 0] = np.inf  # an NFA map holds infinities outside its regions
    rows = np.minimum(((np.arange(out[0]) + 0.5) * size[0] / out[0]).astype(int), size[0] - 1)
    cols = np.minimum(((np.arange(out[1]) + 0.5) * size[1] / out[1]).astype(int), size[1] - 1)
    np.testing.assert_array_equal(resize_nearest(maps, out), maps[rows][:, cols])


def test_nearest_resizing_takes_the_pixel_under_each_centre():
    for n_in, n_out in [(2, 141), (56, 48), (16, 64), (7, 3), (72, 64), (25, 1250)]:
        image = np.arange(n_in, dtype=float)[:, None]
        expected = [min(int((Fraction(2 * i + 1, 2) * Fraction(n_in, n_out))), n_in - 1) for i in range(n_out)]
        np.testing.assert_array_equal(resize_nearest(image, (n_out, 1))[:, 0], expected)
    # at the ratios of the default grids, torch's nearest-exact, which the library used before, agrees
    maps = torch.arange(16 * 16, dtype=torch.float64).reshape(1, 1, 16, 16)
    for size in [(64, 64), (256, 256), (16, 16), (32, 64)]:
        np.testing.assert_array_equal(
            resize_nearest(maps[0, 0].numpy(), size),
            torch.nn.functional.interpolate(maps, size=size, mode="nearest-exact")[0, 0].numpy())


def test_bilinear_resizing_is_torchs_without_torch():
    """The files a run writes are resized by NumPy, also where torch is not installed."""
    from sklearn_uflow._resize import resize_bilinear

    rng = np.random.default_rng(0)
    for shape, size in [((64, 64), (256, 256)), ((48, 64), (500, 1250)), ((256, 256), (100, 77)),
                        ((56, 72), (48, 64)), ((3, 5), (7, 2)), ((1, 1), (4, 4))]:
        image = rng.random(shape, dtype=np.float32)
        expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None, None], size=size, mode="bilinear",
                                                   align_corners=False)[0, 0].numpy()
        resized = resize_bilinear(image, size)
        assert resized.dtype == np.float32
        np.testing.assert_allclose(resized, expected, rtol=0, atol=4e-6)
