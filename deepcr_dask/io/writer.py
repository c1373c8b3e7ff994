"""FITS output: the cleaned copy of an input file, written under a temporary name and renamed into place.

SCI is replaced by the cleaned pixels in the input's units; each chip's DQ is OR-ed with the cosmic-ray
bit (a CRMASK extension for chips without DQ in the file, as a WFPC2 c0f); ERR at inpainted pixels becomes
the uncertainty of the inpainted value (Poisson on the value plus read noise); the primary header gets the
provenance keywords, the unit assumptions and a HISTORY line. The input is never modified.

The output's name says its form: ``.fits`` is plain FITS (a tile-compressed input's HDUs decompressed),
``.gz``/``.bz2`` compress the whole file (lossless), and ``.fz`` tile-compresses again what the input had
compressed, with the input's settings: integer HDUs (DQ, integer science data) losslessly; float HDUs are
quantised as the input's were (RICE/GZIP with ``quantize_level`` q: steps of sigma/q, an rms change of
sigma/(q*sqrt(12)), 0.018 sigma for astropy's q = 16), or losslessly where the input was (GZIP, no
quantisation).
"""

from __future__ import annotations

import bz2
import gzip
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..models.provenance import Provenance
from . import remote
from .fits import DEFAULT_CR_BIT, ChipInfo, ChipResult, open_fits
from .names import compression_of

__all__ = ["write_cleaned"]


def _atomic_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")


