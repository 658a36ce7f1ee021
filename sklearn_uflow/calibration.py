"""The number of false alarms, measured on held-out normal images.

The a contrario bound ``NFA <= epsilon => at most epsilon false regions per
image`` holds under the null model of the latents. A trained flow's latents
are close to that model, not on it, so the bound is kept with a margin that
no one measured: on real sets a normal image's most significant region sits
three to seven decades above the bound, and the defects that fall in that
margin are missed. (With the theory's null the margin goes the other way.)

Held-out normal images measure the law instead of assuming it. Each gets the
log10 NFA of its most significant region, from a null fitted without it; a
monotone map of log10 NFA (:func:`conformal_calibration`) then makes the
promise hold for a new normal image exchangeable with them, whatever
``epsilon`` in ``[1 / (n + 1), 1]``: a conformal bound (Vovk, Gammerman &
Shafer, 2005) that holds at any number of held-out images, not only
asymptotically. Being monotone, the map keeps the a contrario ranking of
regions; beyond the held-out images it keeps the slope that lets a strong
defect's NFA fall far below anything they show.
"""

from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["EPSILONS", "ConformalCalibration", "conformal_calibration", "false_alarm_curve"]

#: The thresholds at which the false-alarm curve is measured: one per decade, 1e-3 to 1e3.
EPSILONS = np.logspace(-3, 3, 7)


class ConformalCalibration(NamedTuple):
    """A monotone map of log10 NFA that makes ``NFA <= epsilon`` a false alarm with probability at most ``epsilon``.

    Between its knots it interpolates linearly; beyond them it keeps the a
    contrario slope (one decade of NFA per decade), so that a region more
    significant than any held-out image keeps its evidence and its rank.
    Values at or above ``ceiling`` (pixels in no region) are left as they
    are, and no other value is mapped above it.

    Parameters
    ----------
    raw : ndarray of shape (k,)
        The knots' uncalibrated log10 NFA, increasing.
    calibrated : ndarray of shape (k,)
        Their calibrated log10 NFA, increasing.
    ceiling : float, default=inf
        The log10 NFA of pixels in no region.

    See Also
    --------
    conformal_calibration : Fit one on held-out normal images.

    Examples
    --------
    >>> from sklearn_uflow.calibration import ConformalCalibration
    >>> calibration = ConformalCalibration([-2.0, 0.0], [-1.0, 0.0], ceiling=3.0)
    >>> calibration([-4.0, -1.0, 3.0])  # one decade per decade below the knots; the ceiling stays
    array([-3. , -0.5,  3. ])
    """

    raw: np.ndarray
    calibrated: np.ndarray
    ceiling: float = np.inf

    @classmethod
    def identity(cls, ceiling=np.inf):
        """Build the map that changes nothing (no calibration).

        Parameters
        ----------
        ceiling : float, default=inf
            The log10 NFA of pixels in no region.

        Returns
        -------
        calibration : ConformalCalibration
            One knot at 0: the slope alone.
        """
        return cls(np.zeros(1), np.zeros(1), ceiling)

    def __call__(self, log_nfa):
        """Calibrate log10 NFA values.

        Parameters
        ----------
        log_nfa : array-like
            Uncalibrated log10 NFA.

        Returns
        -------
        calibrated : ndarray of float64
            The same shape.
        """
        x = np.asarray(log_nfa, dtype=np.float64)
        out = np.interp(x, self.raw, self.calibrated)
        out += np.minimum(x - self.raw[0], 0.0) + np.maximum(x - self.raw[-1], 0.0)
        return np.where(x >= self.ceiling, x, np.minimum(out, self.ceiling))


