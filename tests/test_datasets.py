import numpy as np
import pytest
from PIL import Image

from sklearn_uflow.datasets import auto_image_size, image_files, load_anomaly_folder, make_defects, read_image

# Counts stated in each dataset's SOURCE.md.
EXPECTED = {
    "mpdd/metal_plate": (54, 26, {"defect": 71}),
    "magnetic_tile/magnetic_tile": (761, 191, {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 99}),
    "hazelnut_toy/hazelnut_toy": (28, 6, {"colour": 17}),
}


@pytest.mark.parametrize("category", sorted(EXPECTED))
def test_loaders_read_the_real_datasets(data_dir, category):
    n_train, n_good, defects = EXPECTED[category]
    data = load_anomaly_folder(data_dir / category, image_size=256)
    assert len(data.train_images) == n_train and data.train_images.dtype == np.uint8
    assert int((data.test_labels == 0).sum()) == n_good
    types, counts = np.unique(data.test_types[data.test_labels == 1], return_counts=True)
    assert dict(zip(types, counts.tolist())) == defects
    assert data.test_masks.shape == (len(data.test_images), 256, 256)
    # every defective image has a non-empty mask, no good image has one
    has_defect = data.test_masks.reshape(len(data.test_masks), -1).any(1)
    np.testing.assert_array_equal(has_defect, data.test_labels == 1)
    assert data.color == ("gray" if category.startswith("magnetic") else "rgb")


def test_mixed_sizes_need_image_size(data_dir):
    with pytest.raises(ValueError, match="image_size"):
        load_anomaly_folder(data_dir / "magnetic_tile/magnetic_tile")


def test_auto_size_squashes_the_magnetic_tiles_whose_aspect_ratios_differ(data_dir):
    # Each image is cut to its tile: height/width from 0.38 to 2.81 over the training images.
    files = image_files(data_dir / "magnetic_tile/magnetic_tile/train/good")
    assert auto_image_size(files) == (256, 256)
    assert load_anomaly_folder(data_dir / "hazelnut_toy/hazelnut_toy", image_size="auto").train_images.shape[1:3] == (
        256, 256)


def _strips(root, sizes):
    for i, (height, width) in enumerate(sizes):
        _write(root / f"{i}.png", np.full((height, width, 3), 100 + i, np.uint8))
    return image_files(root)


@pytest.mark.parametrize("sizes, expected", [
    ([(50, 125), (100, 250), (102, 250)], (160, 400)),  # one aspect, within 5 %: kept, at about 256x256 pixels
    ([(125, 50), (250, 100)], (400, 160)),
    ([(64, 64), (61, 64)], (256, 256)),
    ([(50, 125), (100, 100)], (256, 256)),  # two aspects: no one frame keeps both
])
def test_auto_image_size(tmp_path, sizes, expected):
    assert auto_image_size(_strips(tmp_path, sizes)) == expected


def test_loader_reads_strips_at_their_aspect_ratio(tmp_path):
    _strips(tmp_path / "train/good", [(50, 125), (100, 250)])
    _strips(tmp_path / "test/good", [(500, 1250), (64, 64)])  # the training images set the frame
    data = load_anomaly_folder(tmp_path, image_size="auto")
    assert data.train_images.shape == (2, 160, 400, 3) and data.test_images.shape == (2, 160, 400, 3)
    with pytest.raises(ValueError, match="image_size must be"):
        load_anomaly_folder(tmp_path, image_size="median")


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _tiny_folder(root, mask_shape=(8, 8), with_mask=True):
    img = np.full((8, 8, 3), 120, np.uint8)
    _write(root / "train/good/000.png", img)
    _write(root / "test/good/000.png", img)
    _write(root / "test/scratch/000.png", img)
    if with_mask:
        mask = np.zeros(mask_shape, np.uint8)
        mask[2:4, 2:4] = 255
        _write(root / "ground_truth/scratch/000_mask.png", mask)
    return root


