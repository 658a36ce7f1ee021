"""The law of the a contrario test: what ``u = sum_k z_k^2`` does under normality.

Under normality the latents are i.i.d. N(0, 1), so at every pixel of a scale
with ``C`` latent channels ``u`` follows a chi-square law with ``C`` degrees
of freedom (:func:`log10_chi2_sf`, accurate far into the tail). A trained
flow is near that model, not on it: :func:`fit_null` measures the law on
normal images (:class:`NullModel`). The number of tests ``N_T`` counts the
connected regions that could have been tested, by their size
(:func:`log10_number_of_tests`). NumPy and SciPy only.
"""

from typing import NamedTuple

import numpy as np
from scipy import special

__all__ = ["log10_chi2_sf", "log10_number_of_tests", "log10_nfa_ceiling", "NullModel", "fit_null",
           "squared_norms"]

# Fixed polyominoes of size r number about ALPHA * BETA**r / r (Jensen, 2001).
POLYOMINO_ALPHA = 0.316915
POLYOMINO_BETA = 4.062570

_LN10 = np.log(10.0)



def _log_chi2_sf_continued_fraction(x, df, n_terms=300):
    """Natural log of P(chi2_df >= x) from the Legendre continued fraction of
    the upper incomplete gamma function (modified Lentz), valid for
    x/2 > df/2 + 1; it never underflows because it stays in log space."""
    a, t = 0.5 * df, 0.5 * x
    tiny = 1e-300
    b = t + 1.0 - a
    c = np.full_like(t, 1.0 / tiny)
    d = 1.0 / b
    h = d.copy()
    for i in range(1, n_terms + 1):
        an = -i * (i - a)
        b = b + 2.0
        d = an * d + b
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = h * delta
        if np.all(np.abs(delta - 1.0) < 1e-15):
            break
    return -t + a * np.log(t) - special.gammaln(a) + np.log(h)


def log10_chi2_sf(x, df):
    """``log10 P(chi2_df >= x)``, accurate from x = 0 to far in the tail.

    Where the probability is representable it is computed exactly by SciPy
    (through the lower tail when it is close to 1, to keep its digits); where
    it underflows double precision, by the continued fraction of the
    incomplete gamma function in log space. The result is never below
    ``log10 0.5`` for ``x`` below the median: small values are not
    significant.

    Parameters
    ----------
    x : array-like
        Non-negative values of the statistic.
    df : float
        Degrees of freedom.

    Returns
    -------
    log_sf : ndarray of float64
        Same shape as ``x``; 0 at ``x = 0``.

    See Also
    --------
    NullModel.log10_sf : The same tail for a measured null law.
    scipy.stats.chi2 : SciPy's law, exact where it is representable.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import log10_chi2_sf
    >>> print(f"{log10_chi2_sf(2.0, 2):.6f}")  # P = exp(-1)
    -0.434294
    >>> print(f"{log10_chi2_sf(4000.0, 2):.6f}")  # exp(-2000) underflows, its log does not
    -868.588964
    """
    x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
    shape, x = x.shape, x.reshape(-1)
    a = 0.5 * df
    upper = special.gammaincc(a, 0.5 * x)
    out = np.empty_like(x)
    body = x < df
    out[body] = np.log1p(-special.gammainc(a, 0.5 * x[body])) / _LN10
    tail = ~body & (upper > 1e-290)
    out[tail] = np.log10(upper[tail])
    far = ~body & ~tail
    if np.any(far):
        out[far] = _log_chi2_sf_continued_fraction(x[far], df) / _LN10
    return out.reshape(shape)[()]


