"""Simulated CCD scenes without cosmic rays, in electrons.

Sky with a gradient, stars with a sampled PSF (Moffat or a Gaussian mixture, sub-pixel centres,
pixel-integrated), Sersic galaxies, saturation with bleed trails, hot pixels and bad columns (both in the
``ignore`` mask), Poisson and read noise and the gain's digitisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .instruments import Instrument, SeedLike, get_instrument
from .rays import add_stamp

__all__ = ["Scene", "expose", "simulate_scene"]


# ---------------------------------------------------------------------------------------------- scenes
@dataclass(frozen=True, eq=False)
class Scene:
    """A simulated CCD frame without cosmic rays (electrons).

    Attributes
    ----------
    image : float32 ndarray
        Noisy, digitised, saturated frame.
    noiseless : float32 ndarray
        Expected electrons (sky, sources, hot pixels, bad columns; saturation and bleed applied).
    ignore : bool ndarray
        Hot pixels, bad columns, saturated and bleed pixels.
    noise_sigma : float32 ndarray
        Expected noise: sqrt(noiseless + read_noise^2 + gain^2 / 12); read noise only where saturated.
    instrument : Instrument
    exptime : float
    background : float32 ndarray
        Sky with its gradient.
    sky : float
        Mean sky level (electrons per pixel).
    fwhm_px : float
    psf : str
        ``"moffat"`` or ``"gaussmix"``.
    n_stars, n_galaxies : int
    """

    image: np.ndarray
    noiseless: np.ndarray
    ignore: np.ndarray
    noise_sigma: np.ndarray
    instrument: Instrument
    exptime: float
    background: np.ndarray
    sky: float
    fwhm_px: float
    psf: str
    n_stars: int
    n_galaxies: int


_FIELD_DENSITY = {  # mean stars, galaxies per 512 x 512 pixels
    "sparse": (40.0, 15.0),
    "globular": (3000.0, 3.0),
    "galaxy": (25.0, 25.0),
}


def _psf_kernel(kind: str, fwhm: float, k: int, rng: np.random.Generator) -> np.ndarray:
    """PSF sampled on a k-times oversampled grid, (2R+1)k square so that it block-sums onto pixels."""
    radius = math.ceil(max(4 * fwhm, 6))
    n = (2 * radius + 1) * k
    r = (np.arange(n) - (n - 1) / 2) / k
    r2 = r[:, None] ** 2 + r[None] ** 2
    if kind == "moffat":
        beta = rng.uniform(2.5, 4.5)
        alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
        psf = (1 + r2 / alpha**2) ** -beta
    else:  # Gaussian core + broad halo (the halo barely moves the FWHM)
        s_core = fwhm / 2.3548
        s_halo, w_halo = s_core * rng.uniform(2.0, 3.0), rng.uniform(0.1, 0.25)
        psf = (1 - w_halo) / s_core**2 * np.exp(-r2 / (2 * s_core**2)) + w_halo / s_halo**2 * np.exp(
            -r2 / (2 * s_halo**2)
        )
    return psf / psf.sum()


def _block_sum(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else a.reshape(a.shape[0] // k, k, a.shape[1] // k, k).sum((1, 3))


def _oversampling(fwhm: float, shape: tuple[int, int]) -> int:
    """3x sub-pixels for sharp PSFs (pixel integration matters when undersampled), if memory allows."""
    return 3 if fwhm < 3.5 and shape[0] * shape[1] <= 2048 * 2048 else 1


def _power_law(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Fluxes with cumulative counts N(>F) ~ F^-slope between lo and hi."""
    u = rng.random(n)
    return lo * (1 - u * (1 - (hi / lo) ** -slope)) ** (-1 / slope)


