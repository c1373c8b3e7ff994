"""Real cosmic-ray footprints from the imSim ITL catalogue, rescaled to a target detector.

Charge scales with the silicon path length (``amp = t / 100 um``); the diffusion width is a physical size
(in pixels it scales with ``10 um / pixel``); the *track* part of a footprint (its elongation beyond its
width) is ``t * tan(theta) / pixel`` long, so it scales with ``(t / pixel) / (100 um / 10 um)``.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import real_data_dir
from .instruments import ITL_PIXEL_UM, ITL_THICKNESS_UM, Instrument, SeedLike, get_instrument

__all__ = ["CATALOGUE_NAME", "FootprintCatalogue", "footprint_catalogue"]

CATALOGUE_NAME = "imsim_cosmic_rays_itl_2017.fits.gz"


# ------------------------------------------------------------------------------------ footprint geometry
@dataclass(frozen=True)
class _Scaling:
    """How catalogue footprints map onto a target detector (see the module docstring)."""

    amplitude: float
    width: float
    track: float

    @classmethod
    def for_instrument(cls, inst: Instrument, pixel_um: float = ITL_PIXEL_UM,
                       thickness_um: float = ITL_THICKNESS_UM) -> _Scaling:
        """From a source sensor (``pixel_um``, ``thickness_um``: the imSim ITL one by default) to ``inst``."""
        return cls(
            amplitude=inst.thickness_um / thickness_um,
            width=pixel_um / inst.pixel_um,
            track=(inst.thickness_um / inst.pixel_um) / (thickness_um / pixel_um),
        )

    @property
    def identity(self) -> bool:
        return all(abs(v - 1.0) < 1e-9 for v in (self.amplitude, self.width, self.track))


_DIRECTIONS = np.stack([np.sin(np.arange(16) * np.pi / 16), np.cos(np.arange(16) * np.pi / 16)])


def shape_stats(stamp: np.ndarray) -> tuple[int, float]:
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
class Footprint:
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
    def from_stamp(cls, fp_id: int, stamp: np.ndarray) -> Footprint:
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
    """Real cosmic-ray footprints (electrons): imSim's ITL lab darks, or rays harvested from real repeat
    exposures (:mod:`.harvest`), with the sensor they come from.

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
    pixel_um, thickness_um : float
        The source sensor's pixel pitch and thickness (how :meth:`sample` rescales to another camera).
    binning : tuple of int
        (y, x) binning of the frames the rays were cut from; ``(1, 1)`` once unbinned.
    name : str
    """

    path: Path
    exptime: float
    sensor_pixels: int
    cut_e: float
    footprints: tuple[Footprint, ...] = field(repr=False)
    n_pixels: np.ndarray = field(repr=False)
    length_px: np.ndarray = field(repr=False)
    total_e: np.ndarray = field(repr=False)
    pixel_um: float = ITL_PIXEL_UM
    thickness_um: float = ITL_THICKNESS_UM
    binning: tuple[int, int] = (1, 1)
    name: str = "imsim-itl"

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
        area = self.sensor_pixels * (self.pixel_um * 1e-4) ** 2
        return len(self) / area / self.exptime

    def scaling(self, instrument: str | Instrument) -> _Scaling:
        """How this catalogue's footprints map onto ``instrument``."""
        return _Scaling.for_instrument(get_instrument(instrument), self.pixel_um, self.thickness_um)

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
        scaling = self.scaling(instrument)
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
        scaling = self.scaling(instrument)
        rng = np.random.default_rng(seed)
        stamps = [fp.transformed(scaling, self.floor_e(scaling), rng) for fp in self.footprints]
        stamps = [s for s in stamps if s.any()]  # as in :meth:`sample`
        n, length = np.array([shape_stats(s) for s in stamps]).T
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
        sensor = {"pixel_um": float(header.get("PIXUM", ITL_PIXEL_UM)),
                  "thickness_um": float(header.get("THICKUM", ITL_THICKNESS_UM)),
                  "binning": (int(header.get("BINAXIS2", 1)), int(header.get("BINAXIS1", 1))),
                  "name": str(header.get("SOURCE", "imsim-itl"))}
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
        footprints.append(Footprint.from_stamp(int(ids[rows[0]]), stamp))
    n, length = np.array([shape_stats(fp.stamp) for fp in footprints]).T
    return FootprintCatalogue(
        path=path,
        exptime=exptime,
        sensor_pixels=npix,
        cut_e=float(min(v.min() for v in values if v.size)),
        footprints=tuple(footprints),
        n_pixels=n.astype(np.int64),
        length_px=length,
        total_e=np.array([fp.charge.sum() for fp in footprints]),
        **sensor,
    )


def resolve_catalogue(catalogue) -> FootprintCatalogue | None:
    if catalogue is None or isinstance(catalogue, FootprintCatalogue):
        return catalogue
    if isinstance(catalogue, str) and catalogue == "auto":
        try:
            return footprint_catalogue()
        except FileNotFoundError as exc:
            warnings.warn(f"{exc}", RuntimeWarning, stacklevel=3)
            return None
    return footprint_catalogue(catalogue)
