"""Realistic CCD scenes and cosmic-ray injection, seeded and reproducible.

Scenes (:func:`simulate_scene`) hold sky with a gradient, stars with a sampled PSF (Moffat or a Gaussian
mixture, sub-pixel centres, pixel-integrated), Sersic galaxies, saturation with bleed trails, hot pixels and bad
columns (both in the ``ignore`` mask), Poisson and read noise and the gain's digitisation. Images are in
electrons.

Cosmic rays (:func:`inject_cosmic_rays`) mix real footprints from the imSim ITL catalogue (lab darks of a
100 um thick sensor with 10 um pixels) with synthetic straight tracks and curly "worms". Real footprints are
rotated by a random angle, mirrored, and rescaled to the target detector:

* charge scales with the silicon path length, so with thickness: ``amp = t / 100 um``;
* the diffusion width is a physical size, so in pixels it scales with ``10 um / pixel``;
* the *track* part of a footprint (its elongation beyond its width) is ``t * tan(theta) / pixel`` long, so it
  scales with ``(t / pixel) / (100 um / 10 um)``: a 15 um thick HST CCD with 15 um pixels gets tracks ten
  times shorter than the lab sensor, while the diffusion blob only shrinks by 2/3.

Only the count depends on the exposure: ``Poisson(rate * exptime * area)``, with the rate per cm^2 per second
from the instrument preset. The truth mask marks pixels whose injected charge exceeds ``truth_sigma`` times
the local noise sigma (default :data:`TRUTH_SIGMA` = 1: the ray changes that pixel by more than its noise).

Everything draws from ``numpy.random.default_rng(seed)``: the same seed gives identical arrays (as long as the
footprint catalogue is equally present or absent).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import fft as sfft
from scipy import ndimage, special

from .data import real_data_dir

__all__ = [
    "INSTRUMENTS",
    "TRUTH_SIGMA",
    "FootprintCatalogue",
    "Injection",
    "Instrument",
    "RayFootprint",
    "Sample",
    "Scene",
    "find_own_cosmic_rays",
    "footprint_catalogue",
    "get_instrument",
    "inject_cosmic_rays",
    "simulate",
    "simulate_scene",
    "training_pair_from_real",
]

TRUTH_SIGMA = 1.0
"""Default truth threshold: injected charge above this many local noise sigmas."""

CATALOGUE_NAME = "imsim_cosmic_rays_itl_2017.fits.gz"
ITL_PIXEL_UM = 10.0  # LSST ITL sensor the imSim footprints come from
ITL_THICKNESS_UM = 100.0
MIP_E_PER_UM = 75.0  # most probable ionisation of a minimum-ionising particle in silicon
WORM_E_PER_UM = 150.0  # slow electrons ionise more densely
WORM_FRACTION = 0.3  # of the synthetic rays
SYNTH_FLOOR_E = 1.0  # synthetic charge below this is numerical dust
MAX_TAN_THETA = 30.0  # grazing-track cap (88 degrees)
SeedLike = int | np.random.SeedSequence | np.random.Generator | None


# --------------------------------------------------------------------------------------------- instruments
@dataclass(frozen=True)
class Instrument:
    """Detector preset: geometry, noise, cosmic-ray rate and typical scene parameters.

    Attributes
    ----------
    name : str
    pixel_um : float
        Pixel pitch in micrometres (sets the detector area, hence the ray count, and footprint scaling).
    pixel_scale_arcsec : float
        Sky size of a pixel (sets galaxy sizes).
    gain : float
        Electrons per DN; images are in electrons, the gain sets the digitisation step.
    read_noise : float
        Electrons RMS.
    saturation : float
        Full well / ADC limit in electrons.
    cr_rate_per_cm2_s : float
        Cosmic-ray events per cm^2 per second.
    fwhm_px : tuple of float
        PSF FWHM range in pixels (seeing range for ground instruments).
    sky_e_per_s : tuple of float
        Sky level range in electrons per second per pixel.
    thickness_um : float
        Sensitive silicon thickness: sets track lengths and the charge per ray.
    space : bool
        Isotropic particle flux (orbit) rather than the zenith-peaked muon flux on the ground.
    diffusion_um : float
        Lateral charge-diffusion sigma in micrometres.
    hot_pixel_fraction : float
    bad_columns_per_kpx : float
        Mean number of bad columns per 1000 columns.
    """

    name: str
    pixel_um: float
    pixel_scale_arcsec: float
    gain: float
    read_noise: float
    saturation: float
    cr_rate_per_cm2_s: float
    fwhm_px: tuple[float, float]
    sky_e_per_s: tuple[float, float]
    thickness_um: float
    space: bool = True
    diffusion_um: float = 4.0
    hot_pixel_fraction: float = 3e-4
    bad_columns_per_kpx: float = 1.0


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        # HST rates: about 1.2-2 events / cm^2 / s in orbit, the same particle flux for every camera.
        Instrument("ACS-WFC", 15.0, 0.05, 1.0, 4.5, 80_000.0, 1.5, (1.9, 2.3), (0.03, 0.15), 15.0),
        Instrument("WFC3-UVIS", 15.0, 0.04, 1.0, 3.1, 63_000.0, 1.5, (1.8, 2.0), (0.02, 0.10), 15.0),
        # WFPC2 at gain 7 saturates in the 12-bit ADC (4095 DN).
        Instrument("WFPC2", 15.0, 0.1, 7.0, 5.3, 28_000.0, 1.5, (1.3, 1.5), (0.03, 0.20), 15.0),
        # Ground: secondary muons at sea level, about 1 / cm^2 / minute.
        Instrument("ground", 15.0, 0.2, 2.0, 5.0, 60_000.0, 0.015, (2.5, 5.0), (5.0, 50.0), 40.0, space=False),
        Instrument(
            "DECam", 15.0, 0.263, 4.0, 7.0, 150_000.0, 0.015, (3.0, 5.0), (20.0, 150.0), 250.0,
            space=False, diffusion_um=7.0,
        ),
        # The catalogue's own sensor (identity rescaling); the rate is the catalogue's lab-dark rate.
        Instrument(
            "LSST-ITL", ITL_PIXEL_UM, 0.2, 1.5, 6.0, 100_000.0, 0.0722, (2.5, 4.5), (10.0, 60.0), ITL_THICKNESS_UM,
            space=False,
        ),
    )
}


def get_instrument(instrument: str | Instrument) -> Instrument:
    """Resolve a preset name (case-insensitive) or pass an :class:`Instrument` through.

    Parameters
    ----------
    instrument : str or Instrument

    Returns
    -------
    Instrument
    """
    if isinstance(instrument, Instrument):
        return instrument
    for name, preset in INSTRUMENTS.items():
        if name.lower() == str(instrument).lower():
            return preset
    raise KeyError(f"unknown instrument {instrument!r}; presets: {', '.join(INSTRUMENTS)}")


# ------------------------------------------------------------------------------------ footprint geometry
@dataclass(frozen=True)
class _Scaling:
    """How catalogue footprints map onto a target detector (see the module docstring)."""

    amplitude: float
    width: float
    track: float

    @classmethod
    def for_instrument(cls, inst: Instrument) -> _Scaling:
        return cls(
            amplitude=inst.thickness_um / ITL_THICKNESS_UM,
            width=ITL_PIXEL_UM / inst.pixel_um,
            track=(inst.thickness_um / inst.pixel_um) / (ITL_THICKNESS_UM / ITL_PIXEL_UM),
        )

    @property
    def identity(self) -> bool:
        return all(abs(v - 1.0) < 1e-9 for v in (self.amplitude, self.width, self.track))


_DIRECTIONS = np.stack([np.sin(np.arange(16) * np.pi / 16), np.cos(np.arange(16) * np.pi / 16)])


def _shape_stats(stamp: np.ndarray) -> tuple[int, float]:
    """(pixel count, length): length = 1 + largest extent between pixel centres over 16 directions."""
    ys, xs = np.nonzero(stamp)
    if ys.size == 0:
        return 0, 0.0
    proj = np.stack([ys, xs], 1).astype(np.float64) @ _DIRECTIONS
    return int(ys.size), float(np.ptp(proj, axis=0).max() + 1.0)


def _splat(py: np.ndarray, px: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Bilinear deposit of point charges (pixel-centre coordinates, all >= 0) into a fresh stamp."""
    i0 = np.floor(py).astype(np.int64)
    j0 = np.floor(px).astype(np.int64)
    fy, fx = py - i0, px - j0
    h, w = int(i0.max()) + 2, int(j0.max()) + 2
    out = np.zeros(h * w)
    for di, wy in ((0, 1 - fy), (1, fy)):
        for dj, wx in ((0, 1 - fx), (1, fx)):
            out += np.bincount((i0 + di) * w + j0 + dj, q * wy * wx, minlength=h * w)
    return out.reshape(h, w)


