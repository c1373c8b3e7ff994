"""Finding a real frame's own cosmic rays, conservatively, so that they can be ignored."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .sharpness import sharper_than_psf

__all__ = ["elongated_components", "find_own_cosmic_rays", "grow_disk", "local_noise", "protected_sources",
           "source_pixels"]


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

