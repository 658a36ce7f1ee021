"""Pictures of results: overlays of anomaly maps and masks on images."""

import numpy as np
from scipy import ndimage

__all__ = ["heatmap", "overlay", "plot_grid"]

# A perceptually ordered dark-blue -> red -> yellow ramp ("inferno"-like).
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                  [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def heatmap(values, vmin=0.0, vmax=1.0):
    """Colour a 2-D map into an RGB image: dark for low values, yellow for high.

    A fixed colour scale (matplotlib's "magma" when it is installed, a close
    ramp otherwise) and fixed limits, so that colours mean the same value in
    every image of a run.

    Parameters
    ----------
    values : array-like of shape (H, W)
        The map.
    vmin, vmax : float, default=0.0, 1.0
        The values coloured darkest and brightest; others are clipped.

    Returns
    -------
    picture : ndarray of shape (H, W, 3), uint8
        The coloured map.

    See Also
    --------
    overlay : The map over its image.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.plotting import heatmap
    >>> heatmap(np.array([[0.0, 1.0]])).shape
    (1, 2, 3)
    """
    t = np.clip((np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12), 0, 1) * (len(_RAMP) - 1)
    low = np.floor(t).astype(int).clip(0, len(_RAMP) - 2)
    frac = (t - low)[..., None]
    return np.round(_RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac).astype(np.uint8)


def overlay(image, anomaly_map=None, mask=None, *, true_mask=None, alpha=0.45, vmin=0.0, vmax=1.0):
    """Blend an anomaly map over an image and draw the masks' contours.

    The picture an inspector reads: the map shows where the evidence is, the
    mask's contour what was detected, the ground truth's what was there.

    Parameters
    ----------
    image : ndarray of shape (H, W), (H, W, 1) or (H, W, 3)
        The image, uint8 or float in [0, 1].
    anomaly_map : ndarray of shape (H, W), default=None
        Drawn as a heatmap with opacity ``alpha``.
    mask : ndarray of shape (H, W), bool, default=None
        Its contour is drawn in cyan.
    true_mask : ndarray of shape (H, W), bool, default=None
        The ground truth, its contour drawn in green (under the mask's).
    alpha : float, default=0.45
        Opacity of the heatmap.
    vmin, vmax : float, default=0.0, 1.0
        The map values coloured darkest and brightest (:func:`heatmap`).

    Returns
    -------
    picture : ndarray of shape (H, W, 3), uint8
        The image with the heatmap and the contours.

    See Also
    --------
    heatmap : The map's colours.
    plot_grid : Several images in one figure.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.plotting import overlay
    >>> overlay(np.zeros((4, 4)), np.ones((4, 4)), np.eye(4, dtype=bool)).shape
    (4, 4, 3)
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    picture = image.astype(np.float64)
    if anomaly_map is not None:
        picture = (1 - alpha) * picture + alpha * heatmap(anomaly_map, vmin, vmax)
    picture = np.round(picture).astype(np.uint8)
    for contour, colour in ((true_mask, (0, 200, 0)), (mask, (0, 255, 255))):
        if contour is not None and np.any(contour):
            picture[_inner_boundary(np.asarray(contour, bool))] = colour
    return picture


def _inner_boundary(mask):
    # scikit-image's find_boundaries(mask, mode="inner"): the mask's pixels with a 4-neighbour outside it, the
    # frame's edge not counting as outside.
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def plot_grid(images, anomaly_maps=None, masks=None, true_masks=None, *, n_columns=None, titles=None):
    """A figure with one column per image: image, true mask, anomaly map, mask.

    Rows that are not given are left out. Needs matplotlib (the ``plot``
    extra).

    Parameters
    ----------
    images : array-like of shape (n, H, W[, C])
        The images.
    anomaly_maps : array-like of shape (n, H, W), default=None
        Drawn with the "magma" colour map over [0, 1].
    masks : array-like of shape (n, H, W), default=None
        Predicted masks.
    true_masks : array-like of shape (n, H, W), default=None
        Ground truth.
    n_columns : int, default=None
        Images shown (the first ones); default all, at most 8.
    titles : list of str, default=None
        One title per column.

    Returns
    -------
    figure : matplotlib.figure.Figure
        The figure, one column per image.

    See Also
    --------
    overlay : One image, as an RGB array.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.plotting import plot_grid
    >>> figure = plot_grid(np.zeros((2, 8, 8)), anomaly_maps=np.zeros((2, 8, 8)))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    rows = [("image", images, None)]
    rows += [(name, data, "magma") for name, data in
             (("truth", true_masks), ("anomaly map", anomaly_maps), ("mask", masks)) if data is not None]
    n = min(len(images), n_columns or 8)
    figure, axes = plt.subplots(len(rows), n, figsize=(1.8 * n, 1.8 * len(rows)), squeeze=False)
    for r, (name, data, cmap) in enumerate(rows):
        for c in range(n):
            picture = np.asarray(data[c])
            if picture.ndim == 3 and picture.shape[-1] == 1:
                picture = picture[..., 0]
            ax = axes[r, c]
            ax.imshow(picture.astype(float) if picture.dtype == bool else picture,
                      cmap=cmap or ("gray" if picture.ndim == 2 else None),
                      vmin=0 if cmap else None, vmax=1 if cmap else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            if r == 0 and titles is not None:
                ax.set_title(titles[c], fontsize=9)
    figure.tight_layout()
    return figure