def test_loader_on_a_written_folder(tmp_path):
    data = load_anomaly_folder(_tiny_folder(tmp_path))
    assert data.train_images.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(data.test_labels, [0, 1])
    assert data.test_masks[1].sum() == 4 and not data.test_masks[0].any()
    assert data.test_files == ["test/good/000.png", "test/scratch/000.png"]


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: p / "missing", FileNotFoundError, "no such folder"),
        (lambda p: p, ValueError, "no training images"),
        (lambda p: _tiny_folder(p, with_mask=False), ValueError, "has no mask"),
        (lambda p: _tiny_folder(p, mask_shape=(9, 8)), ValueError, "mask .* is 8x9"),
    ],
)
def test_loader_errors(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        load_anomaly_folder(make(tmp_path))


@pytest.mark.parametrize("damage", [lambda data: b"not a png", lambda data: data[: len(data) // 2]],
                         ids=["garbage", "truncated"])
def test_unreadable_image_is_reported(tmp_path, damage):
    _tiny_folder(tmp_path)
    good = tmp_path / "train/good/001.png"
    _write(good, np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    good.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ValueError, match="could not read image"):
        load_anomaly_folder(tmp_path)


def test_make_defects_is_seeded_and_consistent():
    X, y, masks = make_defects(n_samples=12, image_size=32, n_channels=1, random_state=3)
    X2, y2, masks2 = make_defects(n_samples=12, image_size=32, n_channels=1, random_state=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(masks, masks2)
    assert X.shape == (12, 32, 32, 1) and X.dtype == np.uint8
    assert y.sum() == 6
    np.testing.assert_array_equal(masks.reshape(12, -1).any(1), y == 1)
    # the defects change the pixels they cover
    normal_mean = X[y == 0].mean()
    assert abs(X[..., 0][masks].mean() - normal_mean) > 20


def _png16_rgb(path, values):
    """A 16-bit RGB PNG written by hand (Pillow writes none): signature, IHDR, one IDAT, IEND."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = values.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# 16-bit and 32-bit grayscale from 20000 to 40000: 255 * value / (2**bits - 1), rounded.
GRADIENT = np.linspace(20000, 40000, 8 * 8).reshape(8, 8)


def _image(mode, values):
    """A PIL image of ``mode`` holding ``values`` (byte order as the mode says)."""
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4", "F": "<f4"}.get(mode, np.uint8)
    return Image.frombytes(mode, values.shape[1::-1], np.ascontiguousarray(values, dtype=dtype).tobytes())


@pytest.mark.parametrize("mode, suffix, values, expected", [
    ("I;16", ".png", GRADIENT, np.round(GRADIENT * 255 / 65535)),
    ("I;16", ".tif", GRADIENT, np.round(GRADIENT * 255 / 65535)),
    ("I;16B", ".tif", GRADIENT, np.round(GRADIENT * 255 / 65535)),
    ("I", ".tif", GRADIENT * 32768, np.round(GRADIENT * 32768 * 255 / (2**32 - 1))),
    ("F", ".tif", GRADIENT / 65535, np.round(GRADIENT * 255 / 65535)),
    ("L", ".png", np.arange(64).reshape(8, 8) * 4, np.arange(64).reshape(8, 8) * 4),
    ("L", ".jpg", np.full((8, 8), 77), np.full((8, 8), 77)),
    # on black: a pixel of opacity 10/255 shows 10/255 of its grey
    ("LA", ".png", np.stack([np.full((8, 8), 90), np.full((8, 8), 10)], -1), np.full((8, 8), np.round(900 / 255))),
])
def test_read_image_scales_every_grayscale_mode_by_its_range(tmp_path, mode, suffix, values, expected):
    path = tmp_path / f"image{suffix}"
    _image(mode, values).save(path)
    with Image.open(path) as opened:
        assert opened.mode == mode
    gray = read_image(path, color="gray")
    assert gray.dtype == np.uint8 and gray.shape == (8, 8)
    np.testing.assert_array_equal(gray, expected)
    np.testing.assert_array_equal(read_image(path), np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("mode, suffix", [("RGB", ".png"), ("RGB", ".bmp"), ("RGBA", ".png"), ("RGBA", ".tif"),
                                          ("P", ".png"), ("P", ".tif"), ("CMYK", ".tif"), ("YCbCr", ".tif"),
                                          ("PA", ".tif")])
def test_read_image_converts_every_colour_mode(tmp_path, mode, suffix):
    rgb = np.stack([*np.meshgrid(np.arange(8) * 30, np.arange(8) * 20, indexing="ij"), np.full((8, 8), 60)], -1)
    image = Image.fromarray(rgb.astype(np.uint8))
    image = image.convert(mode) if mode != "P" else image.quantize(64)
    path = tmp_path / f"image{suffix}"
    image.save(path)
    # the colours survive the file's mode (palettes and CMYK round them)
    assert np.abs(read_image(path).astype(int) - rgb).max() <= (45 if mode in ("P", "PA") else 3)


def test_read_image_reads_16_bit_rgb(tmp_path):
    values = np.stack([GRADIENT, GRADIENT / 2, 65535 - GRADIENT], -1).astype(np.uint16)
    _png16_rgb(tmp_path / "rgb16.png", values)
    np.testing.assert_allclose(read_image(tmp_path / "rgb16.png"), values / 257, atol=1)


@pytest.mark.parametrize("mode, values, match", [
    ("F", np.full((8, 8), 2.5), r"outside \[0, 1\]"),
    ("F", np.full((8, 8), np.nan), r"outside \[0, 1\]"),
    ("I", np.full((8, 8), -5), "32-bit"),
    ("LAB", np.zeros((8, 8, 3)), "LAB images are not supported"),
])
def test_read_image_refuses_what_it_cannot_read_faithfully(tmp_path, mode, values, match):
    path = tmp_path / "image.tif"
    _image(mode, values).save(path)
    with pytest.raises(ValueError, match=match) as error:
        read_image(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_read_image_follows_the_exif_orientation(tmp_path):
    """A camera's JPEG stored landscape, tagged "turn 90 degrees clockwise to view" (orientation 6): read as viewers
    show it, portrait, in fit, predict and evaluate alike (all read through read_image and auto_image_size)."""
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :8] = 255  # the stored image's left quarter is white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "camera.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "camera.jpg")
    assert image.shape == (32, 16, 3)
    # turned clockwise, the stored left quarter is the top quarter
    assert image[:8].mean() > 240 and image[10:].mean() < 15
    assert auto_image_size([tmp_path / "camera.jpg"]) == auto_image_size([_portrait(tmp_path)])


def _portrait(tmp_path):
    Image.fromarray(np.zeros((32, 16, 3), np.uint8)).save(tmp_path / "portrait.png")
    return tmp_path / "portrait.png"


def test_the_loader_reads_turned_images_and_their_masks_alike(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    for folder in ("train/good", "test/crack", "ground_truth/crack"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("train/good/000.jpg", "test/crack/000.jpg"):
        Image.fromarray(np.full((16, 32, 3), 128, np.uint8)).save(tmp_path / name, exif=exif)
    mask = np.zeros((32, 16), np.uint8)  # drawn on the image as shown: portrait
    mask[:4] = 255
    Image.fromarray(mask).save(tmp_path / "ground_truth/crack/000_mask.png")
    data = load_anomaly_folder(tmp_path)
    assert data.test_images.shape == (1, 32, 16, 3) and data.test_masks[0, :4].all()


@pytest.mark.parametrize("mode", ["RGBA", "PA", "LA", "P"])
def test_transparent_pixels_are_composited_on_black(tmp_path, mode):
    """Colour under transparent pixels is not scored as if visible: a pixel of opacity a shows a times its
    colour, as on a black background."""
    colour = np.array([200, 100, 50])
    alpha = np.tile(np.array([0, 51, 255], np.uint8), (3, 1))
    rgb = np.broadcast_to(colour, (3, 3, 3)).astype(np.uint8)
    if mode == "P":  # a palette image with one transparent entry
        image = Image.fromarray(rgb).quantize(4)
        index = np.asarray(image).copy()
        index[:, 0] = 3
        image = Image.fromarray(index, "P")
        image.putpalette([*colour, *colour, *colour, 255, 0, 0])
        image.info["transparency"] = 3
        expected = np.broadcast_to(colour, (3, 3, 3)).copy()
        expected[:, 0] = 0
    else:
        image = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
        if mode == "LA":
            image = image.convert("LA")
            rgb = np.asarray(image)[..., :1].repeat(3, axis=2)
        elif mode == "PA":
            image = image.convert("PA")
        expected = np.round(rgb.astype(float) * alpha[..., None] / 255)
    image.save(tmp_path / "image.png" if mode != "PA" else tmp_path / "image.tif")
    read = read_image(tmp_path / ("image.png" if mode != "PA" else "image.tif"))
    np.testing.assert_allclose(read, expected, atol=1 if mode == "PA" else 0)
    assert read[:, 0].max() == 0  # fully transparent: black, whatever colour it hides


def test_a_mask_of_another_size_is_refused_even_when_resizing(tmp_path):
    root = _tiny_folder(tmp_path, mask_shape=(9, 8))
    for image_size in (None, 16, "auto"):
        with pytest.raises(ValueError, match="mask .* is 8x9 but its image is 8x8"):
            load_anomaly_folder(root, image_size=image_size)
