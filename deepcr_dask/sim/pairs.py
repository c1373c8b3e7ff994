"""Real repeat exposures whose difference is a cosmic-ray truth that no detector made.

Two exposures of one pointing, taken back to back, see the same sky; what one holds and the other does not
is a cosmic ray (or noise). :func:`real_pairs` reduces the raw pairs of ``../shared/data/real`` (HST/STIS CCD
CR-SPLIT pairs, the WHT ISIS red-arm pair) to electrons: overscan (and, for WHT, master-bias) subtraction,
the gain, the read noise from the overscan by a robust estimator, the science area trimmed. :func:`pair_truth`
then marks, for one exposure, the pixels that stand above the other (scaled to its exposure time) by
``TRUTH_SIGMA_PAIR`` sigma, grown by one pixel into neighbours above ``GROW_SIGMA``; other pixels above
``AMBIGUOUS_SIGMA``, and groups smaller than the pair's ``min_pixels`` (WHT: single- and two-pixel
differences are mostly its read-noise tail), are ambiguous and ignored, never scored.

Hot and warm pixels of the raw frames (no dark subtracted) stand out in *both* exposures: they cancel in the
difference but a single-frame detector sees one-pixel rays, so they are ignored as a calibrated file's DQ
would flag them (:func:`hot_pixels`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data import real_data_dir
from .instruments import Instrument, get_instrument

__all__ = ["HARVEST_SPLITS", "PAIR_SETS", "STIS_ASSOCIATIONS", "TRUTH_SIGMA_PAIR", "RealPair", "hot_pixels",
           "pair_truth", "real_pairs", "split_pairs"]

# Whole associations per split: rays of one association are never in two splits.
HARVEST_SPLITS = {"train": ("o56502020", "o56502030"), "validation": ("o56502040",), "test": ("o56502050",)}

TRUTH_SIGMA_PAIR = 5.0  # a ray seed: this far above the other exposure
GROW_SIGMA = 2.0  # its neighbours above this join it
AMBIGUOUS_SIGMA = 3.0  # other pixels above this are neither ray nor clean: ignored
SCALE_NOISE = 0.03  # relative noise of a scaled exposure (pointing jitter, flat residuals), as crrej's SCALENSE
# The STIS CR-SPLIT associations of ../shared/data/real. o56502010's imsets differ in length (900 / 1685 s)
# and its sky differs by 4x between them (a lamp or a changed slit illumination): unusable as a pair.
STIS_ASSOCIATIONS = ("o56502020", "o56502030", "o56502040", "o56502050")
PAIR_SETS = ("stis", "wht")
STIS_SATURATION_DN = 31_000.0  # STIS CCD at CCDGAIN 1 saturates in the ADC near 33,000 DN; keep a margin
WHT_FRAMES = ("r2701242", "r2701244")
WHT_BIASES = ("r2700982", "r2700984", "r2700986")


@dataclass(frozen=True, eq=False)
class RealPair:
    """Two exposures of one pointing in electrons, with what a single frame must ignore.

    Attributes
    ----------
    name : str
        The association (STIS) or the frames (WHT).
    exposures : tuple of two float32 ndarrays
        Electrons, bias-subtracted and trimmed to the science area.
    exptimes : tuple of two floats
        Seconds.
    read_noise : float
        Electrons, from the overscan (robust).
    instrument : Instrument
        The camera preset (pixel size, saturation, ray rate).
    binning : tuple of int
        On-chip binning (along y, along x): a footprint here is squeezed that much.
    ignore : bool ndarray
        Saturated pixels (grown by 1) and hot pixels: ignored in both exposures.
    saturated : bool ndarray
        The saturated pixels alone (grown by 1): the only ones where the difference cannot measure a ray.
    min_pixels : int
        Smallest group of the pair difference that counts as a ray.
    slit_axis : int or None
        The slit's axis of a ground long-slit spectrum (0: along y, 1: along x). Night-sky lines change by
        tens of percent between exposures, by one factor along the slit at each wavelength: see
        :meth:`difference`. Medians over the whole slit leave any ray, however long, in the difference. None
        in orbit (STIS): no sky lines.
    """

    name: str
    exposures: tuple[np.ndarray, np.ndarray]
    exptimes: tuple[float, float]
    read_noise: float
    instrument: Instrument
    binning: tuple[int, int]
    ignore: np.ndarray
    saturated: np.ndarray
    min_pixels: int = 1
    slit_axis: int | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def scaled_other(self, k: int) -> np.ndarray:
        """The other exposure scaled to exposure ``k``'s time (electrons, float64)."""
        return self.exposures[1 - k].astype(np.float64) * (self.exptimes[k] / self.exptimes[1 - k])

    def difference(self, k: int) -> np.ndarray:
        """Exposure ``k`` minus the other scaled to its time (electrons, float64): a ray's charge. With a
        ``slit_axis``, the other is scaled per wavelength by the ratio of the two exposures' medians along
        the slit and the difference's median along the slit is taken out (night-sky lines)."""
        if ("difference", k) not in self._cache:
            this, other = self.exposures[k].astype(np.float64), self.scaled_other(k)
            if self.slit_axis is not None:  # each wavelength's sky changed by its own factor, then an offset
                level = np.median(other, axis=self.slit_axis, keepdims=True)
                ratio = np.median(this, axis=self.slit_axis, keepdims=True) / np.where(level > 1.0, level, 1.0)
                other = other * np.where(level > 1.0, ratio, 1.0)
            diff = this - other
            if self.slit_axis is not None:
                diff -= np.median(diff, axis=self.slit_axis, keepdims=True)
            self._cache["difference", k] = diff
        return self._cache["difference", k]

    def reference(self, k: int) -> np.ndarray:
        """What exposure ``k`` would hold without its rays: the other exposure, scaled, with the sky-line
        change along the slit added (float64)."""
        return self.exposures[k].astype(np.float64) - self.difference(k)

    def significance(self, k: int) -> np.ndarray:
        """:meth:`difference` in units of :meth:`difference_sigma`."""
        if ("significance", k) not in self._cache:
            self._cache["significance", k] = self.difference(k) / self.difference_sigma(k)
        return self._cache["significance", k]

    def difference_sigma(self, k: int) -> np.ndarray:
        """The noise sigma of ``exposures[k] - scaled_other(k)``: read noise of both, Poisson of the fainter
        of the two (a ray only raises one), and a relative term for the scaling."""
        r = self.exptimes[k] / self.exptimes[1 - k]
        level = np.clip(np.minimum(self.exposures[k], self.scaled_other(k)), 0, None)
        var = self.read_noise**2 * (1 + r**2) + level * (1 + r) + (SCALE_NOISE * level) ** 2
        return np.sqrt(var)


