"""Peaks too sharp to be a star: the test that tells a compact cosmic ray from an undersampled star core.

A star's profile falls off no faster than the camera's PSF in any direction; a cosmic ray's track can be
one pixel wide across itself at any angle. So a peak is compared with the fainter of its four
neighbour pairs through it (up-down and left-right at 1 px, the two diagonals at sqrt(2) px): a track
along a row, a column or a diagonal leaves one pair near the sky, which no star does. Each pair kind has
its own limit, from a Gaussian of the camera's sharpest FWHM or from the frame's own bright stars.

Excess is measured over one background per peak, the lower quartile of its 7x7 window: in a crowded or
well-sampled field a median taken at each neighbour sits on the star itself, leaves the neighbours no
excess and makes the star look infinitely sharp; a background too low only makes every peak flatter.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

__all__ = ["MIN_STARS", "PeakRatioLimits", "peak_ratio_limit", "sharper_than_psf", "star_peak_ratio"]

MIN_STARS = 30  # bright stars a frame needs before its own stars set the sharpness limits
BACKGROUND_HALF = 3  # a peak's background: the lower quartile of the usable pixels of its 7x7 window
BACKGROUND_PERCENTILE = 25.0
AXIS_PAIRS = (((-1, 0), (1, 0)), ((0, -1), (0, 1)))
DIAGONAL_PAIRS = (((-1, -1), (1, 1)), ((-1, 1), (1, -1)))


class PeakRatioLimits(NamedTuple):
    """Peak / fainter-pair ratios above which a peak is sharper than any star: across its axis pairs and
    across its diagonal pairs."""

    axis: float
    diagonal: float


def star_peak_ratio(fwhm_px: float, *, diagonal: bool = False) -> float:
    """The largest peak / neighbour ratio a star can have: a Gaussian PSF of ``fwhm_px`` centred on a
    pixel, integrated over pixels (off-centre stars and broader PSFs are flatter). ``diagonal``: for the
    diagonal neighbours, the square of the side ratio (the integrated Gaussian is separable)."""
    scale = fwhm_px / 2.3548 * math.sqrt(2.0)
    centre = math.erf(0.5 / scale)
    side = (math.erf(1.5 / scale) - centre) / 2.0
    ratio = centre / side
    return ratio**2 if diagonal else ratio


def _prepared(image, noise_sigma, ignore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 image, noise sigma at every pixel, and the usable (unignored) pixels."""
    img = np.asarray(image, np.float64)
    sigma = np.broadcast_to(np.asarray(noise_sigma, np.float64), img.shape)
    usable = np.ones(img.shape, bool) if ignore is None else ~np.asarray(ignore, bool)
    return img, sigma, usable


def _local_background(img, usable, ys, xs) -> np.ndarray:
    """Lower quartile of the usable in-frame pixels of the 7x7 window around each ``(ys, xs)``.

    Only usable pixels: a filled saturated core, bleed column or hot pixel (filled with the frame's median,
    which in a crowded field can lie far above or below the local sky) would otherwise shift the
    background of every peak within 3 px of it.
    """
    half = BACKGROUND_HALF
    padded = np.pad(np.where(usable, img, np.nan), half, constant_values=np.nan)
    dy, dx = np.mgrid[0 : 2 * half + 1, 0 : 2 * half + 1]
    windows = padded[ys[:, None] + dy.ravel(), xs[:, None] + dx.ravel()]
    return np.nanpercentile(windows, BACKGROUND_PERCENTILE, axis=1)  # never all-NaN: the peak is usable


def _fainter_pair(img, ys, xs, pairs) -> np.ndarray:
    """Mean value of the fainter of each pixel's neighbour ``pairs``."""
    means = [(img[ys + ay, xs + ax] + img[ys + by, xs + bx]) / 2.0 for (ay, ax), (by, bx) in pairs]
    return np.minimum(*means)