def _spread(u: np.ndarray, v: np.ndarray, q: np.ndarray, width_u: float, width_v: float):
    """Replace each point by a grid of sub-points filling a width_u x width_v box (spacing <= 0.5)."""
    mu, mv = max(1, math.ceil(2 * width_u)), max(1, math.ceil(2 * width_v))
    du = ((np.arange(mu) + 0.5) / mu - 0.5) * width_u
    dv = ((np.arange(mv) + 0.5) / mv - 0.5) * width_v
    du, dv = (g.ravel() for g in np.meshgrid(du, dv, indexing="ij"))
    return (u[:, None] + du).ravel(), (v[:, None] + dv).ravel(), np.repeat(q / du.size, du.size)


@dataclass(frozen=True, eq=False)
class _Footprint:
    """One catalogue ray with its principal axes, precomputed for fast rescaling."""

    fp_id: int
    stamp: np.ndarray
    coords: np.ndarray  # (2, n) pixel centres relative to the charge centroid
    charge: np.ndarray  # (n,)
    major: np.ndarray
    minor: np.ndarray
    extent_major: float
    extent_minor: float

    @classmethod
    def from_stamp(cls, fp_id: int, stamp: np.ndarray) -> _Footprint:
        ys, xs = np.nonzero(stamp)
        q = stamp[ys, xs].astype(np.float64)
        c = np.stack([ys, xs]).astype(np.float64)
        d = c - (c * q).sum(1, keepdims=True) / q.sum()
        _, vecs = np.linalg.eigh((d * q) @ d.T / q.sum())
        major, minor = vecs[:, 1], vecs[:, 0]
        return cls(fp_id, stamp, d, q, major, minor, float(np.ptp(major @ d) + 1), float(np.ptp(minor @ d) + 1))

    def transformed(self, scaling: _Scaling, floor_e: float, rng: np.random.Generator) -> np.ndarray:
        """A randomly oriented copy on the target detector's pixel grid (electrons)."""
        if scaling.identity:  # lossless: quarter turns and a mirror keep the catalogue's exact pixels
            out = np.rot90(self.stamp, int(rng.integers(4)))
            return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)
        # Keep the diffusion width (scaled as a physical size) and rescale only the elongation as a track.
        new_major = self.extent_minor * scaling.width + max(self.extent_major - self.extent_minor, 0.0) * scaling.track
        a_u, a_v = new_major / self.extent_major, scaling.width
        u = (self.major @ self.coords) * a_u
        v = (self.minor @ self.coords) * a_v * (1 if rng.random() < 0.5 else -1)
        # Source pixels map to boxes a_u x a_v target pixels wide; the bilinear deposit already spreads each point
        # over one target pixel, so spread sub-points only over the rest (none when shrinking): no double blur.
        u, v, q = _spread(u, v, self.charge * scaling.amplitude, max(a_u - 1, 0.0), max(a_v - 1, 0.0))
        phi = rng.uniform(0, 2 * np.pi)
        ry, rx = u * np.cos(phi) - v * np.sin(phi), u * np.sin(phi) + v * np.cos(phi)
        phase = rng.random(2)  # random sub-pixel position on the new grid
        out = _splat(ry - np.floor(ry.min()) + phase[0], rx - np.floor(rx.min()) + phase[1], q)
        out[out < floor_e] = 0.0  # resampling dust
        return out


