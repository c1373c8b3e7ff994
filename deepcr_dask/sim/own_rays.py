"""Finding a real frame's own cosmic rays, conservatively, so that they can be ignored."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["elongated_components", "find_own_cosmic_rays", "grow_disk", "local_noise", "peak_ratio_limit",
           "protected_sources", "sharper_than_psf", "source_pixels", "star_peak_ratio"]

MIN_STARS = 30  # bright stars a frame needs before its own stars set the sharpness limit


def find_own_cosmic_rays(
    image, noise_sigma, *, sigclip: float = 4.0, objlim: float = 1.0, sigfrac: float = 0.3, grow: int = 2,
    protect=None,
) -> np.ndarray:
    """Conservative cosmic-ray finder for real frames (a Laplacian / fine-structure test, as L.A.Cosmic).

    Thresholds are lower than astroscrappy's defaults (sigclip 4.5, objlim 5) and the result is dilated, so
    it errs towards flagging: its pixels are meant to be ignored, not corrected.

    Parameters
    ----------
    image : 2-D array
        Electrons.
    noise_sigma : 2-D array or float
        Noise sigma in electrons.
    sigclip : float
        Laplacian significance for a seed pixel.
    objlim : float
        Minimum Laplacian / fine-structure contrast (stars are smoother than rays).
    sigfrac : float
        Neighbours join at ``sigfrac * sigclip``.
    grow : int
        Final dilation radius in pixels.
    protect : 2-D bool array, optional
        Pixels never returned (e.g. :func:`source_pixels`: so that false positives on stars still count in
        an evaluation).

    Returns
    -------
    bool ndarray
    """
    img = np.asarray(image, np.float64)
    sigma = np.maximum(np.broadcast_to(np.asarray(noise_sigma, np.float64), img.shape), 1e-3)
    lap = np.clip(ndimage.convolve(img, np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]) / 4.0, mode="nearest"), 0, None)
    sig = lap / sigma
    sig_clean = sig - ndimage.median_filter(sig, 5, mode="nearest")  # remove smooth structure
    med3 = ndimage.median_filter(img, 3, mode="nearest")
    fine = np.maximum((med3 - ndimage.median_filter(med3, 7, mode="nearest")) / sigma, 0.01)
    mask = (sig_clean > sigclip) & (sig / fine > objlim)
    box = np.ones((3, 3), bool)
    for _ in range(2):  # grow into neighbours that are significant at a lower level
        mask |= ndimage.binary_dilation(mask, box) & (sig_clean > sigclip * sigfrac)
    mask = grow_disk(mask, grow)
    return mask if protect is None else mask & ~np.asarray(protect, bool)


def grow_disk(mask, radius: int) -> np.ndarray:
    """``mask`` dilated by a disk of ``radius`` pixels (unchanged for radius 0)."""
    mask = np.asarray(mask, bool)
    if radius <= 0 or not mask.any():
        return mask
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ndimage.binary_dilation(mask, yy**2 + xx**2 <= radius**2 + radius)


def local_noise(image, read_noise: float) -> np.ndarray:
    """Noise sigma (electrons) of a frame in electrons: Poisson on a 5x5 median (which removes cosmic
    rays) plus read noise."""
    level = ndimage.median_filter(np.asarray(image, np.float64), 5, mode="nearest")
    return np.sqrt(np.clip(level, 0, None) + float(read_noise) ** 2)


def source_pixels(image, ignore) -> np.ndarray:
    """Stars, galaxies and sky lines: where a 5x5 median (which removes cosmic rays) is 1.5 sigma above the
    sky, grown by 2 px.

    Beyond the frame's edge the median sees sky, not a mirror of the edge: mirrored, a cosmic ray on the
    edge row fills its own 5x5 window and passes for a source.
    """
    image, ignore = np.asarray(image), np.asarray(ignore, bool)
    valid = image[~ignore]
    sky = float(np.median(valid))
    sigma = 1.4826 * float(np.median(np.abs(valid - sky)))
    smooth = ndimage.median_filter(np.where(ignore, sky, image), size=5, mode="constant", cval=sky)
    return ndimage.binary_dilation(smooth > sky + 1.5 * sigma, iterations=2)


def elongated_components(seeds, *, min_length: float = 4.0, min_ratio: float = 2.5,
                         max_width: float = 2.5) -> np.ndarray:
    """Connected groups of ``seeds`` that are too long and thin to be a star: tracks and worms.

    A group is elongated when the long axis of its pixel distribution (4 sigma) is at least ``min_length``
    pixels and ``min_ratio`` times the short one, and it is thin: at most ``max_width`` pixels per pixel of
    length (blended stars and diffraction spikes make long groups too, but wide ones). Stars are round at
    every sampling, so this holds for undersampled cameras, where a star's core is as sharp as a small ray.
    """
    seeds = np.asarray(seeds, bool)
    labels, _ = ndimage.label(seeds, np.ones((3, 3), bool))
    out = np.zeros(seeds.shape, bool)
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        member = labels[window] == index
        ys, xs = np.nonzero(member)
        if ys.size < 3:
            continue
        cov = np.cov(np.stack([ys, xs]).astype(np.float64)) + np.eye(2) / 12.0  # a pixel's own extent
        small, large = np.linalg.eigvalsh(cov)
        length = 4.0 * np.sqrt(large)
        if length >= min_length and large >= min_ratio**2 * small and ys.size <= max_width * length:
            out[window] |= member
    return out


def star_peak_ratio(fwhm_px: float) -> float:
    """The largest peak / side-neighbour ratio a star can have: a Gaussian PSF of ``fwhm_px`` centred on a
    pixel, integrated over pixels (off-centre stars and broader PSFs are flatter)."""
    scale = fwhm_px / 2.3548 * math.sqrt(2.0)
    centre = math.erf(0.5 / scale)
    side = (math.erf(1.5 / scale) - centre) / 2.0
    return centre / side


def _fainter_side_pair(excess, usable, ys, xs) -> tuple[np.ndarray, np.ndarray]:
    """Mean excess of the fainter of each pixel's two side-neighbour pairs (up-down, left-right), and
    whether all four neighbours are in the frame and usable.

    A star is about as wide across rows as across columns; a ray's track can be one pixel wide across
    itself however long it is, so its fainter pair shows it sharp where the mean of all four would not.
    """
    h, w = excess.shape
    pairs, complete = [], np.ones(ys.shape, bool)
    for offsets in (((-1, 0), (1, 0)), ((0, -1), (0, 1))):
        total = np.zeros(ys.shape)
        for dy, dx in offsets:
            y, x = ys + dy, xs + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            yc, xc = np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)
            complete &= inside & usable[yc, xc]
            total += excess[yc, xc]
        pairs.append(total / 2.0)
    return np.minimum(pairs[0], pairs[1]), complete


def peak_ratio_limit(image, noise_sigma, fwhm_px: float, *, margin: float = 1.5, ignore=None,
                     min_stars: int = MIN_STARS) -> float:
    """The ratio of a peak to its fainter side-neighbour pair above which it is sharper than any star here.

    ``margin`` times the larger of :func:`star_peak_ratio` for the camera's sharpest PSF and, where the frame
    has at least ``min_stars`` bright stars (local maxima whose 5x5 median is 10 sigma over a 7x7 median
    background), the 95th percentile of their ratios (the top 5% holds rays on stars and blends):
    undersampled cameras' real cores are sharper than a Gaussian of their quoted FWHM, and the frame's own
    stars say by how much.
    """
    img, sigma, usable = _prepared(image, noise_sigma, ignore)
    return _ratio_limit(img, ndimage.median_filter(img, 7, mode="nearest"), sigma, usable, fwhm_px, margin,
                        min_stars)


def _prepared(image, noise_sigma, ignore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 image, noise sigma at every pixel, and the usable (unignored) pixels."""
    img = np.asarray(image, np.float64)
    sigma = np.broadcast_to(np.asarray(noise_sigma, np.float64), img.shape)
    usable = np.ones(img.shape, bool) if ignore is None else ~np.asarray(ignore, bool)
    return img, sigma, usable


