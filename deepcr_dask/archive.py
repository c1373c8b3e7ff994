"""Archive runs: discover FITS files, skip those already done, clean the rest on a Dask cluster.

Each file is one task, :func:`process_file`, which runs :func:`deepcr_dask.pipeline.clean_file` on the
worker: it reads the file's chips, cleans them with the worker's resident Cleaner (a chip too large for
one task as a dask array spread over the cluster) and writes the cleaned FITS and Zarr groups itself, so
pixels never travel through the driver. The driver keeps a bounded number of files in flight and
records each result in the SQLite manifest as it lands.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .io import zarr as zarr_io
from .io.fits import DEFAULT_CR_BIT, DEFAULT_IGNORE_BITS, SkipFile
from .manifest import Manifest
from .pipeline import DASK_CHIP_PIXELS, CleanOptions, clean_file, exposure_name

__all__ = ["ArchiveOptions", "ArchiveSummary", "discover", "process_archive", "process_file"]

ArchiveOptions = CleanOptions  # the per-file settings an archive task carries

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")
MANIFEST_NAME = "manifest.sqlite"


@dataclass
class ArchiveSummary:
    """Outcome of :func:`process_archive`."""

    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    cr_pixels: int = 0
    pixels: int = 0
    seconds: float = 0.0
    output_dir: str = ""
    zarr_path: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when no file failed, 1 otherwise (for scripts and SLURM)."""
        return 1 if self.failed else 0

    def table(self) -> str:
        lines = [
            "| outcome | files |",
            "|---|---|",
            f"| cleaned now | {len(self.done)} |",
            f"| already complete (skipped) | {len(self.already_done)} |",
            f"| not cleaned by design | {len(self.skipped)} |",
            f"| failed | {len(self.failed)} |",
        ]
        fraction = self.cr_pixels / self.pixels if self.pixels else 0.0
        lines.append(f"\n{self.cr_pixels} cosmic-ray pixels in {self.pixels} ({fraction:.4%}); "
                     f"{self.seconds:.1f} s wall")
        for path, reason in sorted(self.failed.items()):
            lines.append(f"FAILED  {reason}" if reason.startswith(path) else f"FAILED  {path}: {reason}")
        for path, reason in sorted(self.skipped.items()):
            lines.append(f"SKIPPED {reason}" if reason.startswith(path) else f"SKIPPED {path}: {reason}")
        return "\n".join(lines)