# ------------------------------------------------------------------------------------ footprint catalogue
@dataclass(frozen=True, eq=False)
class FootprintCatalogue:
    """Real cosmic-ray footprints (electrons) from imSim's ITL lab darks.

    The FITS table holds one row per horizontal span: ``fp_id`` (the ray), ``x0``/``y0`` (the span's first
    pixel on the amplifier) and ``pixel_values`` (the span's charges along x). The rows of one ``fp_id``
    make up one 8-connected footprint.

    Attributes
    ----------
    path : Path
    exptime : float
        Total dark time the rays were harvested from (s).
    sensor_pixels : int
        Pixels the rays were harvested from.
    cut_e : float
        Smallest pixel charge kept (the catalogue's detection cut).
    n_pixels, length_px, total_e : ndarray
        Per-footprint pixel count, length (1 + largest extent between pixel centres) and charge.
    """

    path: Path
    exptime: float
    sensor_pixels: int
    cut_e: float
    footprints: tuple[_Footprint, ...] = field(repr=False)
    n_pixels: np.ndarray = field(repr=False)
    length_px: np.ndarray = field(repr=False)
    total_e: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.footprints)

    def floor_e(self, scaling: _Scaling) -> float:
        """Charge below which a resampled pixel is dropped: a quarter of the catalogue's cut at the new
        amplitude. Any catalogue pixel keeps at least a quarter of its charge in one pixel after a bilinear
        deposit, so only resampling dust goes, never a whole ray."""
        return self.cut_e * scaling.amplitude * (1.0 if scaling.identity else 0.25)

    @property
    def rate_per_cm2_s(self) -> float:
        """Event rate of the lab darks (cm^-2 s^-1)."""
        area = self.sensor_pixels * (ITL_PIXEL_UM * 1e-4) ** 2
        return len(self) / area / self.exptime

    def sample(self, instrument: str | Instrument, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Draw one footprint, rescaled and randomly oriented for ``instrument``.

        Footprints left with no pixel above the catalogue's cut (scaled like the charge) are redrawn: they
        would be invisible on the target detector.

        Returns
        -------
        stamp : ndarray
            Charge in electrons (float64), zero outside the footprint.
        fp_id : int
        """
        scaling = _Scaling.for_instrument(get_instrument(instrument))
        for _ in range(1000):  # faint lab events can fall below the cut on a thinner sensor: draw again
            fp = self.footprints[int(rng.integers(len(self)))]
            stamp = fp.transformed(scaling, self.floor_e(scaling), rng)
            if stamp.any():
                return stamp, fp.fp_id
        raise ValueError(f"no catalogue footprint stays above the detection cut on {instrument}")

    def properties(
        self, instrument: str | Instrument | None = None, seed: SeedLike = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-footprint pixel count, length and charge, raw (``instrument=None``) or rescaled once each
        (leaving out those that fall below the cut, as :meth:`sample` does).

        Returns
        -------
        n_pixels, length_px, total_e : ndarray
        """
        if instrument is None:
            return self.n_pixels, self.length_px, self.total_e
        scaling = _Scaling.for_instrument(get_instrument(instrument))
        rng = np.random.default_rng(seed)
        stamps = [fp.transformed(scaling, self.floor_e(scaling), rng) for fp in self.footprints]
        stamps = [s for s in stamps if s.any()]  # as in :meth:`sample`
        n, length = np.array([_shape_stats(s) for s in stamps]).T
        return n.astype(np.int64), length, np.array([s.sum() for s in stamps])

    def stats(self, instrument: str | Instrument | None = None, seed: SeedLike = 0) -> dict[str, float]:
        """Median and 95th percentile of :meth:`properties`.

        Returns
        -------
        dict
            ``n_pixels_median``, ``n_pixels_p95``, ``length_median``, ``length_p95``, ``total_e_median``.
        """
        n, length, total = self.properties(instrument, seed)
        return {
            "n_pixels_median": float(np.median(n)),
            "n_pixels_p95": float(np.percentile(n, 95)),
            "length_median": float(np.median(length)),
            "length_p95": float(np.percentile(length, 95)),
            "total_e_median": float(np.median(total)),
        }


def footprint_catalogue(path: str | os.PathLike | None = None) -> FootprintCatalogue:
    """Load the imSim cosmic-ray footprint catalogue (cached per path).

    Parameters
    ----------
    path : path-like, optional
        The ``.fits.gz`` file, or the folder holding it. Default: ``$DEEPCR_DASK_REAL_DATA`` or
        ``<repo>/../shared/data/real``. Nothing is ever downloaded.

    Returns
    -------
    FootprintCatalogue

    Raises
    ------
    FileNotFoundError
        Naming the path looked at, when the file is absent.
    """
    p = Path(path) if path is not None else real_data_dir()
    if p.is_dir() or path is None:
        p = p / CATALOGUE_NAME
    if not p.is_file():
        raise FileNotFoundError(
            f"cosmic-ray footprint catalogue not found at {p} (set DEEPCR_DASK_REAL_DATA to its folder); "
            "simulations fall back to synthetic tracks and worms"
        )
    return _load_catalogue(p.resolve())


@functools.lru_cache(maxsize=4)
def _load_catalogue(path: Path) -> FootprintCatalogue:
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = hdul["COSMIC_RAYS"] if "COSMIC_RAYS" in hdul else hdul[1]
        table, header = hdu.data, hdu.header
        ids = np.asarray(table["fp_id"], np.int64)
        x0 = np.asarray(table["x0"], np.int64)
        y0 = np.asarray(table["y0"], np.int64)
        values = [np.asarray(v, np.float64) for v in table["pixel_values"]]
        exptime, npix = float(header.get("EXPTIME", 1500.0)), int(header.get("NUM_PIX", 16_288_000))
    order = np.argsort(ids, kind="stable")  # group spans by ray
    bounds = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0, True])
    footprints = []
    for a, b in itertools.pairwise(bounds):
        rows = order[a:b]
        ymin, xmin = y0[rows].min(), x0[rows].min()
        width = max(x0[r] + len(values[r]) for r in rows) - xmin
        stamp = np.zeros((y0[rows].max() - ymin + 1, width))
        for r in rows:
            stamp[y0[r] - ymin, x0[r] - xmin : x0[r] - xmin + len(values[r])] = values[r]
        footprints.append(_Footprint.from_stamp(int(ids[rows[0]]), stamp))
    n, length = np.array([_shape_stats(fp.stamp) for fp in footprints]).T
    return FootprintCatalogue(
        path=path,
        exptime=exptime,
        sensor_pixels=npix,
        cut_e=float(min(v.min() for v in values if v.size)),
        footprints=tuple(footprints),
        n_pixels=n.astype(np.int64),
        length_px=length,
        total_e=np.array([fp.charge.sum() for fp in footprints]),
    )