def _ratio_limit(img, background, sigma, usable, fwhm_px: float, margin: float, min_stars: int) -> float:
    """:func:`peak_ratio_limit` given the 7x7 median background."""
    excess = img - background
    smooth = ndimage.median_filter(img, 5, mode="nearest") - background
    peaks = (img == ndimage.maximum_filter(img, 3)) & (smooth > 10 * sigma) & usable
    ys, xs = np.nonzero(peaks)
    side, complete = _fainter_side_pair(excess, usable, ys, xs)
    keep = complete & (side > 0)
    bound = star_peak_ratio(fwhm_px)
    if keep.sum() >= min_stars:
        bound = max(bound, float(np.percentile(excess[ys[keep], xs[keep]] / side[keep], 95)))
    return margin * bound


def sharper_than_psf(image, seeds, noise_sigma, fwhm_px: float, *, margin: float = 1.5,
                     significance: float = 3.0, ignore=None) -> np.ndarray:
    """Connected groups of ``seeds`` whose brightest pixel is too sharp to be a star's peak.

    A group is taken as a ray when the excess (over a 7x7 median background) of its peak's fainter side
    pair lies ``significance`` sigma below ``peak / limit``, the limit being :func:`peak_ratio_limit` (the
    camera's sharpest PSF, or the frame's own sharpest stars, times ``margin``). Faint peaks, whose
    neighbours cannot be measured that well, groups on the frame's edge and groups within 3 px of an
    ignored pixel stay undecided (not returned).
    """
    img, sigma, usable = _prepared(image, noise_sigma, ignore)
    seeds = np.asarray(seeds, bool)
    labels, n = ndimage.label(seeds, np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(seeds.shape, bool)
    background = ndimage.median_filter(img, 7, mode="nearest")  # one for the limit and the test
    excess = img - background
    limit = _ratio_limit(img, background, sigma, usable, fwhm_px, margin, MIN_STARS)
    index = np.arange(1, n + 1)
    peaks = np.asarray(ndimage.maximum_position(np.where(seeds, excess, -np.inf), labels, index))
    ys, xs = peaks[:, 0], peaks[:, 1]
    side, complete = _fainter_side_pair(excess, usable, ys, xs)
    spread = np.sqrt(ndimage.mean(sigma**2, labels, index) / 2.0)  # the noise of a pair's mean
    # beside ignored pixels (saturated cores, bleed columns, filled before this) the background is not sky
    near_bad = ndimage.binary_dilation(~usable, iterations=3)
    touches_bad = ndimage.maximum(near_bad, labels, index).astype(bool)
    sharp = complete & ~touches_bad & (side + significance * spread < excess[ys, xs] / limit)
    return np.isin(labels, index[sharp])


def protected_sources(image, ignore, read_noise: float, *, grow: int = 2, seeds=None,
                      fwhm_px: float | None = None, noise_sigma=None) -> np.ndarray:
    """Sources whose pixels must count in an evaluation (:func:`source_pixels`), less the rays on them that
    no star can make: long thin ones (:func:`elongated_components`) and, given the camera's sharpest PSF
    FWHM ``fwhm_px``, ones sharper than a star's peak (:func:`sharper_than_psf`).

    A long cosmic ray survives the 5x5 median that finds sources, and a compact bright one lifts the median
    of its own neighbourhood above the sky, so a plain source mask would protect them and count their pixels
    as false positives of every method that finds them. ``seeds``: the finder's ungrown mask
    (``find_own_cosmic_rays(..., grow=0)``) and ``noise_sigma``: :func:`local_noise`, when the caller has
    them already.
    """
    image = np.asarray(image, np.float64)
    sigma = local_noise(image, read_noise) if noise_sigma is None else noise_sigma
    if seeds is None:
        seeds = find_own_cosmic_rays(image, sigma, grow=0)
    rays = elongated_components(seeds)
    if fwhm_px is not None:
        rays |= sharper_than_psf(image, seeds, sigma, fwhm_px, ignore=ignore)
    return source_pixels(image, ignore) & ~grow_disk(rays, grow)

