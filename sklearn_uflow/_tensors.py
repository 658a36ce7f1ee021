"""Per-scale maps as torch tensors: images to a backbone's input, rows of features to maps and back, resizing.

Per-scale maps (features or latents) travel between estimators as rows:
:func:`flatten_maps` and :func:`split_features`.
"""

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["flatten_maps", "images_to_tensor", "resize_maps", "split_features"]


def images_to_tensor(images, size, mean, std, device="cpu"):
    """Turn checked images into a normalised ``(n, 3, H, W)`` tensor, ``size``
    being ``H = W`` or ``(H, W)``.

    Grayscale is replicated to three channels, since ImageNet backbones expect
    RGB. Downscaling is antialiased so that small defects are averaged, not
    aliased away.
    """
    x = (images if torch.is_tensor(images) else torch.from_numpy(images)).to(device).permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) != size:
        antialias = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.as_tensor(mean, dtype=x.dtype, device=device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def resize_maps(maps, size):
    """Resize ``(n, h, w)`` score maps to ``size = (H, W)`` bilinearly, pixel centres aligned.

    Maps of labels or NFA values, whose values must not be invented, are
    resized by :func:`sklearn_uflow._resize.resize_nearest`.
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)


def split_features(rows, shapes):
    """Turn rows of flattened features back into per-scale tensors.

    The rows are the Pipeline's form of features, the tensors the flow's; the
    split is a reshape, so no feature is copied where NumPy can avoid it.

    Parameters
    ----------
    rows : array-like of shape (n_samples, sum(C * H * W))
        Output of a feature step's ``transform`` (or of the flow's latents).
    shapes : sequence of (C, H, W)
        The per-scale shapes, e.g. a fitted ``feature_shapes_``.

    Returns
    -------
    maps : list of torch.Tensor of shape (n_samples, C, H, W)
        Views into ``rows`` where possible, one per scale; float64 rows stay
        float64, other rows become float32.

    See Also
    --------
    flatten_maps : Maps into rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.features import split_features
    >>> maps = split_features(np.zeros((2, 2 * 4 * 4 + 3 * 2 * 2)), [(2, 4, 4), (3, 2, 2)])
    >>> [tuple(m.shape) for m in maps]
    [(2, 2, 4, 4), (2, 3, 2, 2)]
    """
    rows = np.asarray(rows)
    if rows.dtype not in (np.float32, np.float64) or not rows.flags.writeable:
        # torch cannot share a read-only buffer (a memory map, say): copy it
        rows = rows.astype(rows.dtype if rows.dtype in (np.float32, np.float64) else np.float32)
    rows = torch.from_numpy(rows)
    sizes = [int(np.prod(s)) for s in shapes]
    if rows.ndim != 2 or rows.shape[1] != sum(sizes):
        raise ValueError(
            f"expected rows of {sum(sizes)} values (shapes {list(shapes)}), got an array of "
            f"shape {tuple(rows.shape)}."
        )
    return [part.reshape(-1, *s) for part, s in zip(torch.split(rows, sizes, dim=1), shapes)]


def flatten_maps(maps):
    """Concatenate per-scale maps into rows: the inverse of :func:`split_features`.

    Rows are what scikit-learn passes between the steps of a Pipeline; the
    shapes that turn them back into maps are the feature step's
    ``feature_shapes_``.

    Parameters
    ----------
    maps : list of torch.Tensor of shape (n_samples, C, H, W)
        One tensor per scale.

    Returns
    -------
    rows : ndarray of shape (n_samples, sum(C * H * W))
        Each scale flattened channel-major, scale after scale.

    See Also
    --------
    split_features : Rows back into maps.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.features import flatten_maps
    >>> flatten_maps([torch.zeros(2, 3, 4, 4), torch.ones(2, 5, 2, 2)]).shape
    (2, 68)
    """
    return torch.cat([m.reshape(m.shape[0], -1) for m in maps], dim=1).numpy()
