"""Real frames with real cosmic rays, from ``../shared/data/real`` (never copied into the package).

Each loader returns the frame in electrons with the pixels to ignore: bad and saturated pixels, and the
frame's own cosmic rays, found conservatively (:func:`~deepcr_dask.sim.own_rays.find_own_cosmic_rays`,
never on or next to a source, so that false positives on stars still count, unless the ray is too long
and thin or too sharp to be a star: :func:`~deepcr_dask.sim.own_rays.protected_sources`). GMOS's two
cosmic rays are known exactly and ignored as such.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import real_data_dir
from .instruments import Instrument, get_instrument
from .own_rays import find_own_cosmic_rays, grow_disk, local_noise, protected_sources
from .sharpness import sharper_than_psf

__all__ = ["CROWDED_FIELDS", "REAL_FIELDS", "RealFrame", "crop_to_multiple", "own_rays", "real_frames"]

REAL_FIELDS = ("wfpc2", "omegacen", "hrc", "saao", "gmos")
# Star fields so crowded that the conservative finder cannot tell most rays from stars there (undersampled
# cores, Airy rings, diffraction spikes and bleed columns all look like rays): besides their DQ-flagged pixels
# only the rays sharper than the frame's own sharpest stars are ignored (sharper_than_psf: 0.4-0.5% of the
# pixels of Omega Cen's chips, 0.9% of HRC's, grown by 2 px); their other rays count as negatives for every
# method. A conservative choice: false positives on stars are not hidden.
CROWDED_FIELDS = ("omegacen", "hrc")
GMOS_RAYS = ((slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43)))  # the cutout's two known rays


@dataclass
class RealFrame:
    """A real frame in electrons with the pixels to ignore (bad, saturated, its own cosmic rays)."""

    name: str
    image: np.ndarray
    ignore: np.ndarray
    instrument: Instrument
    exptime: float


def crop_to_multiple(array: np.ndarray, multiple: int = 4, size: int | None = None) -> np.ndarray:
    """The top-left part whose sides are multiples of ``multiple`` (and at most ``size``)."""
    h, w = array.shape
    if size is not None:
        h, w = min(h, size), min(w, size)
    return array[: h - h % multiple, : w - w % multiple]


def _wfpc2_frames(folder: Path, chips: Sequence[int]) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], float]:
    from astropy.io import fits

    with fits.open(folder / "wfpc2_u5780205r_c0f.fits") as hdul:
        cube, header = hdul[0].data.astype(np.float32), hdul[0].header
    gain = float(header.get("ATODGAIN", 7.0))
    # This sample comes without its c1f. Every WFPC2 c1f flags each chip's edge rows and columns (the Omega
    # Cen c1f: the first 24-52 and the last 2), and here column 0 holds smooth profiles of up to 860 e- beside
    # an empty column 1, which no sky source makes: the outermost ring is ignored, as its c1f would have it.
    border = np.ones(cube.shape[1:], bool)
    border[1:-1, 1:-1] = False
    frames = [(f"wfpc2-chip{c + 1}", cube[c] * gain, (cube[c] >= 4095) | ~np.isfinite(cube[c]) | border)
              for c in chips]
    return frames, float(header.get("EXPTIME", 300.0))


def _omegacen_frames(folder: Path, chips: Sequence[int]) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], float]:
    """WFPC2 u40x010hm (Omega Cen, 100 s): the c0f's chips in electrons, bad where its c1f has any DQ flag."""
    from astropy.io import fits

    with fits.open(folder / "wfpc2_u40x010hm_c0f.fits") as hdul:
        cube, header = hdul[0].data.astype(np.float32), hdul[0].header
    with fits.open(folder / "wfpc2_u40x010hm_c1f.fits") as hdul:
        dq = np.asarray(hdul[0].data)
    gain = float(header.get("ATODGAIN", 7.0))
    frames = [(f"omegacen-chip{c + 1}", cube[c] * gain, (dq[c] != 0) | ~np.isfinite(cube[c])) for c in chips]
    return frames, float(header.get("EXPTIME", 100.0))


