"""Phase 3 of U-Flow: the anomaly map of the paper's equation 2.

For each scale ``l`` with ``C_l`` latent channels, a pixel's likelihood score
is ``exp(-(1 / 2 C_l) * sum_k z_k^2)``; the scores are upsampled bilinearly to
the output size, averaged over scales, and subtracted from 1, so that the map
lies in [0, 1] and grows with anomaly. :func:`smooth_maps` then applies the
Gaussian filter that most anomaly-detection tools apply to their maps.
"""

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["anomaly_map", "smooth_maps", "smoothing_sigma", "smoothed_anomaly_maps", "AUTO_SMOOTHING"]

#: ``map_smoothing="auto"``: the filter's width as a share of the image's
#: side (one 4-pixel cell of the Lite0 preset's finest grid at 256x256).
AUTO_SMOOTHING = 1 / 64


def anomaly_map(latents, size):
    """Anomaly map of a batch from its per-scale latents.

    The paper's equation 2: at each scale, a pixel's likelihood under the
    normal law, ``exp(-||z||^2 / 2C)``, is upsampled bilinearly to ``size``;
    the map is one minus their mean, 0 where every scale is typical.

    Parameters
    ----------
    latents : list of torch.Tensor of shape (n, C_l, H_l, W_l)
        The flow's latents, one tensor per scale.
    size : tuple of int
        Output ``(H, W)``.

    Returns
    -------
    maps : torch.Tensor of shape (n, H, W)
        ``1 - mean_l upsample(exp(-mean_k z_k^2 / 2))``, in [0, 1].

    See Also
    --------
    smoothed_anomaly_maps : The map with its Gaussian filter, as NumPy.

    Examples
    --------
    >>> import torch
    >>> from sklearn_uflow.anomaly_map import anomaly_map
    >>> anomaly_map([torch.zeros(1, 4, 2, 2)], (4, 4)).max().item()
    0.0
    """
    # torch is imported where it is used: the torch-free runtime smooths its ONNX graph's maps with this module.
    import torch

    from ._tensors import resize_maps

    likelihood = sum(
        resize_maps(torch.exp(-0.5 * z.float().pow(2).mean(dim=1)), size) for z in latents
    )
    return 1.0 - likelihood / len(latents)


def smoothing_sigma(map_smoothing, size, finest_cells):
    """The Gaussian filter's width, in pixels per axis, that ``map_smoothing`` means.

    The width follows the image, not the backbone: ``"auto"`` is a share of
    each side, so a defect of a given share of the image is smoothed alike at
    any input size.

    Parameters
    ----------
    map_smoothing : "auto" or float
        ``"auto"``: :data:`AUTO_SMOOTHING` of each side of ``size``. A float:
        in cells of the finest latent grid; 0 for no filter.
    size : tuple of int
        ``(H, W)`` of the maps.
    finest_cells : tuple of int
        ``(H, W)`` of the finest latent grid.

    Returns
    -------
    sigma : list of float
        Standard deviation along rows and columns.

    See Also
    --------
    smooth_maps : The filter of this width.

    Examples
    --------
    >>> from sklearn_uflow.anomaly_map import smoothing_sigma
    >>> smoothing_sigma("auto", (256, 128), (64, 32)), smoothing_sigma(2.0, (256, 128), (64, 32))
    ([4.0, 2.0], [8.0, 8.0])
    """
    if isinstance(map_smoothing, str):  # "auto"
        return [AUTO_SMOOTHING * side for side in size]
    return [map_smoothing * side / cells for side, cells in zip(size, finest_cells)]


def smooth_maps(maps, sigma):
    """Gaussian smoothing of a batch of maps.

    The maps are filtered one by one, not across the batch, so that an image's
    map does not depend on the others'.

    Parameters
    ----------
    maps : ndarray of shape (n, H, W)
        Maps to smooth.
    sigma : float or (float, float)
        Standard deviation in pixels, or one per axis (rows, columns); 0
        returns ``maps`` unchanged.

    Returns
    -------
    smoothed : ndarray of shape (n, H, W)
        :func:`scipy.ndimage.gaussian_filter` of each map, with the edges
        extended (``mode="nearest"``) and the kernel cut at 4 sigma.

    See Also
    --------
    smoothing_sigma : The width ``map_smoothing`` means.
    scipy.ndimage.gaussian_filter : The filter.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.anomaly_map import smooth_maps
    >>> spike = np.zeros((1, 9, 9))
    >>> spike[0, 4, 4] = 1.0
    >>> round(float(smooth_maps(spike, 1.0).sum()), 4)  # the filter keeps the mass
    1.0
    """
    sigma_rows, sigma_cols = np.broadcast_to(np.asarray(sigma, dtype=float), 2)
    if max(sigma_rows, sigma_cols) <= 0:
        return maps
    # scipy's separable filter, not torch's conv2d with a one-channel kernel:
    # the maps are on the CPU by now, where it is the faster.
    return gaussian_filter(maps, (0, sigma_rows, sigma_cols), mode="nearest", truncate=4.0)


def smoothed_anomaly_maps(latents, size, map_smoothing="auto"):
    """:func:`anomaly_map` filtered as ``map_smoothing`` says, as NumPy.

    The maps a detector returns: :func:`anomaly_map` at ``size``, then the
    Gaussian filter of :func:`smoothing_sigma`, which removes the blocky
    texture of the coarse scales' upsampling.

    Parameters
    ----------
    latents : list of torch.Tensor or ndarray of shape (n, C_l, H_l, W_l)
        The flow's latents, finest scale first.
    size : tuple of int
        Output ``(H, W)``.
    map_smoothing : "auto" or float, default="auto"
        See :func:`smoothing_sigma`.

    Returns
    -------
    maps : ndarray of shape (n, H, W), float32
        In [0, 1]; higher is more anomalous.

    See Also
    --------
    anomaly_map : The unsmoothed map, as torch.
    sklearn_uflow.UFlowDetector.anomaly_maps : The same maps from images.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.anomaly_map import smoothed_anomaly_maps
    >>> z = np.zeros((1, 4, 4, 4), dtype=np.float32)
    >>> z[0, :, 1, 1] = 3.0
    >>> maps = smoothed_anomaly_maps([z], (16, 16))
    >>> maps.shape, maps.dtype, bool(maps[0, 5, 5] > maps[0, 15, 15])
    ((1, 16, 16), dtype('float32'), True)
    """
    import torch

    latents = [torch.as_tensor(z) for z in latents]
    maps = anomaly_map(latents, size).cpu().numpy()
    return smooth_maps(maps, smoothing_sigma(map_smoothing, size, tuple(latents[0].shape[-2:])))