def _robust_sigma(values: np.ndarray) -> float:
    """Sigma of the core of a distribution of integers: half the 16-84 percentile range after 5-sigma
    clipping (the overscan holds outliers; a MAD of integer DN is quantised)."""
    v = np.asarray(values, np.float64).ravel()
    for _ in range(3):
        lo, mid, hi = np.percentile(v, [15.87, 50, 84.13])
        s = (hi - lo) / 2
        v = v[np.abs(v - mid) < 5 * max(s, 0.5)]
    lo, hi = np.percentile(v, [15.87, 84.13])
    return float((hi - lo) / 2) if hi > lo else float(np.std(v))


def hot_pixels(first: np.ndarray, second: np.ndarray, read_noise: float, nsigma: float = 5.0) -> np.ndarray:
    """Pixels far above their neighbours in *both* exposures: hot and warm pixels of an undarked frame.

    Tested on the pixelwise minimum of the two exposures (same exposure time), where a ray of either one is
    gone, also from beside a hot pixel: a pixel is hot where it exceeds the brighter of the means of its
    vertical and its horizontal neighbour pair there by ``nsigma`` times its own noise. Sky sources are
    smooth along at least one axis (a spectrum's trace along the dispersion, an emission line along the
    slit, a star both ways), so they stay. Grown by one pixel along columns (a warm pixel's charge-transfer
    tail).
    """
    low = np.minimum(np.asarray(first, np.float64), np.asarray(second, np.float64))
    pad = np.pad(low, 1, mode="edge")
    vertical = (pad[:-2, 1:-1] + pad[2:, 1:-1]) / 2
    horizontal = (pad[1:-1, :-2] + pad[1:-1, 2:]) / 2
    sigma = np.sqrt(read_noise**2 + np.clip(low, 0, None))
    hot = low - np.maximum(vertical, horizontal) > nsigma * sigma
    return ndimage.binary_dilation(hot, np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], bool))