def _hrc_frame(folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """ACS/HRC j8bt06nyq (47 Tuc, 60 s) in electrons, bad where DQ flags anything but cosmic rays."""
    from astropy.io import fits

    with fits.open(folder / "acs_hrc_j8bt06nyq_flt.fits") as hdul:
        sci, dq = hdul["SCI"].data.astype(np.float32), np.asarray(hdul["DQ"].data)
    return "hrc", sci, ((dq & ~np.int64(4096 | 8192)) != 0) | ~np.isfinite(sci)


def _saao_frame(folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    from astropy.io import fits

    with fits.open(folder / "saao_a8280271.fits") as hdul:
        raw, header = hdul[0].data.astype(np.float32), hdul[0].header
    bias = float(np.median(raw[:, 3:13]))  # BIASSEC [4:13, 1:520]
    science = raw[:, 16:528]  # TRIMSEC [17:528, 1:520]
    return "saao", (science - bias) * float(header.get("GAIN", 1.9)), science >= 65535


def _gmos_frame(folder: Path) -> tuple[str, np.ndarray, np.ndarray]:
    from astropy.io import fits

    with fits.open(folder / "gmos_S20190808S0048_cutout.fits") as hdul:
        sci = hdul["SCI"].data.astype(np.float32)
    ignore = ~np.isfinite(sci)
    for rows, cols in GMOS_RAYS:
        ignore[rows, cols] = True
    return "gmos", sci, ignore


def own_rays(image, ignore, read_noise: float, *, crowded: bool = False, fwhm_px: float | None = None
             ) -> np.ndarray:
    """A real frame's own cosmic rays, to be ignored: the finder's, off sources (and, on sources, those too
    long and thin or too sharp for a star of PSF FWHM ``fwhm_px``:
    :func:`~deepcr_dask.sim.own_rays.protected_sources`). In a crowded field, where faint undersampled stars
    fill the "sky" and spikes and rings make long thin groups, only the groups sharper than any star."""
    if crowded and fwhm_px is None:
        return np.zeros(np.shape(image), bool)
    sigma = local_noise(image, read_noise)
    seeds = find_own_cosmic_rays(image, sigma, grow=0)  # once, for both uses
    if crowded:
        return grow_disk(sharper_than_psf(image, seeds, sigma, fwhm_px, ignore=ignore), 2)
    return grow_disk(seeds, 2) & ~protected_sources(image, ignore, read_noise, seeds=seeds, fwhm_px=fwhm_px,
                                                    noise_sigma=sigma)


def real_frames(field: str, folder: str | os.PathLike | None = None, *, chips: Sequence[int] = (0, 1, 2, 3),
                crop: int | None = None, multiple: int = 4) -> list[RealFrame]:
    """The frames of a real field type, cropped to multiples of ``multiple``, their own cosmic rays ignored.

    Parameters
    ----------
    field : {"wfpc2", "omegacen", "hrc", "saao", "gmos"}
        WFPC2 NGC 4151 (4 chips, 300 s), WFPC2 Omega Cen (4 chips, 100 s, DQ from its c1f), ACS/HRC
        47 Tuc (60 s), the SAAO 1.0 m frame (150 s, bias-subtracted and trimmed) or the GMOS-S long-slit
        cutout (90 s).
    folder : path, optional
        Default: :func:`deepcr_dask.data.real_data_dir`.
    chips : sequence of int
        WFPC2 chips (0-3: PC1, WF2, WF3, WF4).
    crop : int, optional
        Largest side.

    Returns
    -------
    list of RealFrame
    """
    folder = real_data_dir(folder)
    if field == "wfpc2":
        raw, exptime = _wfpc2_frames(folder, chips)
        instrument = get_instrument("WFPC2")
    elif field == "omegacen":
        raw, exptime = _omegacen_frames(folder, chips)
        instrument = get_instrument("WFPC2")
    elif field == "hrc":
        raw, instrument, exptime = [_hrc_frame(folder)], get_instrument("ACS-HRC"), 60.0
    elif field == "saao":
        raw, instrument, exptime = [_saao_frame(folder)], get_instrument("SAAO-STE3"), 150.0
    elif field == "gmos":
        raw, instrument, exptime = [_gmos_frame(folder)], get_instrument("GMOS-S"), 90.0
    else:
        raise ValueError(f"unknown real field {field!r}; known: {', '.join(REAL_FIELDS)}")
    frames = []
    for name, image, ignore in raw:
        image, ignore = crop_to_multiple(image, multiple, crop), crop_to_multiple(ignore, multiple, crop)
        if field != "gmos":  # GMOS's two cosmic rays are known exactly
            filled = np.where(ignore, np.median(image[~ignore]), image)  # bad pixels must not look like rays
            ignore = ignore | own_rays(filled, ignore, instrument.read_noise, crowded=field in CROWDED_FIELDS,
                                       fwhm_px=instrument.fwhm_px[0])  # the camera's sharpest stars
        frames.append(RealFrame(name, np.ascontiguousarray(image), ignore, instrument, exptime))
    return frames
