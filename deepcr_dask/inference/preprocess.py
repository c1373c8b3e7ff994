"""Pixels into and out of the networks: validation, whole-image statistics, ignored-pixel fill, scaling.

For one network window (global coordinates, :mod:`deepcr_dask.inference.tiling`): the raw pixels of the window
grown by the fill's reach, ignored pixels (NaN/inf/``ignore``) replaced by a local median (never spread
into neighbours as NaN), divided by the model's scale and, for standardising models, by whole-image
mean and standard deviation, then zero-padded like deepCR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .fill import median_fill
from .tiling import Span, TilePlan, crop, image_part, image_span

__all__ = ["BACKGROUND_STRIDE", "ImageStats", "Region", "image_stats", "prepare_image", "sky_stats"]

BACKGROUND_STRIDE = 4  # the fill background is the median of every 4th valid pixel in each direction


@dataclass(frozen=True)
class ImageStats:
    """Whole-image numbers a tile cannot compute on its own."""

    mean: float = 0.0  # of valid pixels (image units / scale), for standardising models
    std: float = 1.0
    background: float = 0.0  # median of valid pixels (image units): fill for unreachable ignored pixels


@dataclass
class Region:
    """Pixels of one image held in memory: the whole image, or a Dask block with its overlap.

    ``rows`` and ``cols`` give the region's position in image pixel coordinates.
    """

    data: np.ndarray  # float32, image units, NaN where invalid
    ignored: np.ndarray  # bool
    rows: Span
    cols: Span

    @classmethod
    def whole(cls, data: np.ndarray, ignored: np.ndarray) -> Region:
        return cls(data, ignored, Span(0, data.shape[0]), Span(0, data.shape[1]))

    def raw(self, plan: TilePlan, window) -> tuple[np.ndarray, np.ndarray]:
        """Image pixels and ignored flags of a global window (its image part)."""
        sl = plan.local(self.rows, self.cols, window)
        return self.data[sl], self.ignored[sl]


def prepare_image(image, ignore=None, *, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Validate a 2-D image and return ``(float32 native-endian copy, ignored mask)``.

    NaN and inf pixels are ignored, as are ``ignore`` pixels and the masked pixels of a ``numpy.ma`` array.
    """
    if isinstance(image, np.ma.MaskedArray):
        masked = np.ma.getmaskarray(image)
        image = np.ma.getdata(image)
        ignore = masked if ignore is None else (np.asarray(ignore, bool) | masked)
    array = np.asarray(image)
    if array.ndim != 2:
        raise InputError(f"{name}: expected a 2-D image, got an array of shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name}: image is empty (shape {array.shape})")
    if array.dtype.kind not in "fiu":
        raise InputError(f"{name}: expected real numbers, got dtype {array.dtype}")
    data = array.astype(np.float32)  # also converts big-endian FITS data to native order
    ignored = ~np.isfinite(data)
    if ignore is not None:
        ignore = np.asarray(ignore)
        if ignore.shape != data.shape:
            raise InputError(f"{name}: ignore mask shape {ignore.shape} differs from image shape {data.shape}")
        ignored |= ignore.astype(bool)
    return data, ignored


def sky_stats(background: float, scale: float, sky: float) -> ImageStats:
    """The statistics of the ``"sky"`` normalisation: the image's background moved to ``sky`` electrons
    (``(x - background + sky) / scale``, as a standardisation with std 1), so that a constant added to the
    image changes nothing the networks see."""
    return ImageStats((background - sky) / scale, 1.0, background)


def image_stats(data: np.ndarray, ignored: np.ndarray, scale: float, standardize: bool,
                sky: float | None = None) -> ImageStats:
    """Whole-image statistics of the valid pixels (float64 sums).

    The background is the median of a strided subsample, so the Dask path reproduces it exactly
    by computing the same small array. With ``sky`` (electrons), the ``"sky"`` normalisation's statistics
    (:func:`sky_stats`).
    """
    s = slice(None, None, BACKGROUND_STRIDE)
    sample = data[s, s][~ignored[s, s]]
    background = float(np.median(sample)) if sample.size else 0.0
    if sky is not None:
        return sky_stats(background, scale, sky)
    if not standardize:
        return ImageStats(background=background)
    valid = data[~ignored]
    if valid.size == 0:
        return ImageStats(background=background)
    scaled = valid.astype(np.float64) / scale
    std = float(scaled.std())
    return ImageStats(float(scaled.mean()), std if std > 0 else 1.0, background)


def normalize(raw: np.ndarray, scale: float, standardize: bool, stats: ImageStats) -> np.ndarray:
    """Image units to network units: divide by the model's scale (and standardise)."""
    x = raw / np.float32(scale)
    if standardize:
        x = (x - np.float32(stats.mean)) / np.float32(stats.std)
    return x


def denormalize(x: np.ndarray, scale: float, standardize: bool, stats: ImageStats) -> np.ndarray:
    """Network units back to image units."""
    if standardize:
        x = x * np.float32(stats.std) + np.float32(stats.mean)
    return x * np.float32(scale)


def network_input(region: Region, plan: TilePlan, stats: ImageStats, window, fill_reach: int, scale: float,
                  standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Normalised, ignore-filled, zero-padded input for a global window, and its ignored pixels."""
    frames = plan.frames
    reach = tuple(image_span(window, frames)[i].grow(fill_reach, frames[i].image) for i in range(2))
    raw, ignored = region.raw(plan, reach)
    if ignored.any():
        raw = median_fill(raw, ignored, background=stats.background)
    inner = crop(image_span(window, frames), reach)
    x = np.zeros((window[0].size, window[1].size), np.float32)
    ign = np.zeros_like(x, dtype=bool)
    part = image_part(window, frames)
    x[part] = normalize(raw[inner], scale, standardize, stats)
    ign[part] = ignored[inner]
    return x, ign


def given_mask(region: Region, plan: TilePlan, window, mask: np.ndarray) -> np.ndarray:
    """A caller's mask (covering the region) on a global window, False on the zero padding."""
    out = np.zeros((window[0].size, window[1].size), bool)
    out[image_part(window, plan.frames)] = mask[plan.local(region.rows, region.cols, window)]
    return out
