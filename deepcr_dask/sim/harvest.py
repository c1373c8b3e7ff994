"""Real cosmic-ray footprints harvested from repeat exposures: HST rays from the STIS CR-SPLIT pairs, ground
rays from the WHT ISIS pair.

A ray of one exposure is a group of its pair-difference truth (:func:`~deepcr_dask.sim.pairs.pair_truth`);
its charge is the exposure minus the other one scaled to its time, pixel by pixel, less the difference's
running median along the slit (:meth:`~deepcr_dask.sim.pairs.RealPair.difference`; negative wings dropped).
Only whole rays are kept: a group on the frame's edge or within a pixel of a saturated pixel may have lost
charge there and is left out. Hot pixels cancel in the difference, so a ray across one is measured as well
as anywhere (with its extra Poisson noise).

The STIS frames are binned 2x1 (two columns summed on chip), so a footprint there is squeezed 2x along x.
:func:`harvest_pair` undoes the binning by splitting each binned pixel's charge evenly over the pixels it
summed (the split within a binned pixel is unknown; the total and the extent are right), and records the
binning it came from.

Footprints of one association go to one split only (:data:`HARVEST_SPLITS`): training injects the ``train``
rays, model selection the ``validation`` rays and the benchmark's tables the ``test`` rays, and each split's
footprint ids are disjoint from the others' (the association is part of the id).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data import real_data_dir
from .catalogue import Footprint, FootprintCatalogue, shape_stats
from .pairs import HARVEST_SPLITS, STIS_ASSOCIATIONS, RealPair, pair_truth, real_pairs

__all__ = ["HARVEST_SPLITS", "STIS_CCD_PIXEL_UM", "STIS_CCD_THICKNESS_UM", "harvest_pair", "harvested_catalogue",
           "write_catalogue"]

STIS_CCD_PIXEL_UM = 21.0  # SITe CCD, 21 um pixels
STIS_CCD_THICKNESS_UM = 15.0  # thinned, back-illuminated: the same order as ACS and WFC3 CCDs (the presets' 15 um)
_ID_STRIDE = 1_000_000  # fp_id = association * stride + exposure * stride / 10 + group label


def harvest_pair(pair: RealPair, k: int, *, unbin: bool = True, id_base: int = 0) -> list[tuple[int, np.ndarray]]:
    """The whole rays of exposure ``k`` of a pair, as ``(fp_id, stamp)`` with charges in electrons.

    Parameters
    ----------
    pair : RealPair
    k : int
        Which exposure (0 or 1).
    unbin : bool
        Spread each binned pixel's charge evenly over the ``pair.binning`` pixels it summed.
    id_base : int
        Added to each group's label to make the footprint id.

    Returns
    -------
    list of (int, ndarray)
        Stamps (float64, zero outside the ray) cut to the ray's bounding box.
    """
    truth, _ = pair_truth(pair, k, grow=True, exclude=pair.saturated)
    charge = pair.difference(k)
    labels, _ = ndimage.label(truth, np.ones((3, 3), bool))
    near_ignored = ndimage.binary_dilation(pair.saturated, np.ones((3, 3), bool))
    spoilt = np.unique(labels[near_ignored & truth])
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    by, bx = pair.binning if unbin else (1, 1)
    stamps = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or label in spoilt or label in edge:
            continue
        stamp = np.where(labels[box] == label, np.clip(charge[box], 0, None), 0.0)
        if not stamp.any():
            continue
        if by > 1 or bx > 1:
            stamp = np.repeat(np.repeat(stamp, by, axis=0), bx, axis=1) / (by * bx)
        stamps.append((id_base + label, stamp))
    return stamps


@functools.lru_cache(maxsize=8)
def _catalogue(folder: Path, associations: tuple[str, ...], unbin: bool) -> FootprintCatalogue:
    footprints, exptime, cut = [], 0.0, np.inf
    binning = (1, 1)
    ground = associations == ("wht",)
    pairs = real_pairs("wht", folder) if ground else real_pairs("stis", folder, associations=associations)
    for pair in pairs:
        index = STIS_ASSOCIATIONS.index(pair.name) + 1 if pair.name in STIS_ASSOCIATIONS else 9
        for k in (0, 1):
            for fp_id, stamp in harvest_pair(pair, k, unbin=unbin, id_base=index * _ID_STRIDE + k * _ID_STRIDE // 10):
                footprints.append(Footprint.from_stamp(fp_id, stamp))
                cut = min(cut, float(stamp[stamp > 0].min()))
            exptime += pair.exptimes[k]
        binning = (1, 1) if unbin else pair.binning
    if not footprints:
        raise ValueError(f"no whole rays harvested from {', '.join(associations)}")
    n, length = np.array([shape_stats(fp.stamp) for fp in footprints]).T
    sensor = (pairs[0].exposures[0].size, pairs[0].instrument.pixel_um, pairs[0].instrument.thickness_um) \
        if ground else (1024 * 1024, STIS_CCD_PIXEL_UM, STIS_CCD_THICKNESS_UM)
    return FootprintCatalogue(
        path=folder, exptime=exptime / 2, sensor_pixels=sensor[0], cut_e=cut, footprints=tuple(footprints),
        n_pixels=n.astype(np.int64), length_px=length, total_e=np.array([fp.charge.sum() for fp in footprints]),
        pixel_um=sensor[1], thickness_um=sensor[2], binning=binning,
        name="wht-isis" if ground else f"stis-{'+'.join(associations)}",
    )


def harvested_catalogue(split: str = "train", folder: str | os.PathLike | None = None, *,
                        unbin: bool = True) -> FootprintCatalogue:
    """Real HST cosmic rays from the STIS CR-SPLIT pairs of one split (cached per process).

    Parameters
    ----------
    split : {"train", "validation", "test"}, an association name, or "wht"
        Whole associations (:data:`HARVEST_SPLITS`); "wht": the rays of the WHT ISIS pair (a ground CCD;
        that pair is a benchmark set, so no shipped recipe trains on these).
    folder : path, optional
        Default: :func:`deepcr_dask.data.real_data_dir`.
    unbin : bool
        Undo the 2x1 binning (for injection into unbinned frames).

    Returns
    -------
    FootprintCatalogue
        ``exptime`` is the mean exposure time per frame of the rays (both exposures of each pair are
        harvested), ``pixel_um``/``thickness_um`` the STIS CCD's.

    Raises
    ------
    FileNotFoundError
        When the STIS pairs are not in ``folder``.
    """
    associations = HARVEST_SPLITS.get(split, (split,))
    base = real_data_dir(folder).resolve()
    if split == "wht":
        if not (base / "wht_isis_r2701242.fits.gz").is_file():
            raise FileNotFoundError(f"the WHT ISIS pair is not in {base} (set DEEPCR_DASK_REAL_DATA to its folder)")
        return _catalogue(base, ("wht",), unbin)
    missing = [a for a in associations if not (base / f"stis_{a}_raw.fits").is_file()]
    if missing:
        raise FileNotFoundError(f"STIS CR-SPLIT pairs not found in {base}: {', '.join(missing)} "
                                "(set DEEPCR_DASK_REAL_DATA to their folder)")
    return _catalogue(base, tuple(associations), unbin)


def write_catalogue(catalogue: FootprintCatalogue, path: str | os.PathLike) -> Path:
    """Write a catalogue as imSim's table (``fp_id``, ``x0``, ``y0``, ``pixel_values``: one row per span
    of a footprint's row) with the source sensor in the header; written to a temporary name, then renamed.

    Returns
    -------
    Path
    """
    from astropy.io import fits

    ids, x0s, y0s, values = [], [], [], []
    for fp in catalogue.footprints:
        for y, row in enumerate(fp.stamp):
            cols = np.flatnonzero(row)
            if not cols.size:
                continue
            for span in np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1):  # runs of charged pixels
                ids.append(fp.fp_id)
                x0s.append(int(span[0]))
                y0s.append(y)
                values.append(row[span[0]:span[-1] + 1].astype(np.float32))
    table = fits.BinTableHDU.from_columns([
        fits.Column("fp_id", "K", array=np.array(ids, np.int64)),
        fits.Column("x0", "J", array=np.array(x0s, np.int32)),
        fits.Column("y0", "J", array=np.array(y0s, np.int32)),
        fits.Column("pixel_values", "PE()", array=np.array(values, dtype=object)),
    ], name="COSMIC_RAYS")
    header = table.header
    header["EXPTIME"] = (catalogue.exptime, "s, mean exposure per harvested frame")
    header["NUM_PIX"] = (catalogue.sensor_pixels, "unbinned sensor pixels per frame")
    header["PIXUM"] = (catalogue.pixel_um, "source sensor pixel pitch (um)")
    header["THICKUM"] = (catalogue.thickness_um, "source sensor thickness (um)")
    header["BINAXIS1"] = (catalogue.binning[1], "x binning of the stamps")
    header["BINAXIS2"] = (catalogue.binning[0], "y binning of the stamps")
    header["SOURCE"] = catalogue.name
    out = Path(path)
    tmp = out.with_name(out.name + ".part")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp, overwrite=True)
    os.replace(tmp, out)
    return out