def _resolve_catalogue(catalogue) -> FootprintCatalogue | None:
    if catalogue is None or isinstance(catalogue, FootprintCatalogue):
        return catalogue
    if isinstance(catalogue, str) and catalogue == "auto":
        try:
            return footprint_catalogue()
        except FileNotFoundError as exc:
            warnings.warn(f"{exc}", RuntimeWarning, stacklevel=3)
            return None
    return footprint_catalogue(catalogue)


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


def _add_stamp(canvas: np.ndarray, stamp: np.ndarray, y0: int, x0: int) -> None:
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
    cat = _resolve_catalogue(catalogue) if real_fraction > 0 else None
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
        _add_stamp(charge, stamp, y - stamp.shape[0] // 2, x - stamp.shape[1] // 2)
        n_pix, length = _shape_stats(stamp)
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
        _add_stamp(grid, stamp, ci - half, cj - half)


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
    image = rng.poisson(np.clip(noiseless, 0, None)).astype(np.float64)
    image += rng.normal(0.0, inst.read_noise, (h, w))
    image = np.round(image / inst.gain) * inst.gain  # digitisation
    image[saturated] = inst.saturation
    image = np.minimum(image, inst.saturation)
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


# ------------------------------------------------------------------------------------- training samples
@dataclass(frozen=True, eq=False)
class Sample:
    """A training / evaluation pair.

    Attributes
    ----------
    image : float32 ndarray
        Frame with injected rays (electrons).
    truth : bool ndarray
        Injected rays only.
    ignore : bool ndarray
        Pixels to leave out of losses and scores.
    clean : float32 ndarray
        The frame without the injected rays.
    noise_sigma : float32 ndarray
    charge : float32 ndarray
        Injected electrons.
    footprints : list of RayFootprint
    instrument : Instrument
    exptime : float
    """

    image: np.ndarray
    truth: np.ndarray
    ignore: np.ndarray
    clean: np.ndarray
    noise_sigma: np.ndarray
    charge: np.ndarray
    footprints: list[RayFootprint]
    instrument: Instrument
    exptime: float


def simulate(
    shape: tuple[int, int] = (256, 256),
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    field: Literal["sparse", "globular", "galaxy"] = "sparse",
    *,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
    real_fraction: float = 0.7,
    truth_sigma: float = TRUTH_SIGMA,
) -> Sample:
    """A simulated scene with injected cosmic rays.

    Parameters
    ----------
    shape, instrument, exptime, field
        As :func:`simulate_scene`.
    seed : int, SeedSequence or Generator
        Split into independent streams for the scene and the rays.
    rate_scale, catalogue, real_fraction, truth_sigma
        As :func:`inject_cosmic_rays`.

    Returns
    -------
    Sample
    """
    scene_seed, ray_seed = _split_seed(seed)
    scene = simulate_scene(shape, instrument, exptime, scene_seed, field=field)
    inj = inject_cosmic_rays(
        scene.image, scene.noise_sigma, scene.instrument, exptime, ray_seed,
        rate_scale=rate_scale, catalogue=catalogue, real_fraction=real_fraction, truth_sigma=truth_sigma,
    )
    return Sample(inj.image, inj.truth, scene.ignore, scene.image, scene.noise_sigma, inj.charge,
                  inj.footprints, scene.instrument, float(exptime))


def _split_seed(seed: SeedLike) -> tuple:
    """Two independent streams (scene, rays) from one seed."""
    if isinstance(seed, np.random.Generator):
        return tuple(seed.spawn(2))
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    return tuple(seed.spawn(2))


def find_own_cosmic_rays(
    image, noise_sigma, *, sigclip: float = 4.0, objlim: float = 1.0, sigfrac: float = 0.3, grow: int = 2
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
    if grow > 0:
        yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
        mask = ndimage.binary_dilation(mask, yy**2 + xx**2 <= grow**2 + grow)
    return mask


def training_pair_from_real(
    image,
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    gain: float = 1.0,
    read_noise: float | None = None,
    *,
    ignore=None,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
    real_fraction: float = 0.7,
    truth_sigma: float = TRUTH_SIGMA,
) -> Sample:
    """Turn a real frame into a training pair by injecting extra cosmic rays.

    The frame's own rays are found conservatively (:func:`find_own_cosmic_rays`) and go to ``ignore``;
    ``truth`` holds the injected rays only.

    Parameters
    ----------
    image : 2-D array
        The real frame; multiplied by ``gain`` to give electrons (``gain=1`` for a frame in electrons).
    instrument : str or Instrument
        Sets the ray rate, footprint scaling and saturation.
    exptime : float
        Seconds (sets the number of injected rays with ``rate_scale``).
    seed : int, SeedSequence or Generator
    gain : float
        Electrons per input unit.
    read_noise : float, optional
        Electrons; default the instrument's.
    ignore : 2-D bool array, optional
        Known bad pixels (e.g. from a DQ array), kept in ``ignore``.
    rate_scale, catalogue, real_fraction, truth_sigma
        As :func:`inject_cosmic_rays`.

    Returns
    -------
    Sample
        ``clean`` is the frame in electrons (its own rays included; they are in ``ignore``).
    """
    inst = get_instrument(instrument)
    rn = inst.read_noise if read_noise is None else float(read_noise)
    frame = np.asarray(image, np.float64) * gain
    if frame.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {frame.shape}")
    bad = ~np.isfinite(frame)
    if bad.any():  # never let NaN/inf spread: fill with the median, and ignore them
        frame[bad] = np.median(frame[~bad]) if (~bad).any() else 0.0
    level = ndimage.median_filter(frame, 5, mode="nearest")
    sigma = np.sqrt(np.clip(level, 0, None) + rn**2)
    ign = bad | find_own_cosmic_rays(frame, sigma)
    ign |= ndimage.binary_dilation(frame >= 0.98 * inst.saturation, np.ones((3, 3), bool))
    if ignore is not None:
        ign |= np.asarray(ignore, bool)
    clean = frame.astype(np.float32)
    inj = inject_cosmic_rays(
        clean, sigma, inst, exptime, seed,
        rate_scale=rate_scale, catalogue=catalogue, real_fraction=real_fraction, truth_sigma=truth_sigma,
    )
    return Sample(inj.image, inj.truth, ign, clean, sigma.astype(np.float32), inj.charge, inj.footprints,
                  inst, float(exptime))
