"""The one way a file is cleaned: :func:`clean_file`, called by the CLI's ``clean``, by each archive task
and by the notebook.

A file's chips are read in electrons with their ignore masks (:mod:`deepcr_dask.io.fits`); a chip up to
``CleanOptions.dask_chip_pixels`` is cleaned in one piece by the process's resident Cleaner, a larger one as
a dask array (:class:`~deepcr_dask.io.fits.LazyChip` through :func:`deepcr_dask.engine.clean_dask`), on the
cluster when called from a worker task and on local threads otherwise; both give the same result. The
provenance is built once (:class:`~deepcr_dask.provenance.Provenance`) and written to the cleaned FITS copy
and the Zarr groups.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cleaner import get_cleaner
from .errors import InputError
from .io import zarr as zarr_io
from .io.fits import (
    DEFAULT_CR_BIT,
    DEFAULT_IGNORE_BITS,
    ChipInfo,
    ChipResult,
    ExposureInfo,
    LazyChip,
    inspect_file,
    read_chip,
    write_cleaned,
)
from .provenance import Provenance
from .zoo import get_spec

__all__ = ["CleanOptions", "FileResult", "clean_file", "exposure_name"]

DASK_CHIP_PIXELS = 64 * 1024 * 1024  # larger chips go through clean_dask (no HST chip is this large)
DASK_CHUNK = 2048


@dataclass(frozen=True)
class CleanOptions:
    """How a file is cleaned (shipped to the workers with each archive task)."""

    model: str | None = None  # None: chosen per file from INSTRUME / DETECTOR
    inpaint: str | None = None
    threshold: float | None = None  # None: the model's default
    dq_bit: int = DEFAULT_CR_BIT
    ignore_bits: int = DEFAULT_IGNORE_BITS
    gain: float | None = None
    write_fits: bool = True
    crmask_extension: bool = False
    probability: bool = False  # CRPROB extension and Zarr array
    device: str = "auto"
    kernels: str = "reference"  # part of the key: the two kernel sets round differently
    dask_chip_pixels: int = DASK_CHIP_PIXELS  # chips larger than this are cleaned as dask arrays
    dask_chunk: int = DASK_CHUNK

    def key(self) -> str:
        """What must match for a previous result to count as done (not where or how it was computed)."""
        ignored = ("device", "dask_chip_pixels", "dask_chunk")
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ignored}, sort_keys=True)


@dataclass
class FileResult:
    """What :func:`clean_file` did to one file."""

    path: str
    info: ExposureInfo
    chips: list[ChipResult]
    provenance: Provenance
    fits_output: str | None = None
    zarr_groups: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def rows(self, base: dict) -> list[dict]:
        """One manifest row per chip, extending ``base`` (path, size, mtime, options)."""
        rows = []
        for result in self.chips:
            n_cr = int(result.mask.sum())
            rows.append({**base, "chip": result.chip.name, "status": "done", "seconds": self.seconds / len(self.chips),
                         "cr_fraction": n_cr / result.mask.size, "cr_pixels": n_cr, "pixels": int(result.mask.size),
                         "model": self.provenance.model, "weight_hash": self.provenance.weight_hash,
                         "threshold": self.provenance.threshold, "error": None, "fits_output": self.fits_output,
                         "zarr_group": self.zarr_groups.get(result.chip.name)})
        return rows


def exposure_name(path: str | os.PathLike) -> str:
    """A file's name without its FITS suffix (``j8xi01abq_flc``)."""
    name = Path(path).name
    for suffix in (".fits.gz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def clean_file(
    path: str | os.PathLike,
    options: CleanOptions = CleanOptions(),
    *,
    output: str | os.PathLike | None = None,
    zarr_path: str | os.PathLike | None = None,
) -> FileResult:
    """Clean every chip of one FITS file and write the results.

    Parameters
    ----------
    path : path-like
        The input file; opened read-only, never modified.
    options : CleanOptions
    output : path-like, optional
        The cleaned FITS copy to write (atomically); none when ``options.write_fits`` is False.
    zarr_path : path-like, optional
        A Zarr store to write each chip's group into.

    Returns
    -------
    FileResult

    Raises
    ------
    InputError
        An unreadable file, a chip without finite pixels.
    SkipFile
        A valid file that should not be cleaned (e.g. WFC3/IR).
    """
    start = time.perf_counter()
    path = str(path)
    info = inspect_file(path, gain=options.gain, model=options.model)
    threshold = get_spec(info.model, "mask").threshold if options.threshold is None else options.threshold
    cleaner = get_cleaner(info.model, options.inpaint, options.device, kernels=options.kernels)
    provenance = Provenance.of(cleaner, info.model, threshold, options.inpaint)
    chips = [_clean_chip(path, chip, cleaner, info.model, threshold, options) for chip in info.chips]
    result = FileResult(path, info, chips, provenance)
    if zarr_path:
        for chip in chips:
            arrays = {"mask": chip.mask.astype(np.uint8), "cleaned": chip.cleaned}
            if options.probability:
                arrays["probability"] = chip.probability
            attrs = {**provenance.as_dict(), "source": path, "chip": chip.chip.name, "units": "electrons",
                     "input_units": info.units, "electrons_per_input_unit": chip.chip.factor,
                     "unit_notes": list(info.notes), "instrument": info.instrument, "detector": info.detector,
                     "dq_bit": options.dq_bit}
            result.zarr_groups[chip.chip.name] = zarr_io.write_chip_group(zarr_path, exposure_name(path),
                                                                          chip.chip.name, arrays, attrs)
    if options.write_fits and output is not None:
        result.fits_output = str(write_cleaned(path, output, chips, cr_bit=options.dq_bit, provenance=provenance,
                                               extra_mask=options.crmask_extension,
                                               extra_probability=options.probability))
    result.seconds = time.perf_counter() - start
    return result


