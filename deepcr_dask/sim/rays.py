"""Cosmic rays: synthetic straight tracks and curly worms, and their injection into images."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import special

from .catalogue import FootprintCatalogue, resolve_catalogue, shape_stats
from .instruments import Instrument, SeedLike, get_instrument

__all__ = [
    "TRUTH_SIGMA",
    "Injection",
    "RayFootprint",
    "expected_ray_count",
    "inject_catalogue_footprints",
    "inject_cosmic_rays",
]

TRUTH_SIGMA = 1.0
"""Default truth threshold: injected charge above this many local noise sigmas."""

MIP_E_PER_UM = 75.0  # most probable ionisation of a minimum-ionising particle in silicon
WORM_E_PER_UM = 150.0  # slow electrons ionise more densely
WORM_FRACTION = 0.3  # of the synthetic rays
SYNTH_FLOOR_E = 1.0  # synthetic charge below this is numerical dust
MAX_TAN_THETA = 30.0  # grazing-track cap (88 degrees)


# ------------------------------------------------------------------------------------- synthetic rays
def _moyal(rng: np.random.Generator) -> float:
    """Landau-like energy-loss fluctuation (Moyal, mode 0): -ln(z^2) for a standard normal z."""
    return float(-np.log(max(rng.standard_normal() ** 2, 1e-12)))


def _render_points(py: np.ndarray, px: np.ndarray, q: np.ndarray, sigma_px: float, rng) -> np.ndarray:
    """Charges at points, diffused by a Gaussian and integrated over pixels: separable erf, one matmul."""
    py = py + rng.random()  # random sub-pixel phase
    px = px + rng.random()
    pad = 4 * sigma_px + 1
    ys = np.arange(math.floor(py.min() - pad), math.ceil(py.max() + pad) + 1)
    xs = np.arange(math.floor(px.min() - pad), math.ceil(px.max() + pad) + 1)
    out = (_pixel_gauss(ys, py, sigma_px) * q[:, None]).T @ _pixel_gauss(xs, px, sigma_px)
    out[out < SYNTH_FLOOR_E] = 0.0
    return out


def _pixel_gauss(pixels: np.ndarray, centres: np.ndarray, sigma: float) -> np.ndarray:
    """Fraction of a unit 1-D Gaussian at each centre falling in each pixel: (n_centres, n_pixels)."""
    d = pixels[None] - centres[:, None]
    return special.ndtr((d + 0.5) / sigma) - special.ndtr((d - 0.5) / sigma)


def _track(inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """A straight minimum-ionising track through the sensor at a random incidence angle."""
    u = rng.random()
    # Flux through a plane: isotropic in orbit -> sin^2(theta) uniform; ground muons ~cos^2 -> cos^4 uniform.
    cos_t = math.sqrt(1 - u) if inst.space else u**0.25
    cos_t = max(cos_t, 1 / math.hypot(1, MAX_TAN_THETA))
    tan_t = math.sqrt(1 - cos_t**2) / cos_t
    length_px = inst.thickness_um * tan_t / inst.pixel_um
    dedx = MIP_E_PER_UM * max(1 + 0.25 * _moyal(rng), 0.4)
    total = inst.thickness_um / cos_t * dedx
    n = max(2, math.ceil(length_px / 0.25) + 1)
    t = np.linspace(-0.5, 0.5, n) * length_px
    phi = rng.uniform(0, 2 * np.pi)
    q = total / n * rng.gamma(4.0, 0.25, n)  # delta rays: clumpy charge along the path
    return _render_points(t * np.sin(phi), t * np.cos(phi), q, max(inst.diffusion_um / inst.pixel_um, 0.2), rng)


def _worm(inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """A curly low-energy electron track: a persistent random walk with a rising charge density."""
    length_um = float(np.clip(rng.lognormal(math.log(40.0), 0.6), 10.0, 400.0))
    n = max(3, math.ceil(length_um / inst.pixel_um / 0.25))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.35, n))
    py, px = np.cumsum(0.25 * np.sin(heading)), np.cumsum(0.25 * np.cos(heading))
    total = length_um * WORM_E_PER_UM * rng.lognormal(0, 0.3)
    q = np.linspace(1.0, 2.5, n)  # energy loss grows as the electron slows (Bragg)
    q *= total / q.sum()
    return _render_points(py - py.mean(), px - px.mean(), q, max(inst.diffusion_um / inst.pixel_um, 0.2), rng)


def add_stamp(canvas: np.ndarray, stamp: np.ndarray, y0: int, x0: int) -> None:
    """canvas[y0:, x0:] += stamp, clipped to the canvas."""
    h, w = canvas.shape
    sy, sx = max(0, -y0), max(0, -x0)
    ey, ex = min(stamp.shape[0], h - y0), min(stamp.shape[1], w - x0)
    if ey > sy and ex > sx:
        canvas[y0 + sy : y0 + ey, x0 + sx : x0 + ex] += stamp[sy:ey, sx:ex]


# ------------------------------------------------------------------------------------------- injection
@dataclass(frozen=True)
class RayFootprint:
    """Metadata of one injected ray (before clipping at the image edge).

    Attributes
    ----------
    kind : str
        ``"real"``, ``"track"`` or ``"worm"``.
    y, x : int
        Stamp centre in the image.
    n_pixels : int
        Pixels with charge.
    length_px : float
        1 + largest extent between pixel centres.
    charge_e : float
        Total charge in electrons.
    source_id : int
        Catalogue ``fp_id`` for real rays, -1 otherwise.
    """

    kind: str
    y: int
    x: int
    n_pixels: int
    length_px: float
    charge_e: float
    source_id: int = -1

    @property
    def real(self) -> bool:
        return self.kind == "real"


@dataclass(frozen=True, eq=False)
class Injection:
    """Result of :func:`inject_cosmic_rays`.

    Attributes
    ----------
    image : float32 ndarray
        Input plus rays, clipped at the instrument's saturation.
    truth : bool ndarray
        ``charge > truth_sigma * noise_sigma``.
    charge : float32 ndarray
        Injected electrons actually added (after saturation).
    n_rays : int
    footprints : list of RayFootprint
    truth_sigma : float
    """

    image: np.ndarray
    truth: np.ndarray
    charge: np.ndarray
    n_rays: int
    footprints: list[RayFootprint]
    truth_sigma: float


def expected_ray_count(shape: tuple[int, int], instrument: str | Instrument, exptime: float) -> float:
    """Mean number of rays: rate (cm^-2 s^-1) x exptime x detector area (cm^2)."""
    inst = get_instrument(instrument)
    area = shape[0] * shape[1] * (inst.pixel_um * 1e-4) ** 2
    return inst.cr_rate_per_cm2_s * exptime * area


def inject_cosmic_rays(
    image,
    noise_sigma,
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    *,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
    real_fraction: float = 0.7,
    truth_sigma: float = TRUTH_SIGMA,
    n_rays: int | None = None,
) -> Injection:
    """Add cosmic rays to an image in electrons.

    Parameters
    ----------
    image : 2-D array
        Electrons.
    noise_sigma : 2-D array or float
        Expected noise sigma per pixel (electrons) of ``image``; sets the truth threshold.
    instrument : str or Instrument
        Sets the rate, pixel size, thickness (footprint scaling) and saturation.
    exptime : float
        Seconds; the count is ``Poisson(rate * rate_scale * exptime * area)``.
    seed : int, SeedSequence or Generator
    rate_scale : float
        Multiplies the preset rate (e.g. to get more labels per training frame).
    catalogue : FootprintCatalogue, path, "auto" or None
        Real footprints; ``"auto"`` loads the default catalogue and falls back to synthetic rays only (with
        a warning) when it is absent; ``None`` uses synthetic rays only.
    real_fraction : float
        Fraction of rays drawn from the catalogue; the rest are straight tracks (70 %) and worms (30 %).
    truth_sigma : float
        Truth threshold in units of ``noise_sigma``.
    n_rays : int, optional
        Fixed number of rays instead of the Poisson draw.

    Returns
    -------
    Injection
    """
    inst = get_instrument(instrument)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    sigma = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float32), img.shape)
    cat = resolve_catalogue(catalogue) if real_fraction > 0 else None
    rng = np.random.default_rng(seed)
    if n_rays is None:
        n_rays = int(rng.poisson(expected_ray_count(img.shape, inst, exptime) * rate_scale))
    charge = np.zeros(img.shape, np.float64)
    footprints = []
    for _ in range(n_rays):
        kind, source = _draw_kind(cat, real_fraction, rng), -1
        if kind == "real":
            stamp, source = cat.sample(inst, rng)
        else:
            stamp = _track(inst, rng) if kind == "track" else _worm(inst, rng)
        y, x = int(rng.integers(img.shape[0])), int(rng.integers(img.shape[1]))
        add_stamp(charge, stamp, y - stamp.shape[0] // 2, x - stamp.shape[1] // 2)
        n_pix, length = shape_stats(stamp)
        footprints.append(RayFootprint(kind, y, x, n_pix, length, float(stamp.sum()), source))
    out = (img + charge).astype(np.float32)
    hit = charge > 0
    # Full well: a ray cannot push a pixel past saturation (but never lowers a pixel that already was).
    out[hit] = np.minimum(out[hit], np.maximum(np.float32(inst.saturation), img[hit]))
    added = np.where(hit, out - img, 0).astype(np.float32)
    truth = added > truth_sigma * sigma
    return Injection(out, truth, added, n_rays, footprints, truth_sigma)


def _draw_kind(cat: FootprintCatalogue | None, real_fraction: float, rng: np.random.Generator) -> str:
    if cat is not None and rng.random() < real_fraction:
        return "real"
    return "worm" if rng.random() < WORM_FRACTION else "track"


def inject_catalogue_footprints(clean, catalogue: FootprintCatalogue, n_rays: int, seed: SeedLike = 0) -> Injection:
    """Add ``n_rays`` catalogue footprints with their exact pixels and charges (no rescaling, no saturation).

    The evaluation's injection into real frames: each ray is a random catalogue footprint in one of its
    eight orientations (a transpose and quarter turns), placed whole where it fits (a longer one crosses
    the edge); ``truth`` is every pixel it touches. :func:`inject_cosmic_rays` is the simulator's (rescaled
    to the detector, truth above the noise).

    Parameters
    ----------
    clean : 2-D array
        Electrons.
    catalogue : FootprintCatalogue
    n_rays : int
    seed : int, SeedSequence or Generator

    Returns
    -------
    Injection
        ``truth_sigma`` is 0: every charged pixel is truth.
    """
    image = np.array(clean, np.float32, copy=True)
    truth = np.zeros(image.shape, bool)
    rng = np.random.default_rng(seed)
    footprints = []
    for _ in range(n_rays):
        fp = catalogue.footprints[rng.integers(len(catalogue))]
        rows, cols, values = _oriented(fp.stamp, int(rng.integers(4)), bool(rng.integers(2)))
        h, w = int(rows.max()) + 1, int(cols.max()) + 1
        y0 = int(rng.integers(min(0, image.shape[0] - h), max(image.shape[0] - h, 0) + 1))
        x0 = int(rng.integers(min(0, image.shape[1] - w), max(image.shape[1] - w, 0) + 1))
        rows, cols = rows + y0, cols + x0
        inside = (rows >= 0) & (rows < image.shape[0]) & (cols >= 0) & (cols < image.shape[1])
        image[rows[inside], cols[inside]] += values[inside]  # a footprint's pixels are distinct
        truth[rows[inside], cols[inside]] = True
        stamp = np.zeros((h, w), np.float32)
        stamp[rows - y0, cols - x0] = values
        n_pix, length = shape_stats(stamp)
        footprints.append(RayFootprint("real", y0 + h // 2, x0 + w // 2, n_pix, length, float(values.sum()), fp.fp_id))
    charge = np.where(truth, image - np.asarray(clean, np.float32), 0).astype(np.float32)
    return Injection(image, truth, charge, n_rays, footprints, 0.0)


def _oriented(stamp: np.ndarray, turns: int, transpose: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel rows, columns (from the stamp's corner) and float32 charges of a footprint, transposed if asked
    and turned clockwise ``turns`` quarter turns within its extent."""
    rows, cols = np.nonzero(stamp)
    values = stamp[rows, cols].astype(np.float32)
    if transpose:
        rows, cols = cols, rows
    h, w = int(rows.max()) + 1, int(cols.max()) + 1
    for _ in range(turns % 4):
        rows, cols, h, w = cols, h - 1 - rows, w, h
    return rows, cols, values
