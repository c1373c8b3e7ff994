"""FITS input and output.

Reading turns an HST or ground frame into per-chip images in electrons plus an ignore mask (DQ bad
and saturated pixels), through picklable handles that open the file inside each task. Writing makes a
cleaned copy (SCI replaced in the input's units, DQ OR-ed with a cosmic-ray bit, provenance in the
header) under a temporary name and renames it into place. Input files are only ever opened read-only.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import DeepCRDaskError, InputError
from ..provenance import Provenance

__all__ = [
    "DEFAULT_IGNORE_BITS",
    "ChipInfo",
    "ChipResult",
    "ExposureInfo",
    "LazyChip",
    "SkipFile",
    "inspect_file",
    "read_chip",
    "write_cleaned",
]

# HST DQ flags whose pixels are ignored: Reed-Solomon (1), fill (2), bad detector pixel (4), masked (8),
# hot (16), bad column (128), full-well saturation (256), A-to-D saturation (2048).
DEFAULT_IGNORE_BITS = 1 | 2 | 4 | 8 | 16 | 128 | 256 | 2048
DEFAULT_CR_BIT = 8192  # AstroDrizzle resets 4096 by default; 8192 survives it

# (instrument, detector) -> model; anything else uses the generic model.
MODEL_BY_DETECTOR = {("ACS", "WFC"): "ACS-WFC", ("WFC3", "UVIS"): "WFC3-UVIS"}
MODEL_BY_INSTRUMENT = {"DECAM": "decam"}
GENERIC_MODEL = "generic-HST"  # our own model (deepcr_dask/weights), for cameras without a deepCR model


class SkipFile(DeepCRDaskError):
    """A valid file that should not be cleaned (e.g. WFC3/IR: cosmic rays already rejected up the ramp)."""


@dataclass(frozen=True)
class ChipInfo:
    """Where one chip lives in its file and how to convert it to electrons."""

    name: str  # "SCI,1", "PRIMARY[2]", ...
    hdu: int  # HDU index
    plane: int | None  # index into a cube (WFPC2), else None
    shape: tuple[int, int]
    factor: float  # electrons = data * factor
    dq_hdu: int | None  # HDU index of the chip's DQ array, when it has data


@dataclass(frozen=True)
class ExposureInfo:
    """What :func:`inspect_file` learned from the headers."""

    path: str
    instrument: str
    detector: str
    units: str
    model: str
    chips: tuple[ChipInfo, ...]
    notes: tuple[str, ...] = ()


@dataclass
class ChipResult:
    """Cleaning outputs of one chip, in electrons."""

    chip: ChipInfo
    mask: np.ndarray  # bool
    cleaned: np.ndarray  # float32 electrons
    probability: np.ndarray | None = None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _header_text(header, key: str) -> str:
    return str(header.get(key, "") or "").strip().upper()


def _open(path: str | os.PathLike, memmap: bool = True):
    """Open read-only; unreadable or non-FITS files become one-line InputErrors."""
    try:
        return fits.open(path, mode="readonly", memmap=memmap, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({_first_line(exc)})") from None


def _choose_model(instrument: str, detector: str) -> str:
    if (instrument, detector) in MODEL_BY_DETECTOR:
        return MODEL_BY_DETECTOR[(instrument, detector)]
    return MODEL_BY_INSTRUMENT.get(instrument, GENERIC_MODEL)


def _electrons_factor(path, primary, ext_header, gain: float | None) -> tuple[float, str, list[str]]:
    """Multiplier to electrons, the input units, and notes on how they were decided."""
    notes: list[str] = []
    bunit = _header_text(ext_header, "BUNIT") or _header_text(primary, "BUNIT")
    if gain is not None:
        return float(gain), bunit or "ADU", [f"gain {gain} given"]
    if bunit.startswith("ELECTRONS/S") or bunit in ("E/S", "E-/S"):
        exptime = primary.get("EXPTIME", ext_header.get("EXPTIME"))
        if not exptime:
            raise InputError(f"{path}: BUNIT is {bunit} but EXPTIME is missing; cannot convert to electrons")
        return float(exptime), bunit, notes
    if bunit.startswith("ELECTRON") or bunit in ("E-", "E"):
        return 1.0, bunit, notes
    for key in ("ATODGAIN", "CCDGAIN", "GAIN", "EGAIN"):
        for header in (ext_header, primary):
            value = header.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return float(value), bunit or "DN", [f"{key}={value} e-/DN"]
    notes.append("no BUNIT or gain keyword: data assumed to be in electrons")
    return 1.0, bunit or "unknown", notes


def inspect_file(path: str | os.PathLike, *, gain: float | None = None, model: str | None = None) -> ExposureInfo:
    """Find the science chips of a FITS file from its headers (no pixel data read).

    Parameters
    ----------
    path : path-like
    gain : float, optional
        e-/DN to use instead of the header's units and gain keywords.
    model : str, optional
        Mask model to use instead of the choice by INSTRUME / DETECTOR.

    Raises
    ------
    InputError
        Not FITS, truncated, or no 2-D science data.
    SkipFile
        Data that should not be cleaned (WFC3/IR and other up-the-ramp products).
    """
    path = str(path)
    with _open(path) as hdul:
        try:
            hdul.verify("silentfix+ignore")
            _check_complete(path, hdul)
            primary = hdul[0].header
            instrument = _header_text(primary, "INSTRUME")
            detector = _header_text(primary, "DETECTOR")
            if (instrument, detector) in (("WFC3", "IR"), ("NICMOS", "")) or instrument == "NICMOS":
                raise SkipFile(f"{path}: {instrument}/{detector or '?'} is up-the-ramp data; "
                               "cosmic rays are already rejected")
            chips, units, notes = _find_chips(path, hdul, gain)
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise InputError(f"{path}: damaged FITS file ({_first_line(exc)})") from None
    return ExposureInfo(path, instrument, detector, units, model or _choose_model(instrument, detector),
                        tuple(chips), tuple(notes))


def _check_complete(path: str, hdul) -> None:
    """A truncated file reads without error in astropy (it only warns); refuse it here."""
    if path.lower().endswith(".gz"):
        return  # the decompressor reports truncation itself
    last = hdul.fileinfo(len(hdul) - 1)
    expected = last["datLoc"] + last["datSpan"]
    actual = os.path.getsize(path)
    if actual < expected:
        raise InputError(f"{path}: truncated FITS file ({actual} of {expected} bytes)")


def _has_data(hdu) -> bool:
    return hdu.is_image and hdu.header.get("NAXIS", 0) >= 2


def _find_chips(path, hdul, gain) -> tuple[list[ChipInfo], str, list[str]]:
    primary = hdul[0].header
    sci = [i for i, h in enumerate(hdul) if _header_text(h.header, "EXTNAME") == "SCI" and _has_data(h)]
    chips: list[ChipInfo] = []
    units, notes = "", []
    if sci:
        for index in sci:
            header = hdul[index].header
            shape = _shape(path, header)
            factor, units, notes = _electrons_factor(path, primary, header, gain)
            ver = header.get("EXTVER", 1)
            dq = _find_ext(hdul, "DQ", ver)
            chips.append(ChipInfo(f"SCI,{ver}", index, None, shape, factor, dq))
        return chips, units, notes
    candidates = [i for i, h in enumerate(hdul) if _has_data(h)]
    if not candidates:
        raise InputError(f"{path}: no 2-D science image found")
    index = candidates[0]
    header = hdul[index].header
    factor, units, notes = _electrons_factor(path, primary, header, gain)
    naxis = header["NAXIS"]
    if naxis == 2:
        return [ChipInfo("PRIMARY" if index == 0 else f"HDU{index}", index, None, _shape(path, header), factor,
                         None)], units, notes
    if naxis == 3 and _header_text(primary, "INSTRUME") == "WFPC2":
        # WFPC2 c0f: the four chips as a cube (GEIS groups converted to FITS).
        planes = header["NAXIS3"]
        shape = (header["NAXIS2"], header["NAXIS1"])
        return [ChipInfo(f"CHIP{p + 1}", index, p, shape, factor, None) for p in range(planes)], units, notes
    dims = tuple(header[f"NAXIS{k}"] for k in range(naxis, 0, -1))
    raise InputError(f"{path}: expected a 2-D image (or a WFPC2 chip cube), found shape {dims}")


def _shape(path, header) -> tuple[int, int]:
    if header.get("NAXIS") != 2:
        dims = tuple(header.get(f"NAXIS{k}") for k in range(header.get("NAXIS", 0), 0, -1))
        raise InputError(f"{path}: expected 2-D science data, found shape {dims}")
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def _find_ext(hdul, name: str, ver: int) -> int | None:
    for i, h in enumerate(hdul):
        if _header_text(h.header, "EXTNAME") == name and h.header.get("EXTVER", 1) == ver and _has_data(h):
            return i
    return None


def read_chip(
    path: str | os.PathLike, chip: ChipInfo, *, ignore_bits: int = DEFAULT_IGNORE_BITS,
    rows: slice = slice(None), cols: slice = slice(None),
) -> tuple[np.ndarray, np.ndarray]:
    """Read (part of) a chip: ``(electrons float32, ignore bool)``. Opens the file read-only.

    Raises
    ------
    InputError
        The file is truncated or its data cannot be read.
    """
    try:
        return _read_chip(path, chip, ignore_bits, rows, cols, memmap=True)
    except _NeedsNoMemmap:
        # Scaled integers with BLANK cannot be memory-mapped by astropy; read them fully instead.
        return _read_chip(path, chip, ignore_bits, rows, cols, memmap=False)


class _NeedsNoMemmap(Exception):
    pass


def _read_chip(path, chip, ignore_bits, rows, cols, *, memmap: bool) -> tuple[np.ndarray, np.ndarray]:
    with _open(path, memmap=memmap) as hdul:
        try:
            data = hdul[chip.hdu].data
            if chip.plane is not None:
                data = data[chip.plane]
            if data is None or data.shape != chip.shape:
                raise InputError(f"{path}: {chip.name}: data missing or of the wrong shape")
            electrons = np.array(data[rows, cols], dtype=np.float32) * np.float32(chip.factor)
            ignore = np.zeros(electrons.shape, bool)
            if chip.dq_hdu is not None and ignore_bits:
                dq = hdul[chip.dq_hdu].data
                if dq is not None and dq.shape == chip.shape:
                    ignore = (np.asarray(dq[rows, cols]).astype(np.int64) & ignore_bits) != 0
        except (OSError, ValueError, TypeError, IndexError) as exc:
            if memmap and "memory-mapped" in str(exc):
                raise _NeedsNoMemmap from None
            raise InputError(f"{path}: {chip.name}: cannot read pixel data ({_first_line(exc)})") from None
    return electrons, ignore


@dataclass(frozen=True)
class LazyChip:
    """Array-like view of one chip for ``dask.array.from_array``: each block opens the file itself.

    Picklable (path and numbers only), so tasks read their own pixels on whichever worker runs them.
    """

    path: str
    chip: ChipInfo
    what: str = "electrons"  # "electrons" | "ignore"
    ignore_bits: int = DEFAULT_IGNORE_BITS

    @property
    def shape(self) -> tuple[int, int]:
        return self.chip.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.what == "electrons" else bool)

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        electrons, ignore = read_chip(self.path, self.chip, ignore_bits=self.ignore_bits, rows=rows, cols=cols)
        return electrons if self.what == "electrons" else ignore

    def to_dask(self, chunks="auto"):
        import dask.array as da

        return da.from_array(self, chunks=chunks, asarray=False, meta=np.empty((0, 0), self.dtype),
                             name=f"{self.what}-{self.chip.name}-{abs(hash(self)):x}")


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
) -> Path:
    """Write a cleaned copy of ``src`` to ``dst`` atomically (temporary name, fsync, rename).

    SCI data are replaced by the cleaned pixels converted back to the input's units (as float32),
    the DQ array of each chip is OR-ed with ``cr_bit`` where a cosmic ray was found, and a CRMASK
    extension is added for chips without DQ data (and for all chips with ``extra_mask``).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(dst)
    with _open(src, memmap=False) as hdul:  # the copy needs every byte anyway
        out = fits.HDUList([hdu.copy() for hdu in hdul])
    try:
        total = 0
        for result in results:
            chip = result.chip
            cleaned = (result.cleaned / np.float32(chip.factor)).astype(np.float32)
            hdu = out[chip.hdu]
            if chip.plane is None:
                hdu.data = cleaned
            else:
                cube = np.array(hdu.data, dtype=np.float32)
                cube[chip.plane] = cleaned
                hdu.data = cube
            total += int(result.mask.sum())
            if chip.dq_hdu is not None:
                dq = out[chip.dq_hdu]
                dq.data = np.asarray(dq.data) | np.where(result.mask, cr_bit, 0).astype(dq.data.dtype)
            if chip.dq_hdu is None or extra_mask:
                out.append(fits.ImageHDU(result.mask.astype(np.uint8), name="CRMASK", ver=_ver(chip)))
            if extra_probability and result.probability is not None:
                out.append(fits.ImageHDU(result.probability.astype(np.float32), name="CRPROB", ver=_ver(chip)))
        header = out[0].header
        for key, (value, comment) in provenance.fits_cards(cr_bit, total).items():
            header[key] = (value, comment)
        header.add_history(provenance.history(cr_bit, total))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # fixable header quirks of old files
            out.writeto(tmp, output_verify="silentfix", checksum=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def _ver(chip: ChipInfo) -> int:
    digits = "".join(ch for ch in chip.name if ch.isdigit())
    return int(digits) if digits else 1