def pair_truth(pair: RealPair, k: int, *, grow: bool = False, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Cosmic rays of exposure ``k`` against the other one, and the ambiguous pixels.

    Parameters
    ----------
    pair : RealPair
    k : int
        Which exposure.
    grow : bool
        Include each ray's wings: the neighbours (8-connected) above ``GROW_SIGMA`` (for harvesting a
        ray's whole charge). Without it (for scoring) the wings are ambiguous.
    exclude : bool ndarray, optional
        Pixels never truth; default ``pair.ignore``. Harvesting passes ``pair.saturated``: the difference
        measures a ray on a hot pixel as well as anywhere (the hot pixel cancels).

    Returns
    -------
    truth : bool ndarray
        Pixels ``TRUTH_SIGMA_PAIR`` sigma above the scaled other exposure (and their wings with ``grow``);
        never on ``pair.ignore``.
    ambiguous : bool ndarray
        Neither ray nor clean, ignored rather than scored: the wings (without ``grow``), other pixels above
        ``AMBIGUOUS_SIGMA``, pixels of the *other* exposure's rays (``AMBIGUOUS_SIGMA`` below it, grown by a
        pixel: what this exposure holds there cannot be told), and groups smaller than ``pair.min_pixels``.
    """
    significance = pair.significance(k)
    box = np.ones((3, 3), bool)
    exclude = pair.ignore if exclude is None else exclude
    seeds = (significance > TRUTH_SIGMA_PAIR) & ~exclude
    wings = ndimage.binary_dilation(seeds, box) & (significance > GROW_SIGMA) & ~seeds & ~exclude
    truth = seeds | wings if grow else seeds
    small = np.zeros_like(truth)
    if pair.min_pixels > 1:
        labels, _ = ndimage.label(seeds | wings, box)
        small = (np.bincount(labels.ravel()) < pair.min_pixels)[labels] & (seeds | wings)
        truth &= ~small
    others = significance < -TRUTH_SIGMA_PAIR
    others = (significance < -AMBIGUOUS_SIGMA) | (ndimage.binary_dilation(others, box) & (significance < -GROW_SIGMA))
    ambiguous = ((significance > AMBIGUOUS_SIGMA) | others | small | wings) & ~truth & ~exclude
    return truth, ambiguous


def _stis_pair(folder: Path, association: str) -> RealPair:
    """A raw STIS CCD CR-SPLIT pair: leading overscan columns give each imset's bias and read noise."""
    from astropy.io import fits

    path = folder / f"stis_{association}_raw.fits"
    with fits.open(path) as hdul:
        primary = hdul[0].header
        sci = [h for h in hdul if h.name == "SCI"]
        if len(sci) != 2:
            raise ValueError(f"{path}: expected 2 imsets of a CR-SPLIT pair, found {len(sci)}")
        bin_x, bin_y = int(primary.get("BINAXIS1", 1)), int(primary.get("BINAXIS2", 1))
        gain = float(primary.get("CCDGAIN", 1) or 1)  # raw ATODGAIN is 0: the nominal gain of the CCDGAIN setting
        exposures, exptimes, noises, saturated = [], [], [], []
        for hdu in sci:
            raw = hdu.data.astype(np.float64)
            # The first unbinned science pixel (1) lands at LTM * 1 + LTV (1-based, centres at integers).
            x0, y0 = (int(np.floor(float(hdu.header.get(f"LTM{a}_{a}", 1)) + float(hdu.header.get(f"LTV{a}", 0))
                                   + 0.5)) - 1 for a in (1, 2))
            nx, ny = 1024 // bin_x, 1024 // bin_y
            overscan = raw[y0:y0 + ny, 1:x0 - 1]  # the leading physical overscan, away from its edges
            bias = float(np.median(overscan))
            science = raw[y0:y0 + ny, x0:x0 + nx]
            exposures.append(((science - bias) * gain).astype(np.float32))
            exptimes.append(float(hdu.header["EXPTIME"]))
            noises.append(_robust_sigma(overscan) * gain)
            saturated.append(science >= STIS_SATURATION_DN)
    read_noise = float(max(noises))
    saturated = ndimage.binary_dilation(saturated[0] | saturated[1], np.ones((3, 3), bool))
    ignore = saturated | hot_pixels(exposures[0], exposures[1] * (exptimes[0] / exptimes[1]), read_noise)
    return RealPair(association, (exposures[0], exposures[1]), (exptimes[0], exptimes[1]), read_noise,
                    get_instrument("STIS-CCD"), (bin_y, bin_x), ignore, saturated)  # no sky lines in orbit


