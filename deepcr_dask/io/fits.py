"""FITS input: what a file holds, and its chips in electrons with their ignore masks.

:func:`inspect_file` reads the headers only: the product type (:mod:`.products`), the science chips, how
each converts to electrons (and what was assumed when a file does not say), where its DQ and ERR arrays
are (a WFPC2 ``c0f``'s DQ is in its ``c1f``), its read noise and pointing (for grouping repeat exposures).
:func:`read_chip` and :class:`LazyChip` read pixels, whole or block by block, inside each task. Input files
are only ever opened read-only; :mod:`.writer` writes the cleaned copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
from astropy.io import fits

from ..errors import DeepCRDaskError, InputError
from ..models.choice import default_model
from . import remote
from .names import compression_of
from .products import Product, classify, primary_header

__all__ = [
    "DEFAULT_CR_BIT",
    "DEFAULT_IGNORE_BITS",
    "ChipInfo",
    "ChipResult",
    "ExposureInfo",
    "LazyChip",
    "SkipFile",
    "check_dq_bit",
    "inspect_file",
    "read_chip",
    "read_err",
]

# HST DQ flags whose pixels are ignored: Reed-Solomon (1), fill (2), bad detector pixel (4), masked (8),
# hot (16), bad column (128), full-well saturation (256), A-to-D saturation (2048).
DEFAULT_IGNORE_BITS = 1 | 2 | 4 | 8 | 16 | 128 | 256 | 2048
DEFAULT_CR_BIT = 8192  # AstroDrizzle resets 4096 by default; 8192 survives it

# (instrument, detector) -> model; other HST cameras use the generic model, other telescopes the ground one.


class SkipFile(DeepCRDaskError):
    """A valid file that should not be cleaned (e.g. WFC3/IR: cosmic rays already rejected up the ramp).

    ``kind`` is its product type (:data:`~deepcr_dask.io.products.PRODUCT_TYPES`), for the run's tally.
    """

    def __init__(self, message: str, kind: str = "other"):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # raised on workers, read on the driver
        return type(self), (str(self), self.kind)


@dataclass(frozen=True)
class ChipInfo:
    """Where one chip lives in its file and how to convert it to electrons."""

    name: str  # "SCI,1", "PRIMARY[2]", ...
    hdu: int  # HDU index
    plane: int | None  # index into a cube (WFPC2), else None
    shape: tuple[int, int]
    factor: float  # electrons = data * factor
    dq_hdu: int | None  # HDU index of the chip's DQ array, when it has data
    dq_path: str | None = None  # the file holding the DQ, when not this one (WFPC2: the c1f)
    dq_plane: int | None = None  # index into the DQ cube
    dq_dtype: str | None = None  # numpy dtype of the DQ array, from its header
    err_hdu: int | None = None  # HDU index of the chip's ERR array (same units as SCI)
    read_noise: float | None = None  # electrons, from the header
    wcs: tuple[float, ...] | None = None  # CRVAL1, CRVAL2, CRPIX1, CRPIX2, CD1_1, CD1_2, CD2_1, CD2_2
    exptime: float | None = None  # seconds, the chip's own (STIS imsets) or the file's


@dataclass(frozen=True)
class ExposureInfo:
    """What :func:`inspect_file` learned from the headers."""

    path: str
    instrument: str
    detector: str
    units: str
    model: str
    chips: tuple[ChipInfo, ...]
    notes: tuple[str, ...] = ()  # how the units were decided, and anything assumed
    product: Product | None = None
    exptime: float | None = None
    filter: str = ""
    asn_id: str = ""
    visit: str = ""  # HST: the rootname's program and visit (first 6 characters)
    repeats: int = 1  # exposures of one pointing held as imsets of this file (STIS CR-SPLIT, REPEAT-OBS)
    telescope: str = ""


@dataclass
class ChipResult:
    """Cleaning outputs of one chip, in electrons."""

    chip: ChipInfo
    mask: np.ndarray  # bool
    cleaned: np.ndarray  # float32 electrons
    probability: np.ndarray | None = None
    inpainted: bool = True  # False: flagged only (a suspect chip), the pixels left as they were
    suspect: tuple[str, ...] = ()  # the quality gates' reasons, when the chip is suspect


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _header_text(header, key: str) -> str:
    return str(header.get(key, "") or "").strip().upper()


def open_fits(path: str | os.PathLike, memmap: bool = True):
    """Open read-only; unreadable or non-FITS files become one-line InputErrors.

    A URL (``s3://...``) is read through astropy's fsspec support: headers and the sections asked for are
    fetched by range requests, not the whole file.
    """
    if remote.is_url(path):
        try:
            return fits.open(str(path), mode="readonly", use_fsspec=True, lazy_load_hdus=False)
        except (PermissionError, FileNotFoundError) as exc:
            raise remote.storage_error(str(path), exc) from None
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise InputError(f"{path}: not a readable FITS file ({_first_line(exc)})") from None
    try:
        return fits.open(remote.local_path(path), mode="readonly", memmap=memmap, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({_first_line(exc)})") from None


# Units the networks cannot take without a gain (they read electrons); per-second forms need EXPTIME too.
_COUNT_UNITS = {u + rate for u in ("ADU", "ADUS", "DN", "COUNTS", "COUNT", "CT", "CTS", "DATANUMBERS")
                for rate in ("", "/S")}


def _electrons_factor(path, primary, ext_header, gain: float | None) -> tuple[float, str, list[str]]:
    """Multiplier to electrons, the input units, and notes on how they were decided."""
    bunit = _header_text(ext_header, "BUNIT") or _header_text(primary, "BUNIT")
    per_second = bunit.replace(" ", "").endswith("/S")

    def exposure() -> float:
        exptime = primary.get("EXPTIME", ext_header.get("EXPTIME"))
        if not isinstance(exptime, (int, float)) or exptime <= 0:
            raise InputError(f"{path}: BUNIT is {bunit} but EXPTIME is missing; cannot convert to electrons")
        return float(exptime)

    if gain is not None:
        return float(gain) * (exposure() if per_second else 1.0), bunit or "ADU", [f"gain {gain} given"]
    if bunit.startswith("ELECTRON") or bunit.replace(" ", "") in ("E", "E-", "E/S", "E-/S"):
        return (exposure() if per_second else 1.0), bunit, []
    for key in ("ATODGAIN", "CCDGAIN", "GAIN", "EGAIN"):
        for header in (ext_header, primary):
            value = header.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return float(value) * (exposure() if per_second else 1.0), bunit or "DN", [f"{key}={value} e-/DN"]
    if bunit.replace(" ", "") in _COUNT_UNITS:
        raise InputError(f"{path}: BUNIT is {bunit} and no gain keyword (ATODGAIN, CCDGAIN, GAIN, EGAIN) says "
                         f"how many electrons that is: give the gain in e-/{bunit.split('/')[0]} (--gain)")
    return 1.0, bunit or "unknown", ["no BUNIT or gain keyword: data assumed to be in electrons" if not bunit
                                      else f"BUNIT {bunit} is not a unit of charge: data assumed to be in electrons"]


def inspect_file(path: str | os.PathLike, *, gain: float | None = None, model: str | None = None) -> ExposureInfo:
    """What a FITS file holds, from its headers (no pixel data read).

    Parameters
    ----------
    path : path-like
    gain : float, optional
        e-/DN to use instead of the header's units and gain keywords.
    model : str, optional
        Mask model to use instead of the choice by INSTRUME / DETECTOR.

    Returns
    -------
    ExposureInfo
        With its :class:`~deepcr_dask.io.products.Product`; files that are not images to clean (tables,
        DQ files) have no chips.

    Raises
    ------
    InputError
        Not FITS, truncated, or no 2-D science data in what should be an image.
    """
    path = str(path)
    with open_fits(path) as hdul:
        try:
            hdul.verify("silentfix+ignore")
            _check_complete(path, hdul)
            primary = primary_header(hdul)
            product = classify(path, hdul)
            instrument, detector = product.instrument, product.detector
            no_image = product.kind in ("table", "dq", "cube")
            chips, units, notes = ([], "", []) if no_image else _find_chips(path, hdul, gain)
            if product.dq_companion:
                chips = _with_companion_dq(path, product.dq_companion, chips)
            exptime = _seconds(primary.get("EXPTIME")) or (chips[0].exptime if chips else None)
            repeats = 1
            if instrument == "STIS" and len(chips) > 1:  # STIS keeps CR-SPLIT / REPEAT-OBS exposures as imsets
                repeats = len(chips) if max(_int(primary, "CRSPLIT"), _int(primary, "NRPTEXP")) > 1 else 1
        except InputError:
            raise  # already says what is wrong with the file
        except (OSError, ValueError, TypeError, IndexError) as exc:
            raise InputError(f"{path}: damaged FITS file ({_first_line(exc)})") from None
    rootname = _header_text(primary, "ROOTNAME")
    model = model or default_model(instrument, detector, _header_text(primary, "TELESCOP"))
    return ExposureInfo(path, instrument, detector, units, model,
                        tuple(chips), tuple(notes), product,
                        exptime, _filter(primary), _header_text(primary, "ASN_ID").replace("NONE", ""),
                        rootname[:6] if _header_text(primary, "TELESCOP") == "HST" else "", repeats,
                        _header_text(primary, "TELESCOP"))


def _seconds(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _int(header, key: str) -> int:
    value = header.get(key)
    return int(value) if isinstance(value, (int, float)) else 1


def _filter(primary) -> str:
    names = [_header_text(primary, k) for k in ("FILTER", "FILTER1", "FILTER2", "FILTNAM1", "FILTNAM2")]
    return "+".join(n for n in names if n and not n.startswith("CLEAR"))


def _check_complete(path: str, hdul) -> None:
    """A truncated file reads without error in astropy (it only warns); refuse it here."""
    if compression_of(path) in (".gz", ".bz2"):
        return  # the decompressor reports truncation itself
    last = hdul.fileinfo(len(hdul) - 1)
    expected = last["datLoc"] + last["datSpan"]
    actual = remote.stamp(path)[0]
    if actual < expected:
        raise InputError(f"{path}: truncated FITS file ({actual} of {expected} bytes)")


def _has_data(hdu) -> bool:
    return hdu.is_image and hdu.header.get("NAXIS", 0) >= 2


# Image extensions that hold something other than the sky: never cleaned as chips of their own.
_AUXILIARY = {"VAR", "VARIANCE", "IVAR", "ERR", "ERROR", "UNCERT", "DQ", "MASK", "BPM", "WEIGHT", "WHT", "WGT",
              "SKYFIT", "SKY", "CTX", "CON", "EXP", "EXPMAP", "FLAGS", "OBJMASK"}


def _find_chips(path, hdul, gain) -> tuple[list[ChipInfo], str, list[str]]:
    primary = primary_header(hdul)
    sci = [i for i, h in enumerate(hdul) if _header_text(h.header, "EXTNAME") == "SCI" and _has_data(h)]
    chips: list[ChipInfo] = []
    units, notes = "", []
    if sci:
        for index in sci:
            header = hdul[index].header
            shape = _shape(path, header)
            factor, units, notes = _electrons_factor(path, primary, header, gain)
            ver = header.get("EXTVER", 1)
            dq, err = _find_ext(hdul, "DQ", ver), _find_ext(hdul, "ERR", ver)
            chips.append(ChipInfo(f"SCI,{ver}", index, None, shape, factor, dq,
                                  dq_dtype=_dtype(hdul[dq].header) if dq is not None else None, err_hdu=err,
                                  read_noise=_read_noise(primary, header, factor), wcs=_wcs(header),
                                  exptime=_seconds(header.get("EXPTIME", primary.get("EXPTIME")))))
        return chips, units, notes
    candidates = [i for i, h in enumerate(hdul) if _has_data(h)]
    if not candidates:
        raise InputError(f"{path}: no 2-D science image found")
    science = [i for i in candidates if hdul[i].header.get("NAXIS") == 2
               and _header_text(hdul[i].header, "EXTNAME") not in _AUXILIARY]
    if len(science) > 1:
        # A mosaic's CCDs as image extensions without SCI names (DECam, Pan-STARRS .fz): each is a chip.
        made = [_plain_chip(path, primary, hdul, index, gain, f"HDU{index}") for index in science]
        return [chip for chip, _, _ in made], made[-1][1], made[-1][2]
    index = candidates[0]
    header = hdul[index].header
    if header["NAXIS"] == 2:
        chip, units, notes = _plain_chip(path, primary, hdul, index, gain, "PRIMARY" if index == 0 else f"HDU{index}")
        return [chip], units, notes
    factor, units, notes = _electrons_factor(path, primary, header, gain)
    noise, exptime = _read_noise(primary, header, factor), _seconds(primary.get("EXPTIME", header.get("EXPTIME")))
    if header["NAXIS"] == 3 and _header_text(primary, "INSTRUME") == "WFPC2":
        # WFPC2 c0f: the four chips as a cube (GEIS groups converted to FITS).
        planes = header["NAXIS3"]
        shape = (header["NAXIS2"], header["NAXIS1"])
        return [ChipInfo(f"CHIP{p + 1}", index, p, shape, factor, None, read_noise=noise, exptime=exptime)
                for p in range(planes)], units, notes
    raise InputError(f"{path}: expected a 2-D image (or a WFPC2 chip cube), found shape {_dims(header)}")


def _plain_chip(path, primary, hdul, index: int, gain, name: str) -> tuple[ChipInfo, str, list[str]]:
    """A 2-D image extension without SCI/DQ/ERR structure as a chip, with its units and unit notes."""
    header = hdul[index].header
    factor, units, notes = _electrons_factor(path, primary, header, gain)
    return ChipInfo(name, index, None, _shape(path, header), factor, None,
                    read_noise=_read_noise(primary, header, factor), wcs=_wcs(header),
                    exptime=_seconds(primary.get("EXPTIME", header.get("EXPTIME")))), units, notes


def _with_companion_dq(path: str, companion: str, chips: list[ChipInfo]) -> list[ChipInfo]:
    """Point a WFPC2 c0f's chips at the planes of its c1f (checked to match)."""
    with open_fits(companion) as dq_file:
        header = dq_file[0].header
        planes = header.get("NAXIS3", 1) if header.get("NAXIS") == 3 else 1
        shape = (header.get("NAXIS2"), header.get("NAXIS1"))
        dtype = _dtype(header)
    out = []
    for chip in chips:
        if chip.plane is None or chip.plane >= planes or shape != chip.shape:
            raise InputError(f"{path}: its DQ file {companion} does not match it (shape {shape}, {planes} planes)")
        out.append(replace(chip, dq_hdu=0, dq_path=companion, dq_plane=chip.plane, dq_dtype=dtype))
    return out


def _dtype(header) -> str:
    """The numpy dtype an image HDU's data reads as (BITPIX, with BZERO's unsigned convention)."""
    bitpix, bzero = header.get("BITPIX"), header.get("BZERO", 0)
    if bitpix == 8:
        return "uint8"
    if bitpix in (16, 32, 64):
        unsigned = bzero == 2 ** (bitpix - 1)
        return f"{'u' if unsigned else ''}int{bitpix}"
    return {-32: "float32", -64: "float64"}.get(bitpix, "float64")


def _read_noise(primary, header, factor: float) -> float | None:
    """Read noise in electrons: READNSE (STIS), the mean of READNSEA-D (ACS, WFC3), or RDNOISE / READNOIS."""
    values = [h.get(k) for h in (header, primary) for k in ("READNSEA", "READNSEB", "READNSEC", "READNSED")]
    values = [float(v) for v in values if isinstance(v, (int, float)) and v > 0]
    if values:
        return float(np.mean(values[:4]))
    for key in ("READNSE", "RDNOISE", "READNOIS", "RON"):
        for h in (header, primary):
            value = h.get(key)
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
    return None


def _wcs(header) -> tuple[float, ...] | None:
    """The linear part of the chip's celestial WCS, enough to tell how far two pointings lie apart."""
    try:
        crval = (float(header["CRVAL1"]), float(header["CRVAL2"]))
        crpix = (float(header["CRPIX1"]), float(header["CRPIX2"]))
        if "CD1_1" in header:
            cd = tuple(float(header.get(k, 0.0)) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"))
        else:
            cdelt = (float(header.get("CDELT1", 1.0)), float(header.get("CDELT2", 1.0)))
            pc = tuple(float(header.get(k, float(k in ("PC1_1", "PC2_2")))) for k in ("PC1_1", "PC1_2", "PC2_1",
                                                                                       "PC2_2"))
            cd = (pc[0] * cdelt[0], pc[1] * cdelt[0], pc[2] * cdelt[1], pc[3] * cdelt[1])
    except (KeyError, TypeError, ValueError):
        return None
    return (*crval, *crpix, *cd)


def check_dq_bit(info: ExposureInfo, bit: int) -> None:
    """Refuse, before any work, a cosmic-ray DQ bit that the file's DQ arrays cannot hold.

    Raises
    ------
    InputError
        Naming the file, the DQ dtype and the largest bit that fits.
    """
    for chip in info.chips:
        if chip.dq_dtype is None:
            continue
        dtype = np.dtype(chip.dq_dtype)
        if dtype.kind not in "iu":
            raise InputError(f"{info.path}: {chip.name}: DQ has a non-integer dtype {dtype}")
        largest = 1 << (dtype.itemsize * 8 - (1 if dtype.kind == "i" else 0) - 1)
        if bit > largest:
            raise InputError(f"{info.path}: {chip.name}: DQ bit {bit} does not fit its {dtype} DQ array "
                             f"(largest bit {largest}); choose --dq-bit {largest} or lower")


def _dims(header) -> tuple:
    """An image HDU's data shape from its header, numpy order (slowest axis first)."""
    return tuple(header.get(f"NAXIS{k}") for k in range(header.get("NAXIS", 0), 0, -1))


def _shape(path, header) -> tuple[int, int]:
    if header.get("NAXIS") != 2:
        raise InputError(f"{path}: expected 2-D science data, found shape {_dims(header)}")
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def chip_header(path: str | os.PathLike, chip: ChipInfo) -> fits.Header:
    """The chip's FITS header: its extension's, merged over the primary's for the keywords it lacks
    (TELESCOP, INSTRUME, EXPTIME... live in the primary of an FLT)."""
    with open_fits(path) as hdul:
        header = hdul[0].header.copy()
        for card in hdul[chip.hdu].header.cards if chip.hdu else ():
            if card.keyword not in ("", "COMMENT", "HISTORY"):
                header[card.keyword] = (card.value, card.comment)
    for key in ("XTENSION", "PCOUNT", "GCOUNT", "EXTEND", "SIMPLE"):
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


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
    with open_fits(path, memmap=memmap) as hdul:
        try:
            if remote.is_url(path):  # only the rows asked for travel: the HDU's section, not its data
                pixels = _section(hdul[chip.hdu], chip, rows, cols)
            else:
                data = hdul[chip.hdu].data
                if chip.plane is not None:
                    data = data[chip.plane]
                if data is None or data.shape != chip.shape:
                    raise InputError(f"{path}: {chip.name}: data missing or of the wrong shape")
                pixels = data[rows, cols]
            electrons = np.array(pixels, dtype=np.float32) * np.float32(chip.factor)
            ignore = np.zeros(electrons.shape, bool)
            if chip.dq_hdu is not None and ignore_bits:
                dq = _read_dq(hdul, chip, rows, cols, memmap, ranged=remote.is_url(path))
                if dq is not None:
                    ignore = (dq.astype(np.int64) & ignore_bits) != 0
        except (OSError, ValueError, TypeError, IndexError) as exc:
            if memmap and "memory-mapped" in str(exc):
                raise _NeedsNoMemmap from None
            raise InputError(f"{path}: {chip.name}: cannot read pixel data ({_first_line(exc)})") from None
    return electrons, ignore


def _section(hdu, chip: ChipInfo, rows: slice, cols: slice) -> np.ndarray:
    """Rows and columns of a chip read through the HDU's section (a URL: range requests)."""
    if _dims(hdu.header)[-2:] != chip.shape:
        raise InputError(f"{chip.name}: data missing or of the wrong shape")
    return hdu.section[(rows, cols) if chip.plane is None else (chip.plane, rows, cols)]


def _read_dq(hdul, chip: ChipInfo, rows, cols, memmap: bool, ranged: bool = False) -> np.ndarray | None:
    if chip.dq_path is None and ranged:
        hdu = hdul[chip.dq_hdu]
        return np.asarray(hdu.section[rows, cols]) if _dims(hdu.header) == chip.shape else None
    if chip.dq_path is None:
        dq = hdul[chip.dq_hdu].data
        return np.asarray(dq[rows, cols]) if dq is not None and dq.shape == chip.shape else None
    with open_fits(chip.dq_path, memmap=memmap) as dq_file:
        return np.asarray(dq_file[chip.dq_hdu].data[chip.dq_plane][rows, cols])


def read_err(path: str | os.PathLike, chip: ChipInfo) -> np.ndarray | None:
    """The chip's ERR array in electrons (float32), or None when it has none."""
    if chip.err_hdu is None:
        return None
    with open_fits(path) as hdul:
        err = hdul[chip.err_hdu].data
        if err is None or err.shape != chip.shape:
            return None
        return np.array(err, dtype=np.float32) * np.float32(chip.factor)


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