def log10_number_of_tests(region_size, scale_pixels, total_pixels):
    """``log10 N_T`` for regions of ``region_size`` pixels at a scale.

    The false-alarm budget is split evenly over every (scale, region size)
    pair, and within a pair over every connected region of that size: at
    each of the scale's ``N_s`` pixels, ``ALPHA * BETA**r / r`` fixed
    polyominoes of size ``r`` could be placed. So

    ``N_T(r) = (sum_s N_s) * N_s * ALPHA * BETA**r / r``

    and, summed over all regions of all sizes of all scales, the weights
    ``1 / N_T`` add up to at most 1: the expected number of regions with
    ``NFA <= epsilon`` under normality is at most ``epsilon``.

    Parameters
    ----------
    region_size : int or ndarray of int
        Pixels in the region(s).
    scale_pixels : int
        ``N_s``, pixels of the region's scale.
    total_pixels : int
        ``sum_s N_s`` over the scales.

    Returns
    -------
    log_n_tests : float or ndarray of float64
        ``log10 N_T`` of each region size.

    See Also
    --------
    log10_nfa_ceiling : The number of tests of one pixel at the largest scale.
    significant_regions : Where the number of tests turns a PFA into an NFA.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import log10_number_of_tests
    >>> round(float(log10_number_of_tests(1, 1, 1)), 6)  # ALPHA * BETA
    0.109744
    """
    r = np.asarray(region_size, dtype=np.float64)
    return (np.log10(total_pixels) + np.log10(scale_pixels) + np.log10(POLYOMINO_ALPHA)
            + r * np.log10(POLYOMINO_BETA) - np.log10(r))


def log10_nfa_ceiling(scale_pixels):
    """Compute the largest log10 NFA reported, a single pixel's with no evidence.

    That of one pixel with no evidence at all (PFA = 1) at the largest
    scale. Pixels in no selected region carry it, and no region reports
    more.

    Parameters
    ----------
    scale_pixels : sequence of int
        The pixel counts of the scales.

    Returns
    -------
    ceiling : float
        ``log10 N_T(1)`` at the largest scale.

    See Also
    --------
    log10_number_of_tests : The number of tests of any region size.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import log10_nfa_ceiling, log10_number_of_tests
    >>> bool(log10_nfa_ceiling([16 * 16, 8 * 8]) == log10_number_of_tests(1, 256, 256 + 64))
    True
    """
    return float(log10_number_of_tests(1, max(scale_pixels), sum(scale_pixels)))


class NullModel(NamedTuple):
    """What normal latents look like at one scale.

    ``u = sum_k z_k^2`` follows ``scale * chi2(dof)`` at each pixel up to
    ``tail_start``; beyond it, its survival function decays exponentially
    with mean excess ``tail_scale`` (a peaks-over-threshold tail; ``inf``
    for none). Pixels closer than the correlation ``area`` (in pixels) are
    dependent: a region of ``|R|`` pixels counts as ``max(|R| / area, 1)``
    independent observations. The theory of a perfect flow is
    ``NullModel(1, C, 1, inf, 0)``.

    Parameters
    ----------
    scale : float
        Scale of the chi-square law of ``u``.
    dof : float
        Its degrees of freedom.
    area : float
        Correlation area, in pixels.
    tail_start : float, default=inf
        Where the exponential tail starts.
    tail_scale : float, default=0.0
        The tail's mean excess.

    See Also
    --------
    fit_null : Measure one from latents of normal images.
    log10_chi2_sf : The theory's tail.

    Examples
    --------
    >>> from sklearn_uflow.acontrario import NullModel
    >>> null = NullModel.theory(2)
    >>> null.scale, null.dof, null.area
    (1.0, 2.0, 1.0)
    """

    scale: float
    dof: float
    area: float
    tail_start: float = np.inf
    tail_scale: float = 0.0

    @classmethod
    def theory(cls, channels):
        """Build the null of i.i.d. N(0, 1) latents, the paper's.

        Parameters
        ----------
        channels : int
            Latent channels at the scale.

        Returns
        -------
        null : NullModel
            ``NullModel(1, channels, 1)``.
        """
        return cls(1.0, float(channels), 1.0)

    def log10_sf(self, u):
        """Compute ``log10 P(U >= u)`` under this model.

        Parameters
        ----------
        u : array-like
            Values of ``sum_k z_k^2``.

        Returns
        -------
        log_sf : ndarray of float64
            The same shape as ``u``.
        """
        u = np.asarray(u, dtype=np.float64)
        body = log10_chi2_sf(np.minimum(u, self.tail_start) / self.scale, self.dof)
        if not np.isfinite(self.tail_start):
            return body
        excess = np.maximum(u - self.tail_start, 0.0)
        return body - excess / (self.tail_scale * _LN10)


