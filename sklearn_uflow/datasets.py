"""Image data for anomaly detection: MVTec-layout folders and synthetic defects."""

import os
from pathlib import Path

import numpy as np

from ._resize import aspect_size

__all__ = ["load_anomaly_folder", "list_anomaly_folder", "make_defects", "read_image", "image_files",
           "auto_image_size", "resize_image", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Aspect ratios within this factor of each other count as one (a few pixels cropped or padded).
ASPECT_TOLERANCE = 1.05
# The 8-bit modes that Pillow converts to RGB and L faithfully.
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"}
# Modes with an alpha channel (a palette image may have one too, through its "transparency").
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# EXIF orientations 5 to 8 turn the picture a quarter: its displayed width is the stored height.
_EXIF_ORIENTATION, _QUARTER_TURNED = 0x0112, {5, 6, 7, 8}
# What PIL raises on a file that is not an image, or a damaged one (UnidentifiedImageError is an OSError).
_READ_ERRORS = (OSError, SyntaxError)


def image_files(folder):
    """List the image files of a folder, by extension, sorted by name.

    Files are recognised by their suffix, case aside; folders and other files
    are skipped, and the order is the same on every system.

    Parameters
    ----------
    folder : path-like
        The folder.

    Returns
    -------
    files : list of pathlib.Path
        Its files whose suffix is one of :data:`IMAGE_EXTENSIONS`.

    See Also
    --------
    read_image : Read one.
    auto_image_size : The size to read them at.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_uflow.datasets import image_files
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in ("b.PNG", "a.jpg", "notes.txt"):
    ...         (Path(folder) / name).touch()
    ...     names = [f.name for f in image_files(folder)]
    >>> names
    ['a.jpg', 'b.PNG']
    """
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _unreadable(path, exc):
    return ValueError(f"could not read image {os.fspath(path)!r}: {exc}")


def auto_image_size(files):
    """The size ``image_size="auto"`` reads ``files`` at.

    When the images share one aspect ratio (within 5 %), that ratio at about
    256x256 pixels, sides multiples of 16 (500x1250 strips: 160x400); when
    they do not, no single frame keeps their geometry and they are squashed
    to 256x256. Only the files' headers are read.

    Parameters
    ----------
    files : list of path-like
        Image files, typically the good training images.

    Returns
    -------
    size : (int, int)
        ``(H, W)``.

    See Also
    --------
    load_anomaly_folder : Reads at this size with ``image_size='auto'``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from sklearn_uflow.datasets import auto_image_size
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     Image.fromarray(np.zeros((500, 1250), np.uint8)).save(Path(folder) / "strip.png")
    ...     size = auto_image_size([Path(folder) / "strip.png"])
    >>> size
    (160, 400)
    """
    from PIL import Image

    aspects = []
    for file in files:
        try:
            with Image.open(file) as image:
                width, height = image.size
                if image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNED:
                    width, height = height, width
                aspects.append(height / width)
        except _READ_ERRORS as exc:
            raise _unreadable(file, exc) from None
    if not aspects or max(aspects) > ASPECT_TOLERANCE * min(aspects):
        return (256, 256)
    return aspect_size((float(np.median(aspects)), 1.0), step=16)


def _as_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    return tuple(int(v) for v in image_size)


def read_image(path, *, color="rgb", image_size=None):
    """Read one image file as a uint8 array ``(H, W, 3)`` or ``(H, W)``.

    Images are read as viewers show them: turned as their EXIF orientation
    says, and with their transparent pixels composited on black (a pixel of
    opacity ``a`` in [0, 1] counts ``a`` times its colour), so that colour
    hidden under transparency is not scored. 8-bit images are read as they
    are (palette, CMYK and YCbCr converted by Pillow). Images of higher bit
    depth are scaled by the range of their type: 16-bit grayscale by 65535,
    integer TIFF by the range of its declared bits, floating-point TIFF from
    [0, 1]. An image whose values fall outside that range, or whose mode
    cannot be converted, is refused rather than clipped.

    Parameters
    ----------
    path : str or path-like
        Image file.
    color : {"rgb", "gray"}, default="rgb"
        Colour conversion.
    image_size : int or (H, W), default=None
        Resize (bilinear) to this size.

    Returns
    -------
    image : ndarray of shape (H, W, 3) or (H, W), uint8
        The pixels.

    Raises
    ------
    ValueError
        If the file is not an image Pillow can read, or cannot be read
        faithfully as 8 bits.

    See Also
    --------
    resize_image : The resizing it applies.
    load_anomaly_folder : A whole dataset.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> from sklearn_uflow.datasets import read_image
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     Image.new("L", (6, 4), 200).save(f"{folder}/gray.png")  # 6 wide, 4 high
    ...     image = read_image(f"{folder}/gray.png")
    >>> image.shape, image[0, 0].tolist()
    ((4, 6, 3), [200, 200, 200])
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            bits = _declared_bits(image, default=32)  # before turning: a turned copy has no TIFF tags
            image = _as_uint8(ImageOps.exif_transpose(image), color, bits)
    except (*_READ_ERRORS, ValueError) as exc:
        raise _unreadable(path, exc) from None
    return image if image_size is None else resize_image(image, image_size)


def _as_uint8(image, color, bits):
    """The pixels of an open PIL image as uint8, in ``color``; ValueError if they cannot be read faithfully.
    ``bits``: the bits per sample a mode "I" image declares."""
    mode = image.mode
    if mode == "F" or mode == "I" or mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            top, what = 1.0, "floating-point values outside [0, 1]"
        else:
            bits = 16 if mode != "I" else bits
            top, what = 2.0**bits - 1, f"values outside the range of {bits}-bit integers"
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= top):
            raise ValueError(f"{mode} image with {what} ({values.min():g} to {values.max():g}); "
                             "convert it to 8 or 16 bits")
        gray = np.round(values * (255.0 / top)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2) if color == "rgb" else gray
    if mode not in _EIGHT_BIT_MODES:  # e.g. LAB, which Pillow's convert does not turn into RGB faithfully
        raise ValueError(f"{mode} images are not supported; save it as RGB or grayscale")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        from PIL import Image

        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        rgb = ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)  # on black, rounded
        image = Image.fromarray(rgb)
    return np.asarray(image.convert("RGB" if color == "rgb" else "L"), dtype=np.uint8)


def _declared_bits(image, default):
    """Bits per sample that a TIFF declares, or ``default``."""
    tags = getattr(image, "tag_v2", None)
    bits = tags.get(258) if tags is not None else None
    return int(bits[0] if isinstance(bits, tuple) else bits) if bits else default


def resize_image(image, image_size):
    """Resize one uint8 image, bilinearly, as :func:`read_image` does.

    Pillow's bilinear filter, on the whole image at once, so that images read
    resized and images resized after reading are the same to the bit.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, 3), uint8
        The image.
    image_size : int or (H, W)
        The size wanted.

    Returns
    -------
    resized : ndarray of shape (H, W) or (H, W, 3), uint8
        ``image`` itself when it has that size already.

    See Also
    --------
    read_image : Reads and resizes.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.datasets import resize_image
    >>> resize_image(np.zeros((10, 20, 3), np.uint8), (5, 8)).shape
    (5, 8, 3)
    """
    from PIL import Image

    height, width = _as_size(image_size)
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR), dtype=np.uint8)


def _read_mask(path, shape):
    """The mask of an image of ``shape`` as read; one of another size is refused, never stretched."""
    from PIL import Image, ImageOps

    with Image.open(path) as mask:
        mask = ImageOps.exif_transpose(mask).convert("L")
    if mask.size != (shape[1], shape[0]):
        raise ValueError(
            f"mask {os.fspath(path)!r} is {mask.size[0]}x{mask.size[1]} but its image is {shape[1]}x{shape[0]}."
        )
    return np.asarray(mask) >= 128


def _resize_mask(mask, shape):
    from PIL import Image

    if mask.shape == tuple(shape):
        return mask
    return np.asarray(Image.fromarray(mask).resize((shape[1], shape[0]), Image.NEAREST))


def _stack(images, files, what):
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        raise ValueError(
            f"{what} images have different sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes)[:4])}); "
            "pass image_size=... to resize them."
        )
    return np.stack(images)


def list_anomaly_folder(path):
    """The image files of an MVTec-layout category folder, without reading them.

    A command checks its inputs and outputs before reading any image: this
    lists what :func:`load_anomaly_folder` would read, and the folders that
    no output may be written into.

    Parameters
    ----------
    path : str or path-like
        The category folder (``train/good/*``, ``test/<type>/*``,
        ``ground_truth/<type>/<stem>_mask.png``).

    Returns
    -------
    files : sklearn.utils.Bunch
        ``train_files`` and ``test_files``, paths relative to ``path`` in the
        order :func:`load_anomaly_folder` reads them; ``folders``, the
        folders it reads from (``path`` itself, ``train/good``, each
        ``test/<type>`` and ``ground_truth/<type>``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it has no training images in ``train/good``.

    See Also
    --------
    load_anomaly_folder : Read them.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from sklearn_uflow.datasets import list_anomaly_folder
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for name in ("train/good/0.png", "test/good/1.png", "test/cut/2.png", "ground_truth/cut/2_mask.png"):
    ...         (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
    ...         (Path(root) / name).touch()
    ...     files = list_anomaly_folder(root)
    >>> [str(f) for f in files.train_files], sorted(str(f) for f in files.test_files)
    (['train/good/0.png'], ['test/cut/2.png', 'test/good/1.png'])
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {os.fspath(path)!r}")
    train_dir = root / "train" / "good"
    if not train_dir.is_dir() or not image_files(train_dir):
        raise ValueError(f"{os.fspath(path)!r} has no training images in train/good/ (MVTec layout expected).")
    test_dirs = sorted(p for p in (root / "test").iterdir() if p.is_dir()) if (root / "test").is_dir() else []
    truth = root / "ground_truth"
    from sklearn.utils import Bunch  # here: the runtime's command line lists files without scikit-learn

    return Bunch(
        train_files=[str(f.relative_to(root)) for f in image_files(train_dir)],
        test_files=[str(f.relative_to(root)) for folder in test_dirs for f in image_files(folder)],
        folders=[root, train_dir, *test_dirs, *(sorted(p for p in truth.iterdir() if p.is_dir())
                                                 if truth.is_dir() else [])],
    )


def load_anomaly_folder(path, *, image_size=None, color="auto"):
    """Load an MVTec-layout category folder.

    The folder holds ``train/good/*`` (normal training images),
    ``test/<type>/*`` (test images; ``good`` for normal ones) and
    ``ground_truth/<type>/<stem>_mask.png`` (a mask for every defective test
    image, non-zero on the defect).

    Parameters
    ----------
    path : str or path-like
        The category folder.
    image_size : int, (H, W) or "auto", default=None
        Resize images (bilinear) and masks (nearest) to this size; needed when
        the images do not all share one size. ``"auto"``: the training images'
        shared aspect ratio at about 256x256 pixels, or 256x256 when their
        aspect ratios differ (:func:`auto_image_size`).
    color : {"auto", "rgb", "gray"}, default="auto"
        ``"auto"`` reads grayscale when every training image is grayscale,
        RGB otherwise.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``train_images`` (n_train, H, W[, 3]) uint8; ``test_images``
        (n_test, H, W[, 3]) uint8; ``test_masks`` (n_test, H, W) bool;
        ``test_labels`` (n_test,) int, 1 for defective; ``test_types``
        (n_test,) str; ``train_files`` and ``test_files``, paths relative to
        ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the folder does not follow the layout: no training images, a
        defective image without mask, a mask of another size, images of
        different sizes without ``image_size``.

    See Also
    --------
    list_anomaly_folder : The files, without reading them.
    make_defects : A synthetic set in the same form.

    Examples
    --------
    >>> from sklearn_uflow.datasets import load_anomaly_folder
    >>> data = load_anomaly_folder("mvtec/hazelnut", image_size="auto")  # doctest: +SKIP
    >>> data.train_images.shape  # doctest: +SKIP
    (391, 256, 256, 3)
    """
    from PIL import Image

    root = Path(path)
    listing = list_anomaly_folder(root)
    train_files = [root / f for f in listing.train_files]
    if color not in ("auto", "rgb", "gray"):
        raise ValueError(f"color must be 'auto', 'rgb' or 'gray', got {color!r}.")
    if isinstance(image_size, str):
        if image_size != "auto":
            raise ValueError(f"image_size must be an int, (H, W), 'auto' or None, got {image_size!r}.")
        image_size = auto_image_size(train_files)
    if color == "auto":
        gray_modes = {"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
        color = "gray"
        for file in train_files:
            with Image.open(file) as image:
                if image.mode not in gray_modes:
                    color = "rgb"
                    break

    train = [read_image(f, color=color, image_size=image_size) for f in train_files]
    test_images, masks, labels, types = [], [], [], []
    for name in listing.test_files:
        file = root / name
        type_name = file.parent.name
        image = read_image(file, color=color)
        if type_name == "good":
            mask = np.zeros(image.shape[:2], dtype=bool)
        else:
            mask_file = root / "ground_truth" / type_name / f"{file.stem}_mask.png"
            if not mask_file.is_file():
                raise ValueError(f"defective test image {name} has no mask {mask_file.relative_to(root)}.")
            mask = _read_mask(mask_file, image.shape[:2])
        if image_size is not None:
            image = resize_image(image, image_size)
            mask = _resize_mask(mask, image.shape[:2])
        test_images.append(image)
        masks.append(mask)
        labels.append(int(type_name != "good"))
        types.append(type_name)
    test_files = listing.test_files
    from sklearn.utils import Bunch

    return Bunch(
        train_images=_stack(train, train_files, "training"),
        test_images=_stack(test_images, test_files, "test") if test_images else None,
        test_masks=np.stack(masks) if masks else None,
        test_labels=np.asarray(labels, dtype=int),
        test_types=np.asarray(types, dtype=str),
        train_files=listing.train_files,
        test_files=test_files,
        color=color,
    )


def make_defects(n_samples=40, *, anomaly_ratio=0.5, image_size=64, n_channels=3, random_state=None):
    """Synthetic textured images, some with planted defects, and their masks.

    Normal images share one texture (a few oriented gratings plus grain) seen
    at a random shift; a defective image also carries one or two elliptic
    blemishes (a darker or brighter patch with its own grain, or a scratch).
    Small and fast, for tests, documentation and demos: like
    :func:`sklearn.datasets.make_blobs`, for anomaly segmentation.

    Parameters
    ----------
    n_samples : int, default=40
        Number of images.
    anomaly_ratio : float, default=0.5
        Share of defective images.
    image_size : int, default=64
        Height and width.
    n_channels : {1, 3}, default=3
        Grayscale or RGB.
    random_state : int, RandomState instance or None, default=None
        Seed of the texture, shifts and defects.

    Returns
    -------
    X : ndarray of shape (n_samples, image_size, image_size, n_channels), uint8
        The images.
    y : ndarray of shape (n_samples,), int
        1 for defective images, 0 for normal ones.
    masks : ndarray of shape (n_samples, image_size, image_size), bool
        The defects' pixels.

    See Also
    --------
    load_anomaly_folder : Real images, in the same form.

    Examples
    --------
    >>> from sklearn_uflow.datasets import make_defects
    >>> X, y, masks = make_defects(n_samples=10, random_state=0)
    >>> X.shape, int(y.sum()), bool(masks[y == 0].any())
    ((10, 64, 64, 3), 5, False)
    """
    if n_channels not in (1, 3):
        raise ValueError(f"n_channels must be 1 or 3, got {n_channels!r}.")
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    size = int(image_size)
    n_defective = int(round(anomaly_ratio * n_samples))
    y = np.zeros(n_samples, dtype=int)
    y[rng.permutation(n_samples)[:n_defective]] = 1

    # The product's texture: gratings with fixed frequencies and orientations.
    n_waves = 4
    angles = rng.uniform(0, np.pi, n_waves)
    periods = rng.uniform(size / 10, size / 3, n_waves)
    tint = rng.uniform(0.6, 1.0, 3)
    grid = np.mgrid[0:size, 0:size].astype(float)
    X = np.empty((n_samples, size, size, n_channels), dtype=np.uint8)
    masks = np.zeros((n_samples, size, size), dtype=bool)
    for i in range(n_samples):
        shift = rng.uniform(0, size, 2)
        rows, cols = grid[0] + shift[0], grid[1] + shift[1]
        texture = sum(
            np.sin(2 * np.pi * (rows * np.sin(a) + cols * np.cos(a)) / p) for a, p in zip(angles, periods)
        ) / n_waves
        image = 0.5 + 0.25 * texture + 0.03 * rng.standard_normal((size, size))
        if y[i]:
            for _ in range(rng.randint(1, 3)):
                center = rng.uniform(0.2 * size, 0.8 * size, 2)
                radii = rng.uniform(0.05 * size, 0.14 * size, 2)
                if rng.rand() < 0.3:  # a thin scratch
                    radii = np.array([rng.uniform(0.015, 0.03) * size, rng.uniform(0.15, 0.3) * size])
                theta = rng.uniform(0, np.pi)
                dr, dc = grid[0] - center[0], grid[1] - center[1]
                u = (dr * np.cos(theta) + dc * np.sin(theta)) / radii[0]
                v = (-dr * np.sin(theta) + dc * np.cos(theta)) / radii[1]
                blemish = u**2 + v**2 <= 1
                image[blemish] = (rng.choice([0.15, 0.85]) + 0.1 * rng.standard_normal(blemish.sum()))
                masks[i] |= blemish
        image = np.clip(image, 0, 1)
        if n_channels == 3:
            image = image[..., None] * tint
        else:
            image = image[..., None]
        X[i] = np.round(255 * image).astype(np.uint8)
    return X, y, masks