def _star_positions(field: str, n: int, shape, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    if field != "globular":
        return rng.uniform(-3, h + 2, n), rng.uniform(-3, w + 2, n)
    # Plummer sphere in projection around a centre near the middle.
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    a = min(h, w) * rng.uniform(0.1, 0.25)
    r = a * np.sqrt(1 / np.clip(1 - rng.random(n), 1e-9, None) - 1)
    t = rng.uniform(0, 2 * np.pi, n)
    return cy + r * np.sin(t), cx + r * np.cos(t)


def _deposit(grid: np.ndarray, y: np.ndarray, x: np.ndarray, flux: np.ndarray, k: int) -> None:
    """Bilinear point sources onto the oversampled grid (image coordinates, pixel centres at integers)."""
    a, b = (y + 0.5) * k - 0.5, (x + 0.5) * k - 0.5
    i0, j0 = np.floor(a).astype(np.int64), np.floor(b).astype(np.int64)
    fy, fx = a - i0, b - j0
    h, w = grid.shape
    for di, wy in ((0, 1 - fy), (1, fy)):
        for dj, wx in ((0, 1 - fx), (1, fx)):
            ii, jj = i0 + di, j0 + dj
            ok = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
            np.add.at(grid, (ii[ok], jj[ok]), (flux * wy * wx)[ok])


def _sersic_b(n: float) -> float:
    return 2 * n - 1 / 3 + 0.009876 / n


def _sersic(yy: np.ndarray, xx: np.ndarray, n: float, r_e: float, q: float, pa: float) -> np.ndarray:
    """Sersic surface brightness, 1 at the (major-axis) effective radius."""
    c, s = math.cos(pa), math.sin(pa)
    u, v = xx * c + yy * s, -xx * s + yy * c
    r = np.sqrt(u**2 + (v / q) ** 2)
    return np.exp(-_sersic_b(n) * ((r / r_e) ** (1 / n) - 1))


def _galaxy_stamp(engine: str, n, r_e, q, pa, dy, dx, half, k) -> np.ndarray:
    """Unit-flux Sersic on a (2*half+1)-square oversampled stamp, centred at offset (dy, dx) sub-pixels."""
    if engine == "galsim":  # optional; exact profile integration by GalSim
        import galsim

        gal = galsim.Sersic(n=n, half_light_radius=r_e * math.sqrt(q), flux=1.0)
        gal = gal.shear(q=q, beta=pa * galsim.radians)
        size = 2 * half + 1
        return gal.drawImage(nx=size, ny=size, scale=1.0 / k, method="no_pixel", offset=(dx, dy)).array
    s = ((np.arange(2 * half + 1) - half) / k).astype(np.float32)
    prof = _sersic(s[:, None] - np.float32(dy / k), s[None] - np.float32(dx / k), n, r_e, q, pa)
    return prof / prof.sum()


def _add_galaxies(fine, coarse, n_gal, shape, inst, f_lo, k, rng, engine) -> None:
    """Sersic galaxies, drawn before the PSF convolution: compact ones on the oversampled grid, extended ones
    (well sampled anyway) on the pixel grid, which is much cheaper."""
    h, w = shape
    for _ in range(n_gal):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        n = rng.uniform(0.5, 4.0)
        r_e = float(np.clip(rng.lognormal(math.log(0.3), 0.6) / inst.pixel_scale_arcsec, 0.5, 0.1 * min(h, w)))
        q, pa = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        flux = _power_law(rng, 1, 3 * f_lo, 3e3 * f_lo, 0.8)[0]
        grid, kk = (fine, k) if r_e < 3 else (coarse, 1)
        half = math.ceil(min(6 * r_e, max(h, w)) * kk)
        a, b = (y + 0.5) * kk - 0.5, (x + 0.5) * kk - 0.5
        ci, cj = round(a), round(b)
        stamp = flux * _galaxy_stamp(engine, n, r_e, q, pa, a - ci, b - cj, half, kk)
        add_stamp(grid, stamp, ci - half, cj - half)


def _add_big_galaxy(coarse, shape, noise, saturation, rng) -> None:
    """One large galaxy across the frame (the "galaxy" field), on the pixel grid; its peak is log-uniform
    between 3 and 300 sky-noise sigmas, kept below saturation."""
    h, w = shape
    a = np.arange(h, dtype=np.float32) - np.float32(h * rng.uniform(0.35, 0.65))
    b = np.arange(w, dtype=np.float32) - np.float32(w * rng.uniform(0.35, 0.65))
    prof = _sersic(a[:, None], b[None], rng.uniform(1.0, 4.0), min(h, w) * rng.uniform(0.08, 0.2),
                   rng.uniform(0.4, 1.0), rng.uniform(0, np.pi))
    peak = min(noise * math.exp(rng.uniform(math.log(3), math.log(300))), 0.7 * saturation)
    coarse += np.float32(peak / prof.max()) * prof


def _saturate(expected: np.ndarray, full_well: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip at full well and spill the excess charge up and down the column (bleed trails)."""
    over = expected > full_well
    region = over.copy()
    h = expected.shape[0]
    for c in np.flatnonzero(over.any(0)):
        edges = np.diff(np.r_[0, over[:, c].astype(np.int8), 0])
        for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            extra = math.ceil(float((expected[s:e, c] - full_well).sum()) / full_well)
            region[max(0, s - (extra - extra // 2)) : min(h, e + extra // 2), c] = True
    out = expected.copy()
    out[region] = full_well
    return out, region


def _defects(shape, inst: Instrument, exptime: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hot pixels (dark current, added) and bad columns (hot: added; dead: response factor)."""
    h, w = shape
    add = np.zeros(shape, np.float64)
    gain = np.ones(shape, np.float64)
    bad = np.zeros(shape, bool)
    n_hot = rng.poisson(inst.hot_pixel_fraction * h * w)
    hy, hx = rng.integers(0, h, n_hot), rng.integers(0, w, n_hot)
    add[hy, hx] += rng.lognormal(math.log(0.5), 1.0, n_hot) * exptime  # e-/s dark current
    bad[hy, hx] = True
    for _ in range(rng.poisson(inst.bad_columns_per_kpx * w / 1000)):
        c = int(rng.integers(w))
        y0 = int(rng.integers(0, h // 2 + 1)) if rng.random() < 0.5 else 0  # partial or full column
        if rng.random() < 0.5:
            add[y0:, c] += rng.uniform(0.2, 5.0) * exptime
        else:
            gain[y0:, c] = rng.uniform(0.0, 0.3)
        bad[y0:, c] = True
    return add, gain, bad


def simulate_scene(
    shape: tuple[int, int] = (256, 256),
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    *,
    n_stars: int | None = None,
    n_galaxies: int | None = None,
    field: Literal["sparse", "globular", "galaxy"] = "sparse",
    psf: Literal["auto", "moffat", "gaussmix"] = "auto",
    galaxy_engine: Literal["numpy", "galsim"] = "numpy",
) -> Scene:
    """Simulate a CCD frame without cosmic rays, in electrons.

    Parameters
    ----------
    shape : (int, int)
    instrument : str or Instrument
        Preset name (see :data:`INSTRUMENTS`) or an :class:`Instrument`.
    exptime : float
        Seconds; scales sky and dark current.
    seed : int, SeedSequence or Generator
    n_stars, n_galaxies : int, optional
        Default: a Poisson draw from the field's density.
    field : {"sparse", "globular", "galaxy"}
        Field stars; a crowded cluster with diffuse light; or one large galaxy plus small ones.
    psf : {"auto", "moffat", "gaussmix"}
        ``"auto"`` picks one at random.
    galaxy_engine : {"numpy", "galsim"}
        GalSim (if installed) draws the Sersic profiles instead of the built-in sampler. Opt-in, so results
        do not depend on what is installed.

    Returns
    -------
    Scene
    """
    if field not in _FIELD_DENSITY:
        raise ValueError(f"field must be one of {sorted(_FIELD_DENSITY)}, got {field!r}")
    inst = get_instrument(instrument)
    h, w = (int(s) for s in shape)
    rng = np.random.default_rng(seed)
    fwhm = rng.uniform(*inst.fwhm_px)
    kind = str(rng.choice(["moffat", "gaussmix"])) if psf == "auto" else psf
    sky = rng.uniform(*inst.sky_e_per_s) * exptime
    gy, gx = rng.uniform(-0.05, 0.05, 2)  # gradient: up to +-5 % across the frame
    background = sky * (1 + gy * (np.arange(h)[:, None] / h - 0.5) + gx * (np.arange(w)[None] / w - 0.5))

    k = _oversampling(fwhm, (h, w))
    kernel = _psf_kernel(kind, fwhm, k, rng)
    pix_psf = _block_sum(kernel, k)
    # Faintest sources at S/N ~ 5 over the PSF's noise-equivalent area; brightest saturate and bleed.
    f_lo = 5 * math.sqrt(sky + inst.read_noise**2) * math.sqrt(1 / float((pix_psf**2).sum()))
    f_hi = max(30 * inst.saturation / float(pix_psf.max()), 100 * f_lo)

    density = _FIELD_DENSITY[field]
    area = h * w / 512**2
    n_st = int(rng.poisson(density[0] * area)) if n_stars is None else int(n_stars)
    n_ga = int(rng.poisson(density[1] * area)) if n_galaxies is None else int(n_galaxies)
    grid = np.zeros((h * k, w * k), np.float32)
    ys, xs = _star_positions(field, n_st, (h, w), rng)
    fluxes = _power_law(rng, n_st, f_lo, f_hi, 0.9 if field == "globular" else 0.6)
    _deposit(grid, ys, xs, fluxes, k)
    coarse = grid if k == 1 else np.zeros((h, w), np.float32)  # extended sources: pixel grid
    _add_galaxies(grid, coarse, n_ga, (h, w), inst, f_lo, k, rng, galaxy_engine)
    if field == "galaxy":
        _add_big_galaxy(coarse, (h, w), math.sqrt(sky + inst.read_noise**2), inst.saturation, rng)
    astro = _block_sum(_convolve(grid, kernel.astype(np.float32)), k)
    if k > 1:
        astro += _convolve(coarse, pix_psf.astype(np.float32))
    if field == "globular":  # unresolved cluster light, smooth enough to skip the PSF
        astro += _plummer_light(ys, xs, fluxes, (h, w))

    add, response, bad = _defects((h, w), inst, exptime, rng)
    expected = (background + np.clip(astro, 0, None)) * response + add
    noiseless, saturated = _saturate(expected, inst.saturation)
    image = expose(noiseless, saturated, inst, rng)
    sigma = np.sqrt(np.clip(noiseless, 0, None) + inst.read_noise**2 + inst.gain**2 / 12)
    sigma[saturated] = inst.read_noise
    ignore = bad | ndimage.binary_dilation(saturated, np.ones((3, 3), bool))
    return Scene(
        image=image.astype(np.float32),
        noiseless=noiseless.astype(np.float32),
        ignore=ignore,
        noise_sigma=sigma.astype(np.float32),
        instrument=inst,
        exptime=float(exptime),
        background=background.astype(np.float32),
        sky=float(sky),
        fwhm_px=float(fwhm),
        psf=kind,
        n_stars=n_st,
        n_galaxies=n_ga + (field == "galaxy"),
    )


def expose(noiseless: np.ndarray, saturated: np.ndarray, instrument: Instrument,
           rng: np.random.Generator) -> np.ndarray:
    """One exposure of a noiseless scene (electrons): Poisson and read noise, the gain's digitisation, the
    saturation level (float64)."""
    image = rng.poisson(np.clip(noiseless, 0, None)).astype(np.float64)
    image += rng.normal(0.0, instrument.read_noise, noiseless.shape)
    image = np.round(image / instrument.gain) * instrument.gain  # digitisation
    image[saturated] = instrument.saturation
    return np.minimum(image, instrument.saturation)


def _convolve(grid: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'same' FFT convolution with an odd-sized centred kernel."""
    if not grid.any():
        return grid
    kh, kw = kernel.shape
    shape = [sfft.next_fast_len(grid.shape[0] + kh - 1, True), sfft.next_fast_len(grid.shape[1] + kw - 1, True)]
    out = sfft.irfft2(sfft.rfft2(grid, shape) * sfft.rfft2(kernel, shape), shape)
    return out[kh // 2 : kh // 2 + grid.shape[0], kw // 2 : kw // 2 + grid.shape[1]]


def _plummer_light(ys, xs, fluxes, shape) -> np.ndarray:
    """Diffuse light following the resolved stars' Plummer profile, half their total flux."""
    h, w = shape
    cy, cx = np.median(ys), np.median(xs)
    a = max(float(np.median(np.hypot(ys - cy, xs - cx))), 2.0)  # Plummer half-mass radius = a
    r2 = (np.arange(h)[:, None] - cy) ** 2 + (np.arange(w)[None] - cx) ** 2
    return 0.5 * fluxes.sum() / (np.pi * a**2) * (1 + r2 / a**2) ** -2