def write_cleaned(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    results: list[ChipResult],
    *,
    cr_bit: int = DEFAULT_CR_BIT,
    provenance: Provenance,
    extra_mask: bool = False,
    extra_probability: bool = False,
    notes: tuple[str, ...] = (),
) -> Path | str:
    """Write a cleaned copy of ``src`` to ``dst`` atomically (temporary name, fsync, rename).

    SCI data are replaced by the cleaned pixels converted back to the input's units (as float32),
    the DQ array of each chip is OR-ed with ``cr_bit`` where a cosmic ray was found, ERR (when present)
    is set at the replaced pixels to their new uncertainty, and a CRMASK extension is added for chips
    without DQ data in the file (and for all chips with ``extra_mask``). ``notes`` (how the units were
    decided) go into HISTORY. ``dst`` may be a URL: the file is written locally, then uploaded whole.
    """
    if remote.is_url(dst):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="deepcr-dask-") as scratch:
            local = write_cleaned(src, Path(scratch) / str(dst).rpartition("/")[2], results, cr_bit=cr_bit,
                                  provenance=provenance, extra_mask=extra_mask, extra_probability=extra_probability,
                                  notes=notes)
            remote.upload_file(local, str(dst))
        return dst
    dst = Path(remote.local_path(dst))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(dst)
    compression = compression_of(dst)
    with open_fits(src, memmap=False) as hdul:  # the copy needs every byte anyway
        # Tile-compressed HDUs become plain images (the data decompressed); a .fz output compresses them back.
        tiles = {i: _tile_settings(hdu) for i, hdu in enumerate(hdul) if isinstance(hdu, fits.CompImageHDU)}
        with warnings.catch_warnings():
            # Old files' table quirks (WFPC2's GEIS group table: an ASCII column with TDISP 'L') are copied
            # as they are; astropy's warning about them is nothing a user can act on.
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            out = fits.HDUList([_plain(hdu) for hdu in hdul])
    try:
        total = 0
        for result in results:
            chip = result.chip
            # Only the replaced pixels change: the others keep the input's exact values (a round trip through
            # electrons would move them by a rounding), and the data become float32 if they were not float.
            replaced = result.mask & result.inpainted
            hdu = out[chip.hdu]
            data = np.asarray(hdu.data)
            data = np.array(data, dtype=data.dtype if data.dtype.kind == "f" and data.itemsize >= 4 else np.float32)
            plane = data if chip.plane is None else data[chip.plane]
            plane[replaced] = result.cleaned[replaced] / np.float32(chip.factor)
            hdu.data = data
            total += int(result.mask.sum())
            if chip.err_hdu is not None and replaced.any():
                _update_err(out[chip.err_hdu], chip, result.cleaned, replaced)
            if chip.dq_hdu is not None and chip.dq_path is None:
                dq = out[chip.dq_hdu]
                dq.data = np.asarray(dq.data) | np.where(result.mask, cr_bit, 0).astype(dq.data.dtype)
            if chip.dq_hdu is None or chip.dq_path is not None or extra_mask:
                out.append(fits.ImageHDU(result.mask.astype(np.uint8), name="CRMASK", ver=_ver(chip)))
            if extra_probability and result.probability is not None:
                out.append(fits.ImageHDU(result.probability.astype(np.float32), name="CRPROB", ver=_ver(chip)))
        header = out[0].header
        for key, (value, comment) in provenance.fits_cards(cr_bit, total).items():
            header[key] = (value, comment)
        header.add_history(provenance.history(cr_bit, total))
        for note in notes:
            header.add_history(f"deepcr-dask units: {note}")
        if compression == ".fz":
            out = _tile_compressed(out, tiles)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # fixable header quirks of old files
            if compression in _STREAMS:
                with _STREAMS[compression](tmp, "wb") as stream:
                    out.writeto(stream, output_verify="silentfix", checksum=True)
            else:
                out.writeto(tmp, output_verify="silentfix", checksum=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


# Whole-file compressions of the output, written as a stream (lossless).
_STREAMS = {".gz": lambda path, mode: gzip.open(path, mode, compresslevel=6), ".bz2": bz2.open}


def _plain(hdu):
    """A copy of an HDU, a tile-compressed image decompressed into a plain image extension."""
    if isinstance(hdu, fits.CompImageHDU):
        return fits.ImageHDU(np.asarray(hdu.data), header=hdu.header.copy())
    return hdu.copy()


def _tile_settings(hdu: fits.CompImageHDU) -> dict:
    return {"compression_type": hdu.compression_type, "quantize_level": hdu.quantize_level,
            "quantize_method": hdu.quantize_method, "tile_shape": tuple(int(n) for n in hdu.tile_shape)}


def _tile_compressed(out: fits.HDUList, tiles: dict[int, dict]) -> fits.HDUList:
    """A .fz output: the HDUs compressed in the input compressed again with the input's settings (integer
    data losslessly; float data quantised as the input's were, or not at all where the input was lossless),
    and the CRMASK extensions losslessly (GZIP_2)."""
    hdus = [out[0]]
    for index, hdu in enumerate(out[1:], start=1):
        settings = tiles.get(index)
        if settings is None and hdu.name == "CRMASK":
            settings = {"compression_type": "GZIP_2"}
        if settings is None or not isinstance(hdu, fits.ImageHDU):
            hdus.append(hdu)
            continue
        if settings.get("tile_shape") and len(settings["tile_shape"]) != np.ndim(hdu.data):
            settings = {k: v for k, v in settings.items() if k != "tile_shape"}
        hdus.append(fits.CompImageHDU(np.asarray(hdu.data), header=hdu.header, **settings))
    return fits.HDUList(hdus)


def _ver(chip: ChipInfo) -> int:
    digits = "".join(ch for ch in chip.name if ch.isdigit())
    return int(digits) if digits else 1


def _update_err(hdu, chip: ChipInfo, cleaned_e: np.ndarray, replaced: np.ndarray) -> None:
    """ERR at replaced pixels: the Poisson and read noise of the inpainted value, in the input's units."""
    err = np.array(hdu.data, dtype=np.float32)
    read_noise = chip.read_noise or 0.0
    sigma_e = np.sqrt(np.clip(cleaned_e[replaced], 0, None) + read_noise**2)
    err[replaced] = (sigma_e / chip.factor).astype(np.float32)
    hdu.data = err
