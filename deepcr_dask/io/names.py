"""FITS file names as archives keep them: ``.fits``, ``.fit`` or ``.fts``, each plain or compressed.

Whole-file compression (``.gz``, ``.bz2``) is undone by astropy on reading; ``.fz`` is tile compression
(fpack: each image HDU a ``CompImageHDU``), the form DECam, Pan-STARRS, LSST and many ground archives ship.
"""

from __future__ import annotations

import os

__all__ = ["COMPRESSIONS", "FITS_EXTENSIONS", "FITS_SUFFIXES", "compression_of", "is_fits_name", "split_name"]

FITS_EXTENSIONS = (".fits", ".fit", ".fts")
COMPRESSIONS = ("", ".gz", ".bz2", ".fz")
# Longest first, so "x.fits.gz" is not read as "x.fits" + ".gz" by a shorter match elsewhere.
FITS_SUFFIXES = tuple(ext + comp for comp in reversed(COMPRESSIONS) for ext in FITS_EXTENSIONS)


def split_name(path: str | os.PathLike) -> tuple[str, str, str]:
    """``"j8xi01abq_flc.fits.fz"`` -> ``("j8xi01abq_flc", ".fits", ".fz")``; not a FITS name: ``(name, "", "")``."""
    name = os.fspath(path).rpartition("/")[2]  # a local path or a URL alike
    lower = name.lower()
    for suffix in FITS_SUFFIXES:
        if lower.endswith(suffix):
            compression = next(c for c in (*COMPRESSIONS[1:], "") if suffix.endswith(c))
            extension = suffix[: len(suffix) - len(compression)]
            return name[: -len(suffix)], extension, compression
    return name, "", ""


def is_fits_name(path: str | os.PathLike) -> bool:
    """Whether a file's name says FITS (any of :data:`FITS_SUFFIXES`, any case)."""
    return bool(split_name(path)[1])


def compression_of(path: str | os.PathLike) -> str:
    """``""``, ``".gz"``, ``".bz2"`` or ``".fz"``."""
    return split_name(path)[2]