def _clean_chip(path: str, chip: ChipInfo, cleaner, model: str, threshold: float, options: CleanOptions) -> ChipResult:
    if chip.shape[0] * chip.shape[1] > options.dask_chip_pixels:
        out = _clean_large_chip(path, chip, model, threshold, options)
    else:
        electrons, ignore = read_chip(path, chip, ignore_bits=options.ignore_bits)
        if not np.isfinite(electrons).any():
            raise InputError(f"{path}: {chip.name}: no finite pixels (all NaN or inf)")
        out = cleaner.run(electrons, threshold=threshold, ignore=ignore)
    return ChipResult(chip, out["mask"], out["cleaned"], out["probability"])


def _clean_large_chip(path: str, chip: ChipInfo, model: str, threshold: float, options: CleanOptions) -> dict:
    """A chip as a dask array read block by block from the file, cleaned by ``clean_dask``."""
    import dask

    from .engine import clean_dask

    chunks = (options.dask_chunk, options.dask_chunk)
    electrons = LazyChip(path, chip, "electrons", options.ignore_bits).to_dask(chunks)
    ignore = LazyChip(path, chip, "ignore", options.ignore_bits).to_dask(chunks)
    lazy = clean_dask(electrons, ignore=ignore, mask=model, inpaint=options.inpaint, threshold=threshold,
                      return_probability=True, device=options.device, kernels=options.kernels)
    try:
        from distributed import worker_client

        with worker_client() as client:  # from a worker task: the blocks run on the whole cluster
            mask, cleaned, probability = client.compute(list(lazy), sync=True)
    except ValueError:  # not on a worker: this process's threads
        mask, cleaned, probability = dask.compute(*lazy, scheduler="threads")
    if not np.isfinite(cleaned).any():
        raise InputError(f"{path}: {chip.name}: no finite pixels (all NaN or inf)")
    return {"mask": mask, "cleaned": cleaned, "probability": probability}
