"""The one way files are cleaned: :func:`clean_file` for one exposure, :func:`clean_group` for repeat exposures
of one pointing; called by the CLI's ``clean``, by each archive task and by the notebook.

A file's product type decides whether it is cleaned at all (:mod:`deepcr_dask.io.products`); its chips are
read in electrons with their ignore masks (:mod:`deepcr_dask.io.fits`); a chip up to
``CleanOptions.dask_chip_pixels`` is cleaned in one piece by the process's resident Cleaner, a larger one as
a dask array (:class:`~deepcr_dask.io.fits.LazyChip` through :func:`deepcr_dask.distributed.engine.clean_dask`), on the
cluster when called from a worker task and on local threads otherwise; both give the same result. Repeat
exposures fuse their evidence with the network's probability (:mod:`deepcr_dask.archive.groups`). Each chip then
passes the quality gates (:mod:`deepcr_dask.archive.gates`): a suspect chip is flagged but left as it was, unless
``inpaint_suspect``. The provenance is built once (:class:`~deepcr_dask.models.provenance.Provenance`) and written
to the cleaned FITS copy and the Zarr groups.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..inference.cleaner import get_cleaner
from ..io import zarr as zarr_io
from ..io.fits import (
    DEFAULT_CR_BIT,
    DEFAULT_IGNORE_BITS,
    ChipInfo,
    ChipResult,
    ExposureInfo,
    LazyChip,
    SkipFile,
    check_dq_bit,
    chip_header,
    inspect_file,
    read_chip,
    read_err,
)
from ..io.names import split_name
from ..io.writer import write_cleaned
from ..models.choice import default_inpaint
from ..models.provenance import Provenance
from ..models.thresholds import resolve_threshold
from ..models.zoo import get_spec
from .gates import Gate, check_chip
from .groups import ALIGNED_PX, Group, fuse

__all__ = ["CleanOptions", "FileResult", "ReadFile", "clean_file", "clean_group", "clean_read", "exposure_name",
           "open_for_cleaning", "read_file", "write_result"]

DASK_CHIP_PIXELS = 64 * 1024 * 1024  # larger chips go through clean_dask (no HST chip is this large)
DASK_CHUNK = 2048
AUTO = "auto"  # CleanOptions.inpaint: the camera's default inpainting


@dataclass(frozen=True)
class CleanOptions:
    """How a file is cleaned (shipped to the workers with each archive task)."""

    model: str | None = None  # None: chosen per file from INSTRUME / DETECTOR
    # "auto": the camera's default (model_choice.default_inpaint: a network only where it beat the median on
    # independent truth); None: the 5x5 median; or an inpaint model's name
    inpaint: str | None = AUTO
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
    clean_anyway: tuple[str, ...] = ()  # product types to clean although they are not single images
    inpaint_suspect: bool = False  # inpaint chips the quality gates call suspect
    use_groups: bool = True  # fuse repeat exposures of one pointing
    fpr: float | None = None  # instead of threshold: a false-positive rate the model's metadata records
    compress: bool = False  # cleaned copies keep the input's compression (.gz, .bz2, .fz tiles)

    def key(self) -> str:
        """What must match for a previous result to count as done (not where or how it was computed)."""
        ignored = ("device", "dask_chip_pixels", "dask_chunk")
        return json.dumps({k: v for k, v in asdict(self).items() if k not in ignored}, sort_keys=True)


@dataclass
class FileResult:
    """What :func:`clean_file` or :func:`clean_group` did to one file."""

    path: str
    info: ExposureInfo
    chips: list[ChipResult]
    provenance: Provenance
    fits_output: str | None = None
    zarr_groups: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    group: str = ""  # the repeat-exposure group it was cleaned with, and how

    @property
    def suspect(self) -> bool:
        return any(chip.suspect for chip in self.chips)

    def rows(self, base: dict) -> list[dict]:
        """One manifest row per chip, extending ``base`` (path, size, mtime, options)."""
        rows = []
        for result in self.chips:
            n_cr = int(result.mask.sum())
            rows.append({**base, "chip": result.chip.name, "status": "suspect" if result.suspect else "done",
                         "seconds": self.seconds / len(self.chips), "cr_fraction": n_cr / result.mask.size,
                         "cr_pixels": n_cr, "pixels": int(result.mask.size), "model": self.provenance.model,
                         "weight_hash": self.provenance.weight_hash, "threshold": self.provenance.threshold,
                         "version": self.provenance.version, "error": "; ".join(result.suspect) or None,
                         "fits_output": self.fits_output, "zarr_group": self.zarr_groups.get(result.chip.name),
                         "instrument": self.info.instrument, "notes": "; ".join(self.info.notes) or None,
                         "group_name": self.group or None, "product": self.info.product.kind})
        return rows


def exposure_name(path: str | os.PathLike) -> str:
    """A file's name without its FITS suffix (``j8xi01abq_flc``)."""
    stem, extension, _ = split_name(path)
    return stem if extension else Path(path).stem