def conformal_calibration(scores, ceiling=np.inf):
    """Fit the calibration that bounds false alarms by held-out normal images.

    Let ``m_(1) <= ... <= m_(n)`` be the held-out normal images' scores,
    each its smallest log10 NFA. A new normal image exchangeable with them
    scores below ``m_(j)`` with probability at most ``j / (n + 1)``. The map
    sends ``m_(j)`` to ``log10((j + 1) / (n + 1))`` (at most 0), its
    conformal p-value's upper end, so that for every ``epsilon`` in
    ``[1 / (n + 1), 1]``::

        P(calibrated score <= log10 epsilon) <= epsilon

    Below ``1 / (n + 1)`` the bound is ``1 / (n + 1)``: n held-out images
    cannot certify rarer false alarms. One odd held-out image moves only
    the smallest thresholds. Images with no region at all (a score at the
    ceiling) count in ``n`` but set no knot: no threshold below the
    ceiling flags them.

    Parameters
    ----------
    scores : array-like of shape (n,)
        The smallest log10 NFA of each held-out normal image, each computed
        without that image in the null's sample; n >= 1.
    ceiling : float, default=inf
        The log10 NFA of pixels in no region
        (:func:`~sklearn_uflow.acontrario.log10_nfa_ceiling`).

    Returns
    -------
    calibration : ConformalCalibration
        The map, its knots at the distinct scores below the ceiling (the
        identity when there are none).

    See Also
    --------
    ConformalCalibration : The map it returns.
    false_alarm_curve : The false alarms it bounds, measured.

    Examples
    --------
    >>> from sklearn_uflow.calibration import conformal_calibration
    >>> calibration = conformal_calibration([4.0, 5.0, 6.0])  # n = 3: (j + 1) / (n + 1) = 2/4, 3/4, 1
    >>> calibration([4.0, 3.0, 6.0]).round(4)  # below the knots, one decade per decade
    array([-0.301, -1.301,  0.   ])
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = len(scores)
    if n == 0:
        raise ValueError("the conformal calibration needs at least one held-out image's score.")
    # Tied scores share the knot of the last of them, the constraint that binds.
    last = np.r_[scores[1:] != scores[:-1], True] & (scores < ceiling)
    if not last.any():
        return ConformalCalibration.identity(ceiling)
    rank = np.arange(1, n + 1)[last]
    return ConformalCalibration(scores[last], np.log10(np.minimum(rank + 1, n + 1) / (n + 1)), ceiling)


def false_alarm_curve(log_nfa, epsilons=EPSILONS):
    """Count the detections in normal images, threshold by threshold.

    The NFA promises at most ``epsilon`` regions per normal image on average;
    this measures what a set of normal images shows, for a fitted detector's
    ``segmenter_.false_alarm_curve_`` and the documentation's tables.

    Parameters
    ----------
    log_nfa : ndarray of shape (n, H, W)
        The log10 NFA maps of normal images that the flow and the null did not
        learn from.
    epsilons : array-like of float, default=EPSILONS
        The NFA thresholds, > 0.

    Returns
    -------
    curve : dict
        ``"epsilon"``; ``"regions_per_image"``, the mean number of
        connected regions (4-connectivity) with ``NFA <= epsilon`` per
        image, the false alarms that the NFA promises to keep at most
        ``epsilon``; ``"images_flagged"``, the share of images with at
        least one.

    See Also
    --------
    conformal_calibration : The map that bounds the images flagged.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.calibration import false_alarm_curve
    >>> log_nfa = np.full((2, 4, 4), 3.0)
    >>> log_nfa[0, 0, 0] = log_nfa[0, 3, 3] = -1.5  # two regions in the first image
    >>> curve = false_alarm_curve(log_nfa, [0.01, 0.1, 1.0])
    >>> curve["regions_per_image"], curve["images_flagged"]
    (array([0., 1., 1.]), array([0. , 0.5, 0.5]))
    """
    log_nfa = np.asarray(log_nfa)
    epsilons = np.asarray(epsilons, dtype=np.float64)
    regions = np.zeros((len(epsilons), len(log_nfa)))
    for k, threshold in enumerate(np.log10(epsilons)):
        for i, image in enumerate(log_nfa):
            regions[k, i] = ndimage.label(image <= threshold)[1]
    return {"epsilon": epsilons, "regions_per_image": regions.mean(axis=1),
            "images_flagged": (regions > 0).mean(axis=1)}