def _correlation_area(u):
    """Integral of the spatial autocorrelation of ``u`` (``(n, H, W)``) over
    the lags, within a quarter of the map, where it stands clear of the
    estimate's noise: the area over which pixels are dependent."""
    n, height, width = u.shape
    centred = u - u.mean(axis=(1, 2), keepdims=True)
    spectrum = np.fft.rfft2(centred, s=(2 * height, 2 * width))
    correlation = np.fft.irfft2(np.abs(spectrum) ** 2, s=(2 * height, 2 * width)).sum(0)
    if correlation[0, 0] <= 0:
        return 1.0
    correlation /= correlation[0, 0]
    rows = np.r_[0 : max(height // 4, 1), -max(height // 4, 1) + 1 : 0]
    cols = np.r_[0 : max(width // 4, 1), -max(width // 4, 1) + 1 : 0]
    window = correlation[np.ix_(rows % (2 * height), cols % (2 * width))]
    noise = 3.0 / np.sqrt(u.size)  # ~3 standard errors of a null correlation
    return float(max(window[window > noise].sum(), 1.0))


def fit_null(latents):
    """Estimate the null model of each scale from latents of normal images.

    A trained flow does not make latents exactly i.i.d. N(0, 1): channels
    of a pixel stay correlated, which inflates the variance of ``u``, and
    neighbouring pixels stay dependent. Matching the first two moments of
    ``u`` by ``scale * chi2(dof)`` (Satterthwaite's approximation) and
    measuring the correlation area from the autocorrelation keeps the a
    contrario test's form with the dependence the data show.

    Parameters
    ----------
    latents : list of torch.Tensor or ndarray of shape (n, C, H, W)
        Latents of held-out normal images, one entry per scale.

    Returns
    -------
    null : list of NullModel
        One per scale.

    See Also
    --------
    NullModel : What it measures.
    NullModel.theory : The law of a perfect flow, measured by nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_uflow.acontrario import fit_null
    >>> rng = np.random.default_rng(0)
    >>> null = fit_null([rng.standard_normal((50, 4, 16, 16))])[0]  # i.i.d. N(0, 1): the theory
    >>> round(null.scale, 1), round(null.dof), round(null.area, 1)
    (1.0, 4, 1.0)
    """
    null = []
    for z in latents:
        u = squared_norms(z)
        mean, var = float(u.mean()), float(u.var())
        if not var > 0:
            null.append(NullModel.theory(z.shape[1]))
            continue
        # The moments fit the bulk; the extreme tail, which decides the
        # false alarms, is heavier: model it beyond the 99th percentile by
        # the exponential decay of the observed excesses, but never lighter
        # than the scaled chi-square's own tail.
        scale, dof = var / (2 * mean), 2 * mean**2 / var
        start = float(np.quantile(u, 0.99))
        excess = u[u > start] - start
        tail_scale = max(float(excess.mean()) if excess.size else 0.0, 2 * scale)
        null.append(NullModel(scale, dof, _correlation_area(u), start, tail_scale))
    return null


def squared_norms(z):
    """``u = sum_k z_k^2`` per image, ``(n, H, W)`` float64.

    Summed image by image in the latents' own precision (float32 from the
    flow), which keeps the work in cache: a float64 copy of a batch of
    MS-CaiT latents would cost more than the whole segmentation. float64 is
    used where float32 overflows.
    """
    z = z.detach().cpu().numpy() if hasattr(z, "detach") else np.asarray(z)  # a torch tensor, or an array
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float32)
    u = np.stack([np.einsum("chw,chw->hw", x, x) for x in z]).astype(np.float64)
    if not np.isfinite(u).all():
        z = z.astype(np.float64)
        u = np.stack([np.einsum("chw,chw->hw", x, x) for x in z])
    return u
