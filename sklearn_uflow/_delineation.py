"""Delineation: the extent of the regions the a contrario test detects, read from the anomaly map."""

import numpy as np
from scipy import ndimage

__all__ = ["DELINEATION_SHARE", "delineate"]

#: delineate(): how far from the map's level to a detection's height, in
#: evidence units, its extent reaches (chosen on the development set).
DELINEATION_SHARE = 0.3




_PLANAR = np.zeros((3, 3, 3), bool)
_PLANAR[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within an image, never across


def delineate(log_nfa, maps, level, ceiling):
    """Give the regions that the NFA finds the extent that the anomaly map shows.

    The component trees decide *whether* and *where* the latents are
    significant, with a calibrated number of false alarms; but their regions
    are level sets of ``u`` on each latent grid, which follow the texture
    inside a defect (many small regions, the most significant of each
    branch) rather than its outline. The smoothed anomaly map, at the
    images' size, follows the outline, blurred by the upsampling of the
    coarse scales and the filter. So:

    * each connected component of ``{map >= level}`` carries the smallest
      log10 NFA of the trees' regions it meets (a component that meets none
      carries ``ceiling``, as do the pixels outside every component);
    * its height is the median of the map over that most significant region,
      where the trees say the defect is (a median, so that neither a noisy
      peak nor the blurred rim moves it);
    * its extent is where the map's evidence, ``-log(1 - map)``, stands at
      least :data:`DELINEATION_SHARE` of the way from the level's to the
      height's. The map is one minus a mean of likelihoods, so over a strong
      defect it saturates at 1 on a plateau wider than the defect, and a cut
      in map units takes the whole plateau; in evidence units the plateau
      keeps its relief, and the cut does not depend on how strong the defect
      is.

    The detections are those of the trees that reach above ``level``, so the
    bound on false detections under normality still holds.

    Parameters
    ----------
    log_nfa : ndarray of shape (n, H, W)
        The trees' log10 NFA maps (:func:`log_nfa_maps`).
    maps : ndarray of shape (n, H, W)
        Anomaly maps of the same images, at the same size.
    level : float
        What the anomaly map of a normal image reaches: the segmenter uses
        the median over normal images of their map's maximum.
    ceiling : float
        The log10 NFA of pixels in no region (:func:`log10_nfa_ceiling`).

    Returns
    -------
    log_nfa : ndarray of shape (n, H, W), float64
        Each kept pixel carries its component's log10 NFA, the others
        ``ceiling``.

    See Also
    --------
    log_nfa_maps : The trees' regions it delineates.
    sklearn_uflow.anomaly_map.smoothed_anomaly_maps : The maps it follows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import delineate
    >>> maps = np.array([[[0.1, 0.5, 0.9, 0.6, 0.1, 0.7]]])
    >>> trees = np.array([[[3.0, -5.0, -5.0, 3.0, 3.0, 3.0]]])
    >>> delineate(trees, maps, level=0.4, ceiling=3.0)  # height 0.7: cut at 1 - 0.6**0.7 * 0.3**0.3 = 0.513
    array([[[ 3.,  3., -5., -5.,  3.,  3.]]])
    """
    maps = np.asarray(maps)
    out = np.full(maps.shape, ceiling, dtype=np.float64)
    components, n = ndimage.label(maps >= level, structure=_PLANAR)
    if n == 0:
        return out
    # Work on the components' pixels only: a few percent of the image.
    inside = np.flatnonzero(components)
    label = components.ravel()[inside]
    values = maps.ravel()[inside]
    region_nfa = np.asarray(log_nfa, dtype=np.float64).ravel()[inside]
    index = np.arange(1, n + 1)
    nfa = np.concatenate(([ceiling], ndimage.minimum(region_nfa, label, index)))
    core = region_nfa == nfa[label]
    height = np.concatenate(([np.inf], ndimage.median(values[core], label[core], index)))
    share = DELINEATION_SHARE
    kept = values >= 1.0 - (1.0 - level) ** (1.0 - share) * (1.0 - height[label]) ** share
    out.ravel()[inside[kept]] = nfa[label[kept]]
    return out