def discover(inputs: Iterable[str | os.PathLike], exclude: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """FITS files named by ``inputs``: files, folders (searched recursively) and glob patterns."""
    excluded = [Path(e).resolve() for e in exclude]
    found: set[Path] = set()
    for item in inputs:
        item = str(item)
        matches = [Path(m) for m in glob.glob(item, recursive=True)] if any(c in item for c in "*?[") else [Path(item)]
        for match in matches:
            if match.is_dir():
                found.update(p for p in match.rglob("*") if p.is_file() and p.name.lower().endswith(FITS_SUFFIXES))
            elif match.is_file():
                found.add(match)
            else:
                raise InputError(f"{item}: no such file or folder")
    resolved = sorted(p.resolve() for p in found)
    return [p for p in resolved if not any(p.is_relative_to(e) for e in excluded) and not p.name.startswith(".")]


def output_fits_path(path: Path, output_dir: Path) -> Path:
    return output_dir / f"{exposure_name(path)}_crclean.fits"


def process_file(path: str, output_dir: str, zarr_path: str | None, options: CleanOptions) -> list[dict]:
    """Clean one file (runs on a worker); returns one manifest row per chip, or one for the file.

    Never raises for a bad input: the reason goes into the row, so one bad file cannot stop a run.
    """
    start = time.perf_counter()
    stat = os.stat(path)
    base = {"path": path, "size": stat.st_size, "mtime": stat.st_mtime, "options": options.key()}
    try:
        result = clean_file(path, options, output=output_fits_path(Path(path), Path(output_dir)), zarr_path=zarr_path)
        return result.rows(base)
    except SkipFile as exc:
        return [{**base, "chip": "", "status": "skipped", "error": str(exc), "seconds": time.perf_counter() - start}]
    except InputError as exc:
        return [{**base, "chip": "", "status": "failed", "error": str(exc), "seconds": time.perf_counter() - start}]
    except Exception as exc:  # one bad file must never stop an archive run
        message = f"{path}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return [{**base, "chip": "", "status": "failed", "error": message, "seconds": time.perf_counter() - start}]


def _connect(cluster):
    """A distributed Client and a closer, from a kind/address string, a handle, a client or None."""
    from distributed import Client

    from .cluster import ClusterHandle, make_cluster

    if isinstance(cluster, Client):
        return cluster, None
    if isinstance(cluster, ClusterHandle):
        return cluster.client, None
    handle = make_cluster(cluster or "local")
    return handle.client, handle


def _outputs_exist(rows: list[dict], zarr_path: str | None, options: CleanOptions) -> bool:
    for row in rows:
        if row["status"] != "done":
            continue
        if options.write_fits and not (row["fits_output"] and Path(row["fits_output"]).is_file()):
            return False
        if zarr_path and not (row["zarr_group"] and zarr_io.is_complete(zarr_path, row["zarr_group"])):
            return False
    return True


def process_archive(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    zarr_path: str | os.PathLike | None = None,
    cluster=None,
    model: str | None = None,
    inpaint: str | None = None,
    threshold: float | None = None,
    dq_bit: int = DEFAULT_CR_BIT,
    gain: float | None = None,
    write_fits: bool = True,
    crmask_extension: bool = False,
    probability: bool = False,
    overwrite: bool = False,
    max_in_flight: int | None = None,
    progress: bool = True,
    report: str | os.PathLike | None = None,
    device: str = "auto",
    kernels: str = "reference",
    dask_chip_pixels: int | None = None,
) -> ArchiveSummary:
    """Clean every FITS file under ``inputs`` and record the results.

    Parameters
    ----------
    inputs : path, folder, glob, or a list of them
        Folders are searched recursively for ``*.fits`` (``.fit``, ``.fts``, ``.fits.gz``).
    output_dir : path
        Cleaned FITS copies (``<name>_crclean.fits``) and ``manifest.sqlite`` go here.
    zarr_path : path, optional
        Zarr v3 store for masks and cleaned images (one group per exposure and chip).
    cluster : str, ClusterHandle, distributed.Client or None
        ``"local"`` (default), ``"cuda"``, ``"slurm"``, a scheduler address, or an existing client.
    model, inpaint, threshold
        Mask model (default: by INSTRUME/DETECTOR), inpaint model (default: local median),
        threshold (default: the model's).
    dq_bit : int
        DQ bit OR-ed on cosmic-ray pixels (default 8192).
    overwrite : bool
        Clean files again even if the manifest says they are complete.
    max_in_flight : int, optional
        Files submitted at once (default: twice the cluster's threads).
    report : path, optional
        Write a Dask performance report (HTML) of the run.
    device, kernels
        Passed to each worker's :class:`deepcr_dask.Cleaner`.
    dask_chip_pixels : int, optional
        Chips with more pixels (default 64 Mpix) are cleaned as dask arrays spread over the cluster
        (:func:`deepcr_dask.engine.clean_dask`) instead of in one task; the results are the same.

    Returns
    -------
    ArchiveSummary
    """
    start = time.perf_counter()
    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = discover(inputs, exclude=[output] + ([zarr_path] if zarr_path else []))
    options = CleanOptions(model, inpaint, threshold, dq_bit, DEFAULT_IGNORE_BITS, gain, write_fits,
                           crmask_extension, probability, device, kernels, dask_chip_pixels or DASK_CHIP_PIXELS)
    zarr_path = str(Path(zarr_path).resolve()) if zarr_path else None
    if zarr_path:
        zarr_io.clear_temporary(zarr_path)
    for stale in output.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    manifest = Manifest(output / MANIFEST_NAME)
    summary = ArchiveSummary(output_dir=str(output), zarr_path=zarr_path)
    todo = []
    for path in files:
        stat = path.stat()
        rows = None if overwrite else manifest.completed(str(path), stat.st_size, stat.st_mtime, options.key())
        if rows is not None and _outputs_exist(rows, zarr_path, options):
            summary.already_done.append(str(path))
        else:
            todo.append(str(path))
    try:
        if todo:
            _run(todo, output, zarr_path, options, cluster, manifest, summary, max_in_flight, progress, report)
    finally:
        for row in manifest.rows():
            if row["status"] == "done":
                summary.cr_pixels += row["cr_pixels"] or 0
                summary.pixels += row["pixels"] or 0
        manifest.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _run(todo, output, zarr_path, options, cluster, manifest, summary, max_in_flight, progress, report) -> None:
    import contextlib

    from distributed import as_completed, performance_report
    from tqdm.auto import tqdm

    from .engine import TorchThreadsPlugin, ensure_plugin

    client, owned = _connect(cluster)
    try:
        ensure_plugin(TorchThreadsPlugin(), client)  # torch on each worker's own threads, not the nanny's one
        print(f"deepcr-dask: {len(todo)} file(s) to clean; dashboard: {client.dashboard_link}", file=sys.stderr)
        threads = sum(client.nthreads().values()) or 1
        limit = max_in_flight or 2 * threads
        report_ctx = performance_report(filename=str(report)) if report else contextlib.nullcontext()
        with report_ctx, tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True) as bar:
            pending = iter(todo)
            futures = as_completed()
            for path in pending:
                futures.add(_submit(client, path, output, zarr_path, options))
                if futures.count() >= limit:
                    break
            for future in futures:
                rows = future.result()
                manifest.record(rows)
                _tally(rows, summary)
                bar.update(1)
                bar.set_postfix(failed=len(summary.failed), refresh=False)
                next_path = next(pending, None)
                if next_path is not None:
                    futures.add(_submit(client, next_path, output, zarr_path, options))
    finally:
        if owned is not None:
            owned.close()


def _submit(client, path, output, zarr_path, options):
    # retries: a worker that dies mid-file is replaced and the file is redone (outputs are atomic).
    return client.submit(process_file, path, str(output), zarr_path, options, pure=False, retries=2,
                         key=f"deepcr-file-{abs(hash((path, time.time_ns()))):x}")


def _tally(rows: list[dict], summary: ArchiveSummary) -> None:
    path = rows[0]["path"]
    statuses = {row["status"] for row in rows}
    if "failed" in statuses:
        summary.failed[path] = next(row["error"] for row in rows if row["status"] == "failed")
    elif statuses == {"skipped"}:
        summary.skipped[path] = rows[0]["error"]
    else:
        summary.done.append(path)
