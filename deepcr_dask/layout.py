"""Where an archive run reads and writes: input discovery, and outputs that mirror the input tree.

Inputs are files, folders (searched recursively) and glob patterns. Outputs mirror each input's path
relative to the inputs' common root, under the output folder (``visit1/j8xi01abq_flc.fits`` ->
``OUT/visit1/j8xi01abq_flc_crclean.fits``) and in the Zarr store (group ``visit1/j8xi01abq_flc/SCI_1``), so
files of the same name in two visits never collide. What the run writes (``*_crclean.fits``, the manifest,
the Zarr store, temporary files) is never rediscovered as input, so the output folder may equal, lie
inside or contain the input folder.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .pipeline import exposure_name

__all__ = ["FITS_SUFFIXES", "OUTPUT_SUFFIX", "Layout", "discover"]

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
OUTPUT_SUFFIX = "_crclean.fits"
MANIFEST_NAME = "manifest.sqlite"


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(Path(relative).name, p) for p in patterns)


def discover(inputs: Iterable[str | os.PathLike], *, zarr_path: str | os.PathLike | None = None,
             include: Sequence[str] = (),
             exclude: Sequence[str] = ()) -> tuple[list[Path], Path]:
    """FITS files named by ``inputs``, and their common root.

    Parameters
    ----------
    inputs : files, folders or glob patterns
    zarr_path : path, optional
        The run's Zarr store, left out like the cleaned copies (``*_crclean.fits``) and the manifest.
    include, exclude : sequences of str
        Glob patterns matched against each file's path relative to the root (and against its name): a
        file is kept when it matches some ``include`` (all files when none is given) and no ``exclude``.

    Raises
    ------
    InputError
        An input that does not exist.
    """
    found: set[Path] = set()
    roots: list[Path] = []
    for item in inputs:
        item = str(item)
        matches = [Path(m) for m in glob.glob(item, recursive=True)] if any(c in item for c in "*?[") else [Path(item)]
        if not matches:
            raise InputError(f"{item}: no file matches")
        for match in matches:
            if match.is_dir():
                roots.append(match.resolve())
                found.update(p for p in match.rglob("*") if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES))
            elif match.is_file():
                roots.append(match.resolve().parent)
                found.add(match)
            else:
                raise InputError(f"{item}: no such file or folder")
    store = Path(zarr_path).resolve() if zarr_path else None
    files = []
    for path in sorted(p.resolve() for p in found):
        name = path.name
        if name.startswith(".") or name.endswith(OUTPUT_SUFFIX) or name == MANIFEST_NAME:
            continue  # hidden, temporary, or written by a run
        if store is not None and path.is_relative_to(store):
            continue
        files.append(path)
    root = Path(os.path.commonpath([str(r) for r in roots])) if roots else Path.cwd()
    if include:
        files = [f for f in files if _matches(_relative(f, root), include)]
    if exclude:
        files = [f for f in files if not _matches(_relative(f, root), exclude)]
    return files, root


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


@dataclass(frozen=True)
class Layout:
    """Where the outputs of each input go."""

    root: Path  # the inputs' common root
    output_dir: Path

    def relative(self, path: str | os.PathLike) -> Path:
        return Path(_relative(Path(path), self.root))

    def fits_output(self, path: str | os.PathLike) -> Path:
        """``OUT/<relative folder>/<name>_crclean.fits``."""
        relative = self.relative(path)
        return self.output_dir / relative.parent / f"{exposure_name(relative)}{OUTPUT_SUFFIX}"

    def zarr_name(self, path: str | os.PathLike) -> str:
        """The file's group in the Zarr store: its relative folder and name (``visit1/j8xi01abq_flc``)."""
        relative = self.relative(path)
        parent = relative.parent.as_posix()
        return exposure_name(relative) if parent in ("", ".") else f"{parent}/{exposure_name(relative)}"
