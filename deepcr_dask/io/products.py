"""What a FITS file is, from its headers: a single calibrated image to clean, or a product to leave alone.

Cleaned (``kind == "image"``): ACS/WFC and ACS/HRC, WFC3/UVIS and STIS CCD imaging FLT/FLC files, WFPC2
``c0f``/``c0m`` files (their data quality from the matching ``c1f``/``c1m``), and single-image frames of
other telescopes. Left alone, each recorded as skipped with a one-line reason (not failed), by type:

==================  ==============================================================================
``raw``             uncalibrated (``_raw``, ``_d0f``; without a known suffix, HST ``BIASCORR``/``FLATCORR``
                    still ``PERFORM``):
                    the bias is still in the pixels
``combined``        drizzled or cosmic-ray rejected products (``_drz``, ``_drc``, ``_crj``, ``_crc``,
                    ``_sfl``; without a pipeline name: ``NCOMBINE`` > 1 or drizzle keywords in the
                    image headers, or, with no ``NCOMBINE`` at all, HST ``CRCORR = COMPLETE``)
``spectrum``        HST spectroscopy (``OBSTYPE = SPECTROSCOPIC``) and extracted spectra
``table``           association and support files (``_asn``, ``_spt``, ``_jif``, ``_trl``, ...): no image
``up-the-ramp``     WFC3/IR and NICMOS: cosmic rays are already rejected up the ramp
``photon-counting`` STIS MAMA, ACS/SBC, COS: no charge spreads, nothing for a CCD model to find
``dq``              a WFPC2 ``c1f``/``c1m`` data-quality file: used as its ``c0f``'s DQ, never cleaned
``cube``            a valid FITS file whose images are all cubes (IFU, up-the-ramp reads, time series);
                    a WFPC2 ``c0f``/``c0m`` chip cube is an image (its planes are the chips)
==================  ==============================================================================

Evidence is taken best first:

1. the instrument, detector, observation type and ``FILETYPE`` (DQ files, tables, IR, MAMA, spectra);
2. the pipeline's own name: the suffix of ``FILENAME`` (kept when a file is renamed; a GEIS name as WFPC2's
   conversions keep it, ``u40x010hm_cvt.c0h``, counts as ``c0f``), then the suffix of the file's name;
3. the image headers: ``NCOMBINE`` > 1 or drizzle keywords (``D001DATA``, ``NDRIZIM``) say combined;
4. only then the primary header's switches: ``BIASCORR``/``FLATCORR = PERFORM`` say raw, and ``CRCORR =
   COMPLETE`` says combined where no header carries ``NCOMBINE``. ``DRIZCORR = COMPLETE`` alone never does:
   it says the *association* was drizzled, which every single FLT of it also says. Any type but ``dq`` can be
cleaned anyway (``process_archive(clean_anyway=("raw",))``, ``--clean-anyway raw``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from astropy.io import fits

from . import remote
from .names import split_name

__all__ = ["PRODUCT_TYPES", "Product", "classify", "primary_header", "wfpc2_dq_companion"]

PRODUCT_TYPES = ("raw", "combined", "spectrum", "table", "up-the-ramp", "photon-counting", "dq", "cube")

_SUFFIX_TYPES = {
    "raw": "raw", "d0f": "raw", "d0m": "raw", "q0f": "raw", "q0m": "raw",
    "drz": "combined", "drc": "combined", "crj": "combined", "crc": "combined", "sfl": "combined",
    "c2f": "combined", "c3f": "combined", "c3m": "combined",
    "x1d": "spectrum", "x2d": "spectrum", "sx1": "spectrum", "sx2": "spectrum", "x1f": "spectrum",
    "asn": "table", "spt": "table", "shf": "table", "jif": "table", "jit": "table", "trl": "table", "log": "table",
    "wsp": "table", "cmh": "table", "cmi": "table", "cmj": "table",
    "c1f": "dq", "c1m": "dq",
}
_CALIBRATED = {"flt", "flc", "c0f", "c0m", "fl", "cal"}  # single calibrated exposures
_PHOTON_COUNTING = {("STIS", "FUV-MAMA"), ("STIS", "NUV-MAMA"), ("ACS", "SBC")}
_PHOTON_COUNTING_INSTRUMENTS = {"COS", "FOC", "GHRS", "HRS", "FOS", "HSP"}
_REASONS = {
    "raw": "uncalibrated: the bias is still in the pixels; clean its calibrated product (flt/flc/c0f) instead",
    "combined": "already combined or cosmic-ray rejected",
    "spectrum": "a spectrum, not an image",
    "table": "a table or support file: no image to clean",
    "up-the-ramp": "up-the-ramp data: cosmic rays are already rejected",
    "photon-counting": "a photon-counting detector: no cosmic-ray charge to find",
    "dq": "a WFPC2 data-quality file: used as its science file's DQ, never cleaned itself",
    "cube": "a data cube (3-D or more): deepcr-dask cleans 2-D images",
}


@dataclass(frozen=True)
class Product:
    """What :func:`classify` decided for one file."""

    path: str
    kind: str  # "image", or one of PRODUCT_TYPES (the first that applies)
    reason: str  # why, in a few words
    also: tuple[str, ...] = ()  # further types that apply (a raw spectrum is both)
    instrument: str = ""
    detector: str = ""
    dq_companion: str | None = None  # the WFPC2 c1f/c1m holding this c0f/c0m's data quality

    @property
    def clean(self) -> bool:
        return self.kind == "image"

    @property
    def kinds(self) -> tuple[str, ...]:
        return () if self.clean else (self.kind, *self.also)

    def cleanable(self, anyway=()) -> bool:
        """Clean it: an image, or every type it is was asked for anyway (never a DQ file)."""
        return self.clean or ("dq" not in self.kinds and set(self.kinds) <= set(anyway))

    def skip_message(self) -> str:
        return f"{self.path}: {self.instrument + ('/' + self.detector if self.detector else '') or 'file'} " \
               f"{self.kind}: {self.reason}"


def suffix_of(path: str | os.PathLike) -> str:
    """``j8xi01abq_flc.fits`` -> ``flc``; ``u40x010hm_c0f.fits.fz`` -> ``c0f``; ``a8280271.fits`` -> ``''``.

    A GEIS name, as WFPC2's FITS conversions keep in ``FILENAME`` (``u40x010hm_cvt.c0h``), gives the suffix of
    its FITS form (``c0f``).
    """
    name = Path(str(path)).name.lower()
    geis = re.fullmatch(r"[^.]+\.([a-z][0-9])h", name)
    if geis:
        return f"{geis.group(1)}f"
    stem, extension, _ = split_name(name)
    if not extension:
        return ""
    return stem.rpartition("_")[2] if "_" in stem else ""


def wfpc2_dq_companion(path: str | os.PathLike) -> str | None:
    """The ``c1f``/``c1m`` beside a WFPC2 ``c0f``/``c0m`` (same folder, same case), if it exists.

    ``path`` may be a URL (``s3://...``): the companion is looked for beside it in the same store.
    """
    name = str(path).rpartition("/")[2] if remote.is_url(path) else Path(path).name
    for science, quality in (("c0f", "c1f"), ("c0m", "c1m"), ("C0F", "C1F"), ("C0M", "C1M")):
        marker = f"_{science}."
        if marker in name:
            other = name.replace(marker, f"_{quality}.")
            candidate = str(path)[: -len(name)] + other if remote.is_url(path) else str(Path(path).with_name(other))
            if remote.exists(candidate):
                return candidate
    return None


_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "COMMENT", "HISTORY", "", "CHECKSUM", "DATASUM"}


def primary_header(hdul):
    """The header that describes the observation: the primary's, or, for a tile-compressed single image whose
    primary is empty (fpack moves a primary image and its keywords into extension 1), the compressed image's."""
    primary = hdul[0].header
    if len(hdul) > 1 and isinstance(hdul[1], fits.CompImageHDU) and hdul[0].header.get("NAXIS", 0) == 0 \
            and all(key in _STRUCTURAL for key in primary):
        return hdul[1].header
    return primary


def _text(header, key: str) -> str:
    return str(header.get(key, "") or "").strip().upper()


def classify(path: str | os.PathLike, hdul) -> Product:
    """Decide what an open FITS file is (headers only; no pixel data is read).

    Parameters
    ----------
    path : path-like
    hdul : astropy.io.fits.HDUList
    """
    path = str(path)
    primary = primary_header(hdul)
    telescope, instrument = _text(primary, "TELESCOP"), _text(primary, "INSTRUME")
    detector = _text(primary, "DETECTOR")
    if isinstance(primary.get("DETECTOR"), int):  # WFPC2 numbers its chips
        detector = ""
    suffix = suffix_of(path)
    hst = telescope == "HST"

    def product(kind: str, reason: str | None = None) -> Product:
        companion = wfpc2_dq_companion(path) if instrument == "WFPC2" and kind == "image" else None
        return Product(path, kind, reason or _REASONS.get(kind, "a single calibrated image"), instrument=instrument,
                       detector=detector, dq_companion=companion)

    filetype = _text(primary, "FILETYPE")
    if filetype in ("SDQ", "DQ") or _SUFFIX_TYPES.get(suffix) == "dq":
        return product("dq")
    if filetype in ("ASN_TABLE", "SPT", "SUP") or not any(h.is_image and h.header.get("NAXIS", 0) >= 2 for h in hdul):
        return product("table")
    images = [h.header for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2]
    if instrument != "WFPC2" and all(any(h.get(f"NAXIS{i}", 1) > 1 for i in range(3, h["NAXIS"] + 1))
                                     for h in images):
        shape = tuple(images[0].get(f"NAXIS{i}") for i in range(images[0]["NAXIS"], 0, -1))
        return product("cube", f"{_REASONS['cube']} (shape {shape})")
    if (instrument, detector) == ("WFC3", "IR") or instrument == "NICMOS":
        return product("up-the-ramp", f"{instrument}/{detector or '?'} is up-the-ramp data: cosmic rays are "
                                      "already rejected")
    if (instrument, detector) in _PHOTON_COUNTING or (hst and instrument in _PHOTON_COUNTING_INSTRUMENTS):
        return product("photon-counting")
    if hst and _text(primary, "OBSTYPE") == "SPECTROSCOPIC":
        switches = (_text(primary, "BIASCORR"), _text(primary, "FLATCORR"))
        raw = _SUFFIX_TYPES.get(suffix) == "raw" or "PERFORM" in switches
        return replace(product("spectrum"), also=("raw",) if raw else ())
    # The pipeline's own name first: FILENAME keeps it when a file is renamed; then the file's name.
    for source, named in (("FILENAME", suffix_of(_text(primary, "FILENAME"))), ("its name", suffix)):
        if named in _SUFFIX_TYPES:
            kind = _SUFFIX_TYPES[named]
            return product(kind, f"{_REASONS[kind]} (a _{named} file by {source})")
        if named in _CALIBRATED:
            return product("image") if not _raw_switches(primary, hst) else \
                product("raw", f"{_REASONS['raw']} (BIASCORR/FLATCORR = PERFORM)")
    # No pipeline name: the image extension's record of what the pixels are.
    images = [h.header for h in hdul[:3] if h.is_image]
    ncombine = [n for n in (h.get("NCOMBINE") for h in images) if isinstance(n, (int, float))]
    if ncombine and max(ncombine) > 1:
        return product("combined", f"a combination of {int(max(ncombine))} exposures (NCOMBINE)")
    if any(key in h for h in images for key in ("D001DATA", "NDRIZIM")):
        return product("combined", "a drizzled image (its drizzle keywords say so)")
    if _raw_switches(primary, hst):
        return product("raw", f"{_REASONS['raw']} (BIASCORR/FLATCORR = PERFORM)")
    # Only without NCOMBINE do the processing switches speak, and CRCORR alone: DRIZCORR = COMPLETE on a
    # primary header says the association was drizzled, which every single exposure of it also says.
    if not ncombine and hst and _text(primary, "CRCORR") == "COMPLETE":
        return product("combined", "cosmic-ray rejected (CRCORR = COMPLETE; no NCOMBINE or pipeline name)")
    return product("image")


def _raw_switches(primary, hst: bool) -> bool:
    return hst and "PERFORM" in (_text(primary, "BIASCORR"), _text(primary, "FLATCORR"))