def _wht_pair(folder: Path) -> RealPair:
    """The WHT ISIS red-arm pair: master bias (median of three) and the overscan offset subtracted."""
    from astropy.io import fits

    def read(name: str) -> tuple[np.ndarray, object]:
        with fits.open(folder / f"wht_isis_{name}.fits.gz") as hdul:
            hdu = next(h for h in hdul if h.data is not None)
            return hdu.data.astype(np.float64), hdu.header

    trim, biassec = (slice(0, 4096), slice(0, 966)), (slice(4110, 4190), slice(0, 966))
    biases = [read(b)[0] for b in WHT_BIASES]
    master = np.median(biases, axis=0)
    exposures, exptimes = [], []
    for name in WHT_FRAMES:
        raw, header = read(name)
        gain = float(header.get("GAIN", 0.98))
        offset = np.median(raw[biassec]) - np.median(master[biassec])
        exposures.append(((raw[trim] - master[trim] - offset) * gain).astype(np.float32))
        exptimes.append(float(header.get("EXPTIME", 1800.0)))
    read_noise = _robust_sigma(biases[0][biassec] - biases[1][biassec]) / np.sqrt(2) * gain
    saturated = np.zeros(exposures[0].shape, bool)
    for name in WHT_FRAMES:
        saturated |= read(name)[0][trim] >= 65_000
    saturated = ndimage.binary_dilation(saturated, np.ones((3, 3), bool))
    ignore = saturated | hot_pixels(exposures[0], exposures[1] * (exptimes[0] / exptimes[1]), read_noise)
    ignore[:, :2] = ignore[:, -2:] = True  # the trimmed area's outer columns differ between the exposures
    return RealPair("wht-" + "-".join(WHT_FRAMES), (exposures[0], exposures[1]), (exptimes[0], exptimes[1]),
                    float(read_noise), get_instrument("ground"), (1, 1), ignore, saturated, min_pixels=3,
                    slit_axis=1)


@functools.lru_cache(maxsize=8)
def _cached(folder: Path, kind: str, name: str) -> RealPair:
    return _stis_pair(folder, name) if kind == "stis" else _wht_pair(folder)


def real_pairs(kind: str, folder: str | os.PathLike | None = None, *,
               associations: Sequence[str] = STIS_ASSOCIATIONS) -> list[RealPair]:
    """The real pairs of one kind, reduced to electrons (cached per process).

    Parameters
    ----------
    kind : {"stis", "wht"}
        HST/STIS CCD CR-SPLIT pairs (binned 2x1 long-slit spectra) or the WHT ISIS red-arm pair.
    folder : path, optional
        Default: :func:`deepcr_dask.data.real_data_dir`.
    associations : sequence of str
        STIS associations (default :data:`STIS_ASSOCIATIONS`).

    Returns
    -------
    list of RealPair
    """
    folder = real_data_dir(folder).resolve()
    if kind == "stis":
        return [_cached(folder, kind, a) for a in associations]
    if kind == "wht":
        return [_cached(folder, kind, "wht")]
    raise ValueError(f"unknown pair set {kind!r}; known: {', '.join(PAIR_SETS)}")


def split_pairs(kind: str, split: str, folder: str | os.PathLike | None = None) -> list[RealPair]:
    """The pairs of ``kind`` in one split: the STIS associations of ``split``
    (:data:`HARVEST_SPLITS`); the one WHT pair whatever the split."""
    if kind != "stis":
        return real_pairs(kind, folder)
    return real_pairs("stis", folder, associations=HARVEST_SPLITS[split])