def _measurable(usable, ys, xs) -> np.ndarray:
    """Whether all eight neighbours of each pixel lie in the frame and are usable.

    All of them, not a complete pair: next to a saturated core or a bleed column (ignored) the pair
    across the core is cut, and the pair along its edge, farther out on the star's steep wing, would make
    any star look sharp.
    """
    h, w = usable.shape
    inside = (ys >= 1) & (ys < h - 1) & (xs >= 1) & (xs < w - 1)
    yc, xc = np.clip(ys, 1, h - 2), np.clip(xs, 1, w - 2)
    around = np.ones(ys.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            around &= usable[yc + dy, xc + dx]
    return inside & around


def _peak_profiles(img, usable, ys, xs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the measurable peaks among ``(ys, xs)`` (:func:`_measurable`): their excess over the local
    background, that of their fainter axis pair and that of their fainter diagonal pair (NaN elsewhere)."""
    ok = _measurable(usable, ys, xs)
    profiles = np.full((3, ys.size), np.nan)
    y, x = ys[ok], xs[ok]
    background = _local_background(img, usable, y, x)
    profiles[:, ok] = (img[y, x] - background, _fainter_pair(img, y, x, AXIS_PAIRS) - background,
                       _fainter_pair(img, y, x, DIAGONAL_PAIRS) - background)
    return profiles[0], profiles[1], profiles[2]


def peak_ratio_limit(image, noise_sigma, fwhm_px: float, *, margin: float = 1.5, ignore=None,
                     min_stars: int = MIN_STARS) -> PeakRatioLimits:
    """The ratios of a peak to its fainter axis pair and to its fainter diagonal pair above which it is
    sharper than any star here.

    Each is ``margin`` times the larger of :func:`star_peak_ratio` for the camera's sharpest PSF and, where
    the frame has at least ``min_stars`` bright stars (local maxima whose 5x5 median is 10 sigma over a
    7x7 median), the 95th percentile of their ratios (the top 5% holds rays on stars and blends):
    undersampled cameras' real cores are sharper than a Gaussian of their quoted FWHM, and the frame's own
    stars say by how much.
    """
    img, sigma, usable = _prepared(image, noise_sigma, ignore)
    background = ndimage.median_filter(img, 7, mode="nearest")
    smooth = ndimage.median_filter(img, 5, mode="nearest") - background
    stars = (img == ndimage.maximum_filter(img, 3)) & (smooth > 10 * sigma) & usable
    ys, xs = np.nonzero(stars)
    peak, axis, diagonal = _peak_profiles(img, usable, ys, xs)
    limits = []
    for pair_excess, is_diagonal in ((axis, False), (diagonal, True)):
        bound = star_peak_ratio(fwhm_px, diagonal=is_diagonal)
        keep = pair_excess > 0  # False where NaN
        if keep.sum() >= min_stars:
            bound = max(bound, float(np.percentile(peak[keep] / pair_excess[keep], 95)))
        limits.append(margin * bound)
    return PeakRatioLimits(*limits)


def sharper_than_psf(image, seeds, noise_sigma, fwhm_px: float, *, margin: float = 1.5,
                     significance: float = 5.0, ignore=None) -> np.ndarray:
    """Connected groups of ``seeds`` whose brightest pixel is too sharp to be a star's peak.

    A group is taken as a ray when its peak's excess over the local background exceeds ``limit`` times
    that of its fainter axis pair, or of its fainter diagonal pair, by ``significance`` times the noise of
    that difference (the peak's own Poisson noise included), the limits being :func:`peak_ratio_limit`'s
    (the camera's sharpest PSF, or the frame's own sharpest stars, times ``margin``). Faint peaks, whose
    neighbours cannot be measured that well, and peaks beside ignored pixels or on the frame's edge stay
    undecided (not returned).

    Parameters
    ----------
    image : 2-D array
        Electrons, ignored pixels filled.
    seeds : 2-D bool array
        The own-ray finder's ungrown mask.
    noise_sigma : 2-D array or float
        Noise sigma of the sky and sources in electrons (:func:`~deepcr_dask.sim.own_rays.local_noise`).
    fwhm_px : float
        The camera's sharpest PSF FWHM in pixels.
    margin, significance : float
        Limits' factor over the sharpest star; noise sigmas a peak must pass them by.
    ignore : 2-D bool array, optional
        Pixels that must not be measured (bad, saturated).

    Returns
    -------
    bool ndarray
    """
    img, sigma, usable = _prepared(image, noise_sigma, ignore)
    seeds = np.asarray(seeds, bool)
    labels, n = ndimage.label(seeds, np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(seeds.shape, bool)
    index = np.arange(1, n + 1)
    # a group wholly on ignored pixels gets an ignored "peak", which _measurable rejects
    peaks = np.asarray(ndimage.maximum_position(np.where(seeds & usable, img, -np.inf), labels, index))
    ys, xs = peaks[:, 0], peaks[:, 1]
    limits = peak_ratio_limit(img, sigma, fwhm_px, margin=margin, ignore=~usable)
    peak, axis, diagonal = _peak_profiles(img, usable, ys, xs)
    peak_var = sigma[ys, xs] ** 2 + np.clip(peak, 0, None)  # the ray's (or star's) own Poisson noise
    pair_var = sigma[ys, xs] ** 2 / 2.0
    sharp = np.zeros(ys.shape, bool)
    for pair, limit in ((axis, limits.axis), (diagonal, limits.diagonal)):
        noise = np.sqrt(peak_var + limit**2 * pair_var)
        sharp |= peak - limit * pair > significance * noise  # False where not measurable (NaN)
    return np.isin(labels, index[sharp])