def open_for_cleaning(path: str | os.PathLike, options: CleanOptions) -> ExposureInfo:
    """Inspect a file and refuse, before any work, what should not or cannot be cleaned.

    Raises
    ------
    SkipFile
        A product that is not a single image (unless its types are in ``options.clean_anyway``).
    InputError
        A damaged file, or a DQ array that cannot hold ``options.dq_bit``.
    """
    info = inspect_file(path, gain=options.gain, model=options.model)
    if not info.product.cleanable(options.clean_anyway):
        raise SkipFile(info.product.skip_message(), info.product.kind)
    if not info.chips:
        raise InputError(f"{path}: no 2-D science image found")
    check_dq_bit(info, options.dq_bit)
    return info


def clean_file(
    path: str | os.PathLike,
    options: CleanOptions = CleanOptions(),
    *,
    output: str | os.PathLike | None = None,
    zarr_path: str | os.PathLike | None = None,
    zarr_name: str | None = None,
    source: str | None = None,
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
        A Zarr store to write each chip's group into, under ``zarr_name`` (default: the file's name).
    source : str, optional
        The name to record as the input (default ``path``): the URL of a file fetched from an object store.

    Returns
    -------
    FileResult

    Raises
    ------
    SkipFile
        A product that is not a single calibrated image (see :func:`open_for_cleaning`).
    InputError
        An unreadable file, a chip without finite pixels, a DQ bit that does not fit.
    """
    result = clean_read(read_file(path, options), options, source=source)
    return write_result(result, options, output=output, zarr_path=zarr_path, zarr_name=zarr_name)


@dataclass
class ReadFile:
    """A file's headers and pixels, read: the CPU step before the model (an archive task of its own on GPU
    workers, so that reading never holds the GPU)."""

    info: ExposureInfo
    chips: list[tuple[np.ndarray, np.ndarray] | None]  # (electrons, ignore) per chip; None: read block-wise later
    seconds: float = 0.0


def read_file(path: str | os.PathLike, options: CleanOptions = CleanOptions()) -> ReadFile:
    """Inspect a file (:func:`open_for_cleaning`) and read its chips; chips above ``options.dask_chip_pixels``
    are left to be read block by block when cleaned."""
    start = time.perf_counter()
    info = open_for_cleaning(path, options)
    chips = []
    for chip in info.chips:
        if chip.shape[0] * chip.shape[1] > options.dask_chip_pixels:
            chips.append(None)
            continue
        electrons, ignore = read_chip(info.path, chip, ignore_bits=options.ignore_bits)
        if not np.isfinite(electrons).any():
            raise InputError(f"{info.path}: {chip.name}: no finite pixels (all NaN or inf)")
        chips.append((electrons, ignore))
    return ReadFile(info, chips, time.perf_counter() - start)


def clean_read(read: ReadFile, options: CleanOptions = CleanOptions(), *, source: str | None = None) -> FileResult:
    """The model step: masks, inpainting and quality gates for a :class:`ReadFile` (nothing written)."""
    start = time.perf_counter()
    info = read.info
    cleaner, provenance = _cleaner(info, options)
    chips = []
    for chip, pixels in zip(info.chips, read.chips):
        if pixels is None:
            out = _clean_large_chip(info.path, chip, cleaner.mask_model.spec.name, provenance.threshold,
                                    replace(options, inpaint=inpaint_for(info, options)))
            pixels = read_chip(info.path, chip, ignore_bits=options.ignore_bits)  # for the gates
        else:
            out = cleaner.run(pixels[0], threshold=provenance.threshold, ignore=pixels[1])
        electrons, ignore = pixels
        chips.append(_gated(info, chip, electrons, ignore | ~np.isfinite(electrons), out, options))
    result = FileResult(source or info.path, info, chips, provenance)
    result.seconds = read.seconds + time.perf_counter() - start
    return result


def write_result(result: FileResult, options: CleanOptions = CleanOptions(), *,
                 output: str | os.PathLike | None = None, zarr_path: str | os.PathLike | None = None,
                 zarr_name: str | None = None) -> FileResult:
    """The last step: the cleaned FITS copy and the Zarr groups of a :class:`FileResult`."""
    start = time.perf_counter()
    _write(result, options, output, zarr_path, zarr_name)
    result.seconds += time.perf_counter() - start
    return result


def clean_group(
    group: Group,
    options: CleanOptions = CleanOptions(),
    *,
    outputs: dict[str, str | os.PathLike | None] | None = None,
    zarr_path: str | os.PathLike | None = None,
    zarr_names: dict[str, str] | None = None,
    sources: dict[str, str] | None = None,
) -> list[FileResult]:
    """Clean repeat exposures of one pointing together (:mod:`deepcr_dask.archive.groups`), writing each file's results.

    Parameters
    ----------
    group : Group
        Its files (or one file's imsets), with their pointing offsets.
    options : CleanOptions
    outputs, zarr_names : dict, optional
        Per file path: the cleaned FITS copy to write, the name of its Zarr group.
    zarr_path : path-like, optional
    sources : dict, optional
        Per file path: the name to record as the input (see :func:`clean_file`).

    Returns
    -------
    list of FileResult
        In the order of ``group.paths``.
    """
    start = time.perf_counter()
    infos = [open_for_cleaning(path, options) for path in group.paths]
    cleaner, provenance = _cleaner(infos[0], options)
    if group.within_file:  # one file: its imsets are the exposures
        stacks = [[(infos[0], chip) for chip in infos[0].chips]]
    else:
        stacks = [[(info, info.chips[c]) for info in infos] for c in range(len(infos[0].chips))]
    results: dict[str, list[ChipResult]] = {info.path: [] for info in infos}
    for stack in stacks:
        for (info, _), chip_result in zip(stack, _clean_stack(stack, group, cleaner, provenance.threshold, options)):
            results[info.path].append(chip_result)
    files = []
    seconds = (time.perf_counter() - start) / len(infos)
    # The group as its inputs are named (URLs of files fetched from an object store), not as local copies.
    label = replace(group, paths=[(sources or {}).get(p, p) for p in group.paths]).key
    for info in infos:
        result = FileResult((sources or {}).get(info.path, info.path), info, results[info.path], provenance,
                            group=f"{label}: {group.note}")
        _write(result, options, (outputs or {}).get(info.path), zarr_path, (zarr_names or {}).get(info.path))
        result.seconds = seconds
        files.append(result)
    return files


def inpaint_for(info: ExposureInfo, options: CleanOptions) -> str | None:
    """The inpaint network a file gets: the option, or with ``"auto"`` its camera's default (None: median)."""
    if options.inpaint != AUTO:
        return options.inpaint
    return default_inpaint(info.instrument, info.detector, info.telescope)


def _cleaner(info: ExposureInfo, options: CleanOptions):
    threshold = resolve_threshold(get_spec(info.model, "mask"), options.threshold, options.fpr)
    inpaint = inpaint_for(info, options)
    cleaner = get_cleaner(info.model, inpaint, options.device, kernels=options.kernels)
    return cleaner, Provenance.of(cleaner, info.model, threshold, inpaint)


def _clean_stack(stack: list[tuple[ExposureInfo, ChipInfo]], group: Group, cleaner, threshold: float,
                 options: CleanOptions) -> list[ChipResult]:
    """One chip seen by several exposures: network probabilities, fused with the exposures' evidence."""
    read = []
    for info, chip in stack:
        electrons, ignore = read_chip(info.path, chip, ignore_bits=options.ignore_bits)
        if not np.isfinite(electrons).any():
            raise InputError(f"{info.path}: {chip.name}: no finite pixels (all NaN or inf)")
        ignore = ignore | ~np.isfinite(electrons)
        err = read_err(info.path, chip)
        noise = err if err is not None else np.sqrt(np.clip(np.nan_to_num(electrons), 0, None)
                                                     + (chip.read_noise or 5.0) ** 2)
        exptime = chip.exptime or info.exptime or 1.0
        read.append((electrons, ignore, noise / exptime, exptime))
    probabilities = [cleaner.probability(e, ignore=ign) for e, ign, _, _ in read]
    rates = [np.nan_to_num(e) / t for e, _, _, t in read]
    ignores = [ign for _, ign, _, _ in read]
    sigmas = [s for _, _, s, _ in read]
    offsets = [group.offsets.get(info.path, (0.0, 0.0)) for info, _ in stack]
    if group.within_file or max(np.hypot(*o) for o in offsets) <= ALIGNED_PX:
        fused, _ = fuse(rates, sigmas, probabilities, ignores)
    else:  # dithered: each exposure against the others resampled onto its own grid
        wcs = _chip_wcs(stack)
        fused = []
        for k in range(len(stack)):
            moved = [_onto(rates[j], sigmas[j], ignores[j], wcs[j], wcs[k], rates[k].shape) if j != k
                     else (rates[k], sigmas[k], ignores[k]) for j in range(len(stack))]
            fused.append(fuse([m[0] for m in moved], [m[1] for m in moved], probabilities,
                              [m[2] for m in moved])[0][k])
    results = []
    for (info, chip), (electrons, ignore, _, _), p in zip(stack, read, fused):
        mask = (p > threshold) & ~ignore
        out = {"mask": mask, "probability": p, "cleaned": cleaner.inpaint(electrons, mask, ignore=ignore)}
        results.append(_gated(info, chip, electrons, ignore, out, options))
    return results


def _chip_wcs(stack):
    from astropy.io import fits
    from astropy.wcs import WCS

    out = []
    for info, chip in stack:
        with fits.open(info.path) as hdul:
            out.append(WCS(hdul[chip.hdu].header, hdul))
    return out


def _onto(rate, sigma, ignore, source, target, shape):
    """An exposure's rate, noise and ignored pixels resampled onto another's pixel grid (``reproject``)."""
    from reproject import reproject_interp

    moved, footprint = reproject_interp((np.where(ignore, np.nan, rate), source), target, shape_out=shape)
    noise, _ = reproject_interp((sigma, source), target, shape_out=shape)
    return np.nan_to_num(moved), np.nan_to_num(noise, nan=np.inf), ~np.isfinite(moved) | (footprint < 1)


def _gated(info: ExposureInfo, chip: ChipInfo, electrons, ignore, out: dict, options: CleanOptions) -> ChipResult:
    """The chip's result after the quality gates: a suspect chip keeps its pixels unless asked."""
    from ..sim import INSTRUMENTS

    space = info.telescope == "HST"
    pixel_um = next((i.pixel_um for n, i in INSTRUMENTS.items() if n.upper().startswith(info.instrument)), 15.0)
    gate: Gate = check_chip(out["mask"], np.nan_to_num(electrons), ignore, exptime=chip.exptime or info.exptime,
                            space=space, pixel_um=pixel_um)
    inpainted = not gate.suspect or options.inpaint_suspect
    cleaned = out["cleaned"] if inpainted else np.asarray(electrons, np.float32)
    return ChipResult(chip, out["mask"], cleaned, out["probability"], inpainted, gate.reasons)


def _write(result: FileResult, options: CleanOptions, output, zarr_path, zarr_name) -> None:
    info, provenance = result.info, result.provenance
    if zarr_path:
        for chip in result.chips:
            header = chip_header(info.path, chip.chip)
            arrays = {"mask": chip.mask.astype(np.uint8), "cleaned": chip.cleaned}
            if options.probability:
                arrays["probability"] = np.asarray(chip.probability, np.float32)
            attrs = {**provenance.as_dict(), "source": result.path, "chip": chip.chip.name, "units": "electrons",
                     "input_units": info.units, "electrons_per_input_unit": chip.chip.factor,
                     "unit_notes": list(info.notes), "instrument": info.instrument, "detector": info.detector,
                     "dq_bit": options.dq_bit, "suspect": list(chip.suspect), "inpainted": chip.inpainted,
                     "group": result.group, "fits_header": header.tostring(sep="\n"),
                     "wcs": _wcs_keywords(header)}
            result.zarr_groups[chip.chip.name] = zarr_io.write_chip_group(
                zarr_path, zarr_name or exposure_name(info.path), chip.chip.name, arrays, attrs)
    if options.write_fits and output is not None:
        result.fits_output = str(write_cleaned(info.path, output, result.chips, cr_bit=options.dq_bit,
                                               provenance=provenance, extra_mask=options.crmask_extension,
                                               extra_probability=options.probability, notes=info.notes))


def _wcs_keywords(header) -> dict:
    """The celestial WCS of a chip header as FITS keywords (empty when it has none)."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2)
        except Exception:  # a header whose WCS astropy cannot parse: record none rather than fail the file
            return {}
        if not wcs.has_celestial:
            return {}
        return {k: v for k, v in wcs.to_header(relax=True).items() if k not in ("COMMENT", "HISTORY", "")}


def _clean_large_chip(path: str, chip: ChipInfo, model: str, threshold: float, options: CleanOptions) -> dict:
    """A chip as a dask array read block by block from the file, cleaned by ``clean_dask``."""
    import dask

    from ..distributed.engine import clean_dask

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

