"""The data contract shared by every estimator and the runtime: what an image batch is.

Images arrive as array-likes of shape ``(n, H, W, C)`` with ``C`` in {1, 3}, or
``(n, H, W)`` for grayscale, with dtype ``uint8`` (0-255) or floating point in
[0, 1]. All images of one call share ``H`` and ``W``. Everything downstream
sees a C-contiguous ``float32`` array ``(n, H, W, C)`` in [0, 1]. NumPy only,
so that the torch-free runtime checks images as the estimators do; the tensors
they become are :mod:`sklearn_uflow._tensors`'.
"""

import numbers
import sys

import numpy as np
from scipy import sparse

__all__ = ["as_image_array", "check_images"]

def _describe_sizes(shapes):
    sizes = sorted({tuple(s[:2]) for s in shapes})
    shown = ", ".join(f"{h}x{w}" for h, w in sizes[:4])
    return shown + (", ..." if len(sizes) > 4 else "")


def as_image_array(X, *, n_channels=None, image_size=None, name="X"):
    """Check the layout of a batch of images without converting its values.

    Returns an ``(n, H, W, C)`` array of the caller's dtype; raises
    ``ValueError`` on wrong dimensions, dtype, channel count or sizes. See
    :func:`check_images` for the parameters.
    """
    if isinstance(X, (list, tuple)) and len(X) and not isinstance(X[0], numbers.Number):
        shapes = [np.shape(x) for x in X]
        if len({s[:2] for s in shapes}) > 1:
            raise ValueError(
                f"{name}: all images of one call must share height and width; got sizes "
                f"{_describe_sizes(shapes)}. Resize them first (load_anomaly_folder(..., "
                "image_size=...) does this for folders)."
            )
    if sparse.issparse(X):
        raise ValueError(f"{name}: sparse input is not supported; images are dense arrays.")
    torch = sys.modules.get("torch")  # a tensor means torch is imported; the runtime has none
    if torch is not None and torch.is_tensor(X):
        X = X.detach().cpu()
        X = (X.float() if X.dtype == torch.bfloat16 else X).numpy()
    try:
        X = np.asarray(X)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: could not read the images as one array ({exc}).") from None

    if np.iscomplexobj(X):
        raise ValueError(f"{name}: Complex data not supported; images are real-valued.")
    if X.dtype == object:
        raise ValueError(
            f"{name}: images must be a numeric array, got dtype object (mixed sizes or "
            "non-numeric entries?)."
        )
    if X.dtype == bool:
        raise ValueError(
            f"{name}: boolean images are not supported; convert them, e.g. "
            "X.astype(np.uint8) * 255."
        )
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
        raise ValueError(f"{name}: unsupported image dtype {X.dtype}; use uint8 or float in [0, 1].")
    if X.size and not np.issubdtype(X.dtype, np.unsignedinteger) and X.min() < 0:
        raise ValueError(
            f"{name}: Negative values in data; pixel values are uint8 in [0, 255] or float in [0, 1]."
        )
    if X.ndim == 3:
        X = X[..., np.newaxis]
    if X.ndim != 4:
        raise ValueError(
            f"{name}: expected images of shape (n_images, H, W, C) or (n_images, H, W), "
            f"got an array with {X.ndim} dimension(s) and shape {X.shape}."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name}: no images (found an array of shape {X.shape}).")
    if X.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name}: images must have 1 (grayscale) or 3 (RGB) channels in the last axis, "
            f"got shape {X.shape} (channels-first arrays must be transposed to (n, H, W, C))."
        )
    if X.shape[1] == 0 or X.shape[2] == 0:
        raise ValueError(f"{name}: images of size {X.shape[1]}x{X.shape[2]} are empty.")
    if n_channels is not None and X.shape[-1] != n_channels:
        raise ValueError(
            f"{name}: images have {X.shape[-1]} channel(s), but the estimator was fitted "
            f"on images with {n_channels}."
        )
    if image_size is not None and tuple(X.shape[1:3]) != tuple(image_size):
        raise ValueError(
            f"{name}: images are {X.shape[1]}x{X.shape[2]}, but the estimator was "
            f"fitted on {image_size[0]}x{image_size[1]} images."
        )
    return X


def check_images(X, *, n_channels=None, image_size=None, name="X"):
    """Validate a batch of images and return it as float32 in [0, 1].

    Parameters
    ----------
    X : array-like of shape (n_images, H, W, C) or (n_images, H, W)
        Images, ``uint8`` in [0, 255] or floating point in [0, 1]. ``C`` is 1
        (grayscale) or 3 (RGB).
    n_channels : int, default=None
        If given, the number of channels the images must have (the one seen
        in ``fit``).
    image_size : tuple of int, default=None
        If given, the ``(H, W)`` the images must have.
    name : str, default="X"
        Name used in error messages.

    Returns
    -------
    images : ndarray of shape (n_images, H, W, C), dtype float32
        The images scaled to [0, 1].

    Raises
    ------
    ValueError
        With a message naming the problem: wrong number of dimensions,
        unsupported dtype, NaN or infinite values, values out of range,
        images of different sizes, or no image at all.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow._images import check_images
    >>> check_images(np.full((2, 4, 4), 255, dtype=np.uint8)).shape
    (2, 4, 4, 1)
    """
    X = as_image_array(X, n_channels=n_channels, image_size=image_size, name=name)
    if X.dtype == np.uint8:
        return X.astype(np.float32) / np.float32(255)
    if np.issubdtype(X.dtype, np.integer):
        low, high = int(X.min()), int(X.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{name}: integer images must be 8-bit values in [0, 255], got values in "
                f"[{low}, {high}]; rescale them to uint8 or to float in [0, 1]."
            )
        return X.astype(np.float32) / np.float32(255)
    images = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(images).all():
        raise ValueError(f"{name}: images contain NaN or infinite values.")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = " (8-bit values stored as float? divide by 255)" if 0 <= low and high <= 255 else ""
        raise ValueError(f"{name}: float images must lie in [0, 1], got values in [{low:g}, {high:g}]{hint}.")
    return images
