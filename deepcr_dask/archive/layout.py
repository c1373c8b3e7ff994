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
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from ..io import remote
from ..io.names import FITS_SUFFIXES, compression_of, is_fits_name, split_name
from .manifest import MANIFEST_NAME
from .pipeline import exposure_name

__all__ = ["FITS_SUFFIXES", "OUTPUT_SUFFIX", "Discovery", "Layout", "discover", "find_inputs"]

OUTPUT_STEM = "_crclean"
OUTPUT_SUFFIX = OUTPUT_STEM + ".fits"
REPORT_NAME = "report.html"  # the QA page beside the manifest


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(Path(relative).name, p) for p in patterns)


@dataclass
class Discovery:
    """What :func:`find_inputs` found: the FITS files to look at, their common root, and every other file."""

    files: list
    root: Path | str
    not_fits: list = field(default_factory=list)  # files under an input folder whose names do not say FITS


def discover(inputs: Iterable[str | os.PathLike], *, zarr_path: str | os.PathLike | None = None,
             include: Sequence[str] = (),
             exclude: Sequence[str] = ()) -> tuple[list[Path], Path]:
    """FITS files named by ``inputs``, and their common root (:func:`find_inputs` without the other files)."""
    found = find_inputs(inputs, zarr_path=zarr_path, include=include, exclude=exclude)
    return found.files, found.root


def find_inputs(inputs: Iterable[str | os.PathLike], *, zarr_path: str | os.PathLike | None = None,
                include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Discovery:
    """Every file named by ``inputs``: the FITS files (by name, :data:`~deepcr_dask.io.names.FITS_SUFFIXES`),
    their common root, and the files under the input folders that are not FITS by name.

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
    inputs = [str(item) for item in inputs]
    if any(remote.is_url(item) for item in inputs):
        return _discover_remote(inputs, zarr_path, include, exclude)
    found: set[Path] = set()
    roots: list[Path] = []
    for item in map(remote.local_path, inputs):
        matches = [Path(m) for m in glob.glob(item, recursive=True)] if any(c in item for c in "*?[") else [Path(item)]
        if not matches:
            raise InputError(f"{item}: no file matches")
        for match in matches:
            if match.is_dir():
                roots.append(match.resolve())
                found.update(p for p in match.rglob("*") if p.is_file())
            elif match.is_file():
                roots.append(match.resolve().parent)
                found.add(match)
            else:
                raise InputError(f"{item}: no such file or folder")
    store = Path(zarr_path).resolve() if zarr_path else None
    paths = [p for p in sorted(p.resolve() for p in found)
             if not _written_by_run(p.name) and not (store is not None and p.is_relative_to(store))]
    root = Path(os.path.commonpath([str(r) for r in roots])) if roots else Path.cwd()
    return _select(paths, root, include, exclude)


def _select(paths: list, root, include: Sequence[str], exclude: Sequence[str]) -> Discovery:
    if include:
        paths = [f for f in paths if _matches(_relative(f, root), include)]
    if exclude:
        paths = [f for f in paths if not _matches(_relative(f, root), exclude)]
    fits_named = [is_fits_name(f) for f in paths]
    return Discovery([f for f, named in zip(paths, fits_named) if named], root,
                     [f for f, named in zip(paths, fits_named) if not named])


def _discover_remote(inputs: list[str], zarr_path, include: Sequence[str],
                     exclude: Sequence[str]) -> Discovery:
    """:func:`find_inputs` for URLs: every input in one store, files as URLs, the root as a URL."""
    if not all(remote.is_url(item) for item in inputs):
        raise InputError(f"{', '.join(inputs)}: inputs must all be local or all be URLs of one store")
    found, roots = set(), []
    for item in inputs:
        files, root = remote.find_files(item, ("",))  # every file: the others are counted, not cleaned
        found.update(files)
        roots.append(root)
    protocols = {r.partition("://")[0] for r in roots}
    if len(protocols) > 1:
        raise InputError(f"{', '.join(inputs)}: inputs must all be in one store")
    root = f"{protocols.pop()}://" + posixpath.commonpath([r.partition("://")[2] for r in roots])
    store = str(zarr_path).rstrip("/") + "/" if zarr_path else None
    files = [f for f in sorted(found) if not _written_by_run(f.rpartition("/")[2])
             and not (store and f.startswith(store))]
    return _select(files, root, include, exclude)


def _written_by_run(name: str) -> bool:
    """Hidden and temporary files, cleaned copies (any compression), the manifest and its journal, the report."""
    return (name.startswith(".") or split_name(name)[0].endswith(OUTPUT_STEM)
            or name.startswith(MANIFEST_NAME) or name == REPORT_NAME)


def _relative(path, root) -> str:
    if remote.is_url(path):
        relative = remote.relative_to(str(path), str(root))
        return relative if relative is not None else str(path).rpartition("/")[2]
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


@dataclass(frozen=True)
class Layout:
    """Where the outputs of each input go."""

    root: Path | str  # the inputs' common root (a URL for inputs in an object store)
    output_dir: Path | str  # a local folder or a URL
    compress: bool = False  # cleaned copies keep the input's compression (.gz, .bz2, .fz)

    def relative(self, path: str | os.PathLike) -> PurePosixPath:
        return PurePosixPath(_relative(path if remote.is_url(path) else Path(path), self.root))

    def fits_output(self, path: str | os.PathLike) -> Path | str:
        """``OUT/<relative folder>/<name>_crclean.fits`` (a URL when the output folder is one); with
        ``compress``, the input's compression is kept (``x.fits.fz`` -> ``x_crclean.fits.fz``)."""
        relative = self.relative(path)
        name = f"{exposure_name(relative)}{OUTPUT_SUFFIX}{compression_of(relative) if self.compress else ''}"
        if remote.is_url(self.output_dir):
            return remote.join(str(self.output_dir), relative.parent.as_posix(), name)
        return Path(self.output_dir) / relative.parent / name

    def zarr_name(self, path: str | os.PathLike) -> str:
        """The file's group in the Zarr store: its relative folder and name (``visit1/j8xi01abq_flc``)."""
        relative = self.relative(path)
        parent = relative.parent.as_posix()
        return exposure_name(relative) if parent in ("", ".") else f"{parent}/{exposure_name(relative)}"
