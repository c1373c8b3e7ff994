"""Archive runs: discover FITS files, skip those already done, group repeat exposures, clean the rest on a cluster.

The driver lists the inputs (:mod:`deepcr_dask.archive.layout`), drops files the manifest records as complete for
the same input, options, package version and weights, reads the others' headers (what each file is, its
pointing), groups repeat exposures (:mod:`deepcr_dask.archive.groups`) and submits one task per file or group:
:func:`process_file` / :func:`process_group` run :mod:`deepcr_dask.archive.pipeline` on the worker, which reads
the pixels, cleans them with the worker's resident Cleaner and writes the cleaned FITS and Zarr groups
itself, so pixels never travel through the driver. A bounded number of tasks is in flight; each result
is recorded in the SQLite manifest as it lands. A task whose worker is lost (its node gone, its job
preempted) is rescheduled by the scheduler on the workers that remain; the summary and the file's manifest
notes say which worker was lost and when (:mod:`deepcr_dask.distributed.workers`). A task that loses its
worker more than ``distributed.scheduler.allowed-failures`` times is recorded as failed with the reason.
Temporary files of writes a lost worker began are removed when the run ends.

Every file under the inputs is accounted for: cleaned, already complete, skipped by design (with its product
type and the reason), failed, or not FITS by name (counted; listed with ``verbose``).

Exit codes (:attr:`ArchiveSummary.exit_code`): 0 files were cleaned (now or by an earlier run) and none
failed, 1 some failed, 3 suspect chips under ``strict``, 4 nothing cleaned although the run looked (every
file skipped by design or not FITS, or no file at all), so that a batch job never reports success over an
archive it did not touch (2 is the command line's, for bad usage).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from .._version import __version__
from ..distributed.workers import LostWorkers, worker_address
from ..errors import InputError
from ..io import remote
from ..io import zarr as zarr_io
from ..io.fits import DEFAULT_CR_BIT, DEFAULT_IGNORE_BITS, ExposureInfo, SkipFile
from .gates import run_outliers
from .groups import Group, group_exposures
from .layout import Layout, discover, find_inputs
from .manifest import Manifest, default_manifest_path
from .pipeline import (
    DASK_CHIP_PIXELS,
    CleanOptions,
    clean_file,
    clean_group,
    clean_read,
    open_for_cleaning,
    read_file,
    write_result,
)
from .progress import progress_bar
from .staging import needs_staging, run_staged, staged_group
from .summary import ArchiveSummary, tally

__all__ = ["ArchiveOptions", "ArchiveSummary", "discover", "process_archive", "process_file", "process_group"]

ArchiveOptions = CleanOptions  # the per-file settings an archive task carries


def _base(path: str, options: CleanOptions) -> dict:
    size, mtime = remote.stamp(path)
    return {"path": path, "size": size, "mtime": mtime, "options": options.key(), "version": __version__,
            "worker": worker_address()}


def _failure(path: str, exc: BaseException, options: CleanOptions, start: float, status: str = "failed") -> dict:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if status == "failed" and not isinstance(exc, InputError):
        message = f"{path}: {type(exc).__name__}: {message}"
    try:
        base = _base(path, options)
    except (OSError, InputError):
        base = {"path": path, "options": options.key(), "version": __version__}
    product = getattr(exc, "kind", None) if status == "skipped" else None
    return {**base, "chip": "", "status": status, "error": message, "seconds": time.perf_counter() - start,
            "product": product}


def _output_location(output_dir: str | os.PathLike) -> Path | str:
    """A local output folder (made, absolute) or an object-store URL (checked reachable)."""
    if remote.is_url(output_dir):
        url = str(output_dir).rstrip("/")
        fs, path = remote.filesystem(url)
        bucket = path.split("/")[0]
        try:
            fs.ls(bucket)  # a missing bucket or refused credentials, said before any work
        except Exception as exc:
            raise remote.storage_error(url, exc) from None
        return url
    output = Path(remote.local_path(output_dir)).resolve()
    output.mkdir(parents=True, exist_ok=True)
    return output


def scan_file(path: str, options: CleanOptions) -> tuple[ExposureInfo | None, dict | None]:
    """A file's header information to group it with, or the manifest row that says why it is not cleaned."""
    start = time.perf_counter()
    try:
        return open_for_cleaning(path, options), None
    except SkipFile as exc:
        return None, _failure(path, exc, options, start, "skipped")
    except Exception as exc:  # one bad file must never stop an archive run
        return None, _failure(path, exc, options, start)


def read_task(path: str, options: CleanOptions):
    """GPU workers, step 1 (no GPU held): the file's headers and pixels, or its manifest row."""
    start = time.perf_counter()
    try:
        return read_file(path, options)
    except SkipFile as exc:
        return [_failure(path, exc, options, start, "skipped")]
    except Exception as exc:  # one bad file must never stop an archive run
        return [_failure(path, exc, options, start)]


def clean_task(read, options: CleanOptions):
    """Step 2 (holds a share of the GPU): masks and inpainting of what step 1 read."""
    if isinstance(read, list):
        return read
    start = time.perf_counter()
    try:
        return clean_read(read, options)
    except Exception as exc:
        return [_failure(read.info.path, exc, options, start)]


def write_task(result, path: str, layout: Layout, zarr_path: str | None, options: CleanOptions) -> list[dict]:
    """Step 3 (no GPU held): the cleaned copy and the Zarr groups; the file's manifest rows."""
    if isinstance(result, list):
        return result
    start = time.perf_counter()
    try:
        write_result(result, options, output=layout.fits_output(path), zarr_path=zarr_path,
                     zarr_name=layout.zarr_name(path))
        return result.rows(_base(path, options))
    except Exception as exc:
        return [_failure(path, exc, options, start)]


def process_file(path: str, layout: Layout, zarr_path: str | None, options: CleanOptions) -> list[dict]:
    """Clean one file (runs on a worker); returns one manifest row per chip, or one for the file.

    Never raises for a bad input: the reason goes into the row, so one bad file cannot stop a run. The
    same three steps as on GPU workers (:func:`read_task`, :func:`clean_task`, :func:`write_task`), in
    one task; a file in an object store goes through a local copy.
    """
    if not needs_staging([path], layout, zarr_path):
        return write_task(clean_task(read_task(path, options), options), path, layout, zarr_path, options)
    start = time.perf_counter()
    try:
        def clean(inputs, outputs, store):
            local = inputs[path]
            return [clean_file(local, options, output=outputs[local], zarr_path=store,
                               zarr_name=layout.zarr_name(path), source=path)]

        result, = run_staged([path], layout, zarr_path, clean)
        return result.rows(_base(path, options))
    except SkipFile as exc:
        return [_failure(path, exc, options, start, "skipped")]
    except Exception as exc:  # one bad file must never stop an archive run
        return [_failure(path, exc, options, start)]


def process_group(group: Group, layout: Layout, zarr_path: str | None, options: CleanOptions) -> list[dict]:
    """Clean repeat exposures together (runs on a worker); the rows of every file of the group."""
    start = time.perf_counter()
    try:
        if needs_staging(group.paths, layout, zarr_path):  # an object store: through local copies
            def clean(inputs, outputs, store):
                return clean_group(staged_group(group, inputs), options, outputs=outputs, zarr_path=store,
                                   zarr_names={inputs[p]: layout.zarr_name(p) for p in group.paths},
                                   sources={inputs[p]: p for p in group.paths})

            results = run_staged(group.paths, layout, zarr_path, clean)
        else:
            results = clean_group(group, options, outputs={p: layout.fits_output(p) for p in group.paths},
                                  zarr_path=zarr_path, zarr_names={p: layout.zarr_name(p) for p in group.paths})
        return [row for result in results for row in result.rows(_base(result.path, options))]
    except Exception as exc:  # the group's files fail together, with the reason; the run goes on
        return [_failure(path, exc, options, start) for path in group.paths]


def _connect(cluster):
    """A distributed Client and a closer, from a kind/address string, a handle, a client or None."""
    from distributed import Client

    from ..distributed.cluster import ClusterHandle, make_cluster

    if isinstance(cluster, Client):
        return cluster, None
    if isinstance(cluster, ClusterHandle):
        return cluster.client, None
    kind = cluster or "local"
    # A SLURM cluster named by a string has no jobs yet: one worker job, so that the run can start.
    handle = make_cluster(kind, jobs=1) if str(kind).lower().split(":")[0] == "slurm" else make_cluster(kind)
    return handle.client, handle


def _outputs_exist(rows: list[dict], zarr_path: str | None, options: CleanOptions) -> bool:
    for row in rows:
        if row["status"] not in ("done", "suspect"):
            continue
        if options.write_fits and not (row["fits_output"] and remote.exists(row["fits_output"])):
            return False
        if zarr_path and not (row["zarr_group"] and zarr_io.is_complete(zarr_path, row["zarr_group"])):
            return False
    return True


@lru_cache(maxsize=64)
def _weight_hash(model: str | None) -> str | None:
    """The hash a model's weights have now (a rerun redoes files cleaned with other weights)."""
    from ..models.zoo import file_hash, get_spec, weights_path

    try:
        return file_hash(weights_path(get_spec(str(model), "mask")))
    except Exception:  # a model gone from this installation: nothing to compare, so redo
        return None


def process_archive(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    zarr_path: str | os.PathLike | None = None,
    cluster=None,
    model: str | None = None,
    inpaint: str | None = "auto",
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
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    clean_anyway: Sequence[str] = (),
    inpaint_suspect: bool = False,
    strict: bool = False,
    use_groups: bool = True,
    fpr: float | None = None,
    manifest: str | os.PathLike | None = None,
    compress: bool = False,
) -> ArchiveSummary:
    """Clean every FITS file under ``inputs`` and record the results.

    Parameters
    ----------
    inputs : path, folder, glob, or a list of them
        Folders are searched recursively for FITS files: ``.fits``, ``.fit`` or ``.fts``, each plain or
        compressed (``.gz``, ``.bz2``, ``.fz`` tiles); every other file is counted as not FITS by name.
        Any of them may be a URL of an object store (``s3://bucket/visit1/``; all inputs then in one store),
        read with the filesystem's own credentials (:mod:`deepcr_dask.io.remote`).
    output_dir : path or URL
        Cleaned FITS copies mirroring the input tree (``<folder>/<name>_crclean.fits``) and, for a local
        folder, ``manifest.sqlite`` go here; it may be the input folder itself, inside it, or above it.
    zarr_path : path or URL, optional
        Zarr v3 store for masks and cleaned images (one group per exposure and chip).
    manifest : path, optional
        The run's SQLite manifest (always a local file). Default: ``manifest.sqlite`` in a local output
        folder; for an output URL, a file named after it under ``~/.cache/deepcr-dask/manifests``.
    cluster : str, ClusterHandle, distributed.Client or None
        ``"local"`` (default), ``"cuda"``, ``"slurm"``, a scheduler address, or an existing client.
    model, inpaint, threshold
        Mask model (default: by INSTRUME/DETECTOR), inpaint model (``"auto"``: the camera's default from
        ``weights/defaults/cameras.json``; None: the local median),
        threshold (default: the model's).
    fpr : float, optional
        Instead of ``threshold``: a false-positive rate (1e-4, 5e-4, 5e-3) whose threshold each file's
        mask model records; a model without that record fails the file with the reason.
    dq_bit : int
        DQ bit OR-ed on cosmic-ray pixels (default 8192).
    overwrite : bool
        Clean files again even if the manifest says they are complete.
    max_in_flight : int, optional
        Tasks submitted at once (default: twice the cluster's threads).
    report : path, optional
        Write a Dask performance report (HTML) of the run.
    device, kernels
        Passed to each worker's :class:`deepcr_dask.Cleaner`.
    dask_chip_pixels : int, optional
        Chips with more pixels (default 64 Mpix) are cleaned as dask arrays spread over the cluster.
    include, exclude : sequences of glob patterns
        Which files (relative paths or names) to take and to leave out.
    clean_anyway : sequence of str
        Product types (:data:`deepcr_dask.io.products.PRODUCT_TYPES`) to clean although they are not
        single calibrated images, e.g. ``("raw",)``.
    inpaint_suspect : bool
        Inpaint chips the quality gates call suspect (by default they are flagged only).
    strict : bool
        Exit code 3 when any chip is suspect.
    use_groups : bool
        Fuse repeat exposures of one pointing (default); False cleans every file on its own.
    compress : bool
        Cleaned copies keep the input's compression (``x.fits.fz`` -> ``x_crclean.fits.fz``, see
        :mod:`deepcr_dask.io.writer` for what tile compression does to float pixels); default plain FITS.

    Returns
    -------
    ArchiveSummary
    """
    start = time.perf_counter()
    output = _output_location(output_dir)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if zarr_path:
        zarr_path = str(zarr_path).rstrip("/") if remote.is_url(zarr_path) else \
            str(Path(remote.local_path(zarr_path)).resolve())
    found = find_inputs(inputs, zarr_path=zarr_path, include=include, exclude=exclude)
    files, root = found.files, found.root
    layout = Layout(root, output, compress=compress)
    options = CleanOptions(model, inpaint, threshold, dq_bit, DEFAULT_IGNORE_BITS, gain, write_fits,
                           crmask_extension, probability, device, kernels, dask_chip_pixels or DASK_CHIP_PIXELS,
                           clean_anyway=tuple(clean_anyway), inpaint_suspect=inpaint_suspect, use_groups=use_groups,
                           fpr=fpr, compress=compress)
    _clear_temporary(output, zarr_path)
    manifest_path = Path(manifest) if manifest else default_manifest_path(output)
    manifest_db = Manifest(manifest_path)
    summary = ArchiveSummary(output_dir=str(output), zarr_path=zarr_path, strict=strict,
                             manifest_path=str(manifest_path), not_fits=list(map(str, found.not_fits)))
    todo = []
    for path in map(str, files):
        size, mtime = remote.stamp(path)
        rows = None if overwrite else manifest_db.completed(path, size, mtime, options.key(),
                                                            version=__version__, weight_hash=_weight_hash)
        if rows is not None and _outputs_exist(rows, zarr_path, options):
            summary.already_done.append(path)
        else:
            todo.append(path)
    try:
        if todo:
            _run(todo, layout, zarr_path, options, cluster, manifest_db, summary, max_in_flight, progress, report)
            # A worker lost mid-write (its node gone) left its temporary files: the run is over, none is live.
            _clear_temporary(output, zarr_path)
    finally:
        this_run = set(map(str, files))
        fractions = {}
        for row in manifest_db.rows():
            if row["path"] in this_run and row["status"] in ("done", "suspect"):
                summary.cr_pixels += row["cr_pixels"] or 0
                summary.pixels += row["pixels"] or 0
                fractions[(row["path"], row["chip"])] = (row["instrument"] or "", row["cr_fraction"] or 0.0)
        summary.outliers = {f"{path} {chip}": reason for (path, chip), reason in run_outliers(fractions).items()}
        manifest_db.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _clear_temporary(output: Path | str, zarr_path: str | None) -> None:
    """Remove what interrupted writes left: half-written FITS copies (``.NAME.XXXX.tmp``) and Zarr groups
    never renamed into place. Only when no task of this run can still be writing (before and after it)."""
    if zarr_path and not remote.is_url(zarr_path):
        zarr_io.clear_temporary(zarr_path)
    if isinstance(output, Path):
        for stale in output.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)


def _scan(todo: list[str], options: CleanOptions) -> tuple[list[ExposureInfo], list[dict]]:
    """Headers of the files to clean, read in threads (I/O); rows for those not cleaned."""
    infos, rows = [], []
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(todo)))) as pool:
        for info, row in pool.map(lambda p: scan_file(p, options), todo):
            if info is not None:
                infos.append(info)
            else:
                rows.append(row)
    return infos, rows


def _run(todo, layout, zarr_path, options, cluster, manifest, summary, max_in_flight, progress, report) -> None:
    from distributed import as_completed, performance_report

    from ..distributed.engine import TorchThreadsPlugin, ensure_plugin, gpu_resources

    infos, unclean = _scan(todo, options)
    for row in unclean:
        manifest.record([row])
        tally([row], summary)
    groups = group_exposures(infos) if options.use_groups else [Group([i.path]) for i in infos]
    if not groups:
        return
    client, owned = _connect(cluster)
    try:
        ensure_plugin(TorchThreadsPlugin(), client)  # torch on each worker's own threads, not the nanny's one
        print(f"deepcr-dask: {len(infos)} file(s) to clean in {len(groups)} task(s); scheduler "
              f"{client.scheduler.address}; dashboard: {client.dashboard_link}", file=sys.stderr)
        if not client.nthreads():
            # Batch jobs may wait in the queue: the GPU routing and the in-flight bound need a worker to see.
            print("deepcr-dask: waiting for the first worker to start", file=sys.stderr)
            client.wait_for_workers(1)
        in_flight = _InFlightBound(client, max_in_flight)
        gpu = gpu_resources(client)  # a share of a GPU per task: the worker's threads batch together
        report_ctx = performance_report(filename=str(report)) if report else contextlib.nullcontext()
        with report_ctx, progress_bar(len(infos), progress) as bar, LostWorkers(client) as lost:
            pending = iter(groups)
            futures = as_completed(with_results=False)
            submitted = {}
            chains: dict[str, tuple[str, ...]] = {}  # the keys of a file's read/model/write tasks

            def submit(group: Group) -> None:
                single = len(group.paths) == 1 and not group.within_file
                stem = f"{Path(group.paths[0]).name}-{time.time_ns():x}"
                if single and gpu and not needs_staging(group.paths, layout, zarr_path):
                    # On GPU workers reading and writing are tasks of their own that hold no GPU share.
                    path = group.paths[0]
                    read = client.submit(read_task, path, options, pure=False, key=f"deepcr-read-{stem}")
                    cleaned = client.submit(clean_task, read, options, pure=False, resources=gpu,
                                            key=f"deepcr-model-{stem}")
                    future = client.submit(write_task, cleaned, path, layout, zarr_path, options, pure=False,
                                           key=f"deepcr-write-{stem}")
                    chains[future.key] = (read.key, cleaned.key)
                else:
                    fn, what = (process_file, group.paths[0]) if single else (process_group, group)
                    # Model tasks ask for the GPU where workers have one; discovery and scanning never do.
                    future = client.submit(fn, what, layout, zarr_path, options, pure=False, resources=gpu,
                                           key=f"deepcr-{stem}")
                submitted[future.key] = group
                futures.add(future)

            def fill() -> None:
                while futures.count() < in_flight.limit():
                    group = next(pending, None)
                    if group is None:
                        return
                    submit(group)

            fill()
            for future in futures:
                group = submitted.pop(future.key)
                try:
                    rows = future.result()
                except Exception as exc:  # the worker died (KilledWorker) or the task was lost: record, go on
                    reason = f"its worker died while cleaning it ({type(exc).__name__}: {exc})"
                    rows = [{**_failure(p, exc, options, time.perf_counter()), "error": f"{p}: {reason}",
                             "seconds": None} for p in group.paths]
                reasons = [line for key in (future.key, *chains.pop(future.key, ())) for line in lost.reasons(key)]
                if reasons:
                    _note_retried(rows, group.paths, "; ".join(dict.fromkeys(reasons)), summary)
                manifest.record(rows)
                tally(rows, summary)
                bar.update(len(group.paths))
                bar.set_postfix(failed=len(summary.failed), suspect=len(summary.suspect), refresh=False)
                fill()
        summary.lost_workers = [f"{worker} lost at {time.strftime('%H:%M:%S', time.localtime(when))} holding "
                                f"{held} task(s)" for when, worker, held in lost.lost]
    finally:
        if owned is not None:
            owned.close()


class _InFlightBound:
    """Tasks to keep submitted: ``fixed``, or twice the cluster's threads now (read at most every 5 s), so
    workers that join late (batch jobs) or leave (a lost node) change it as the run goes."""

    def __init__(self, client, fixed: int | None, every: float = 5.0) -> None:
        self.client, self.fixed, self.every = client, fixed, every
        self._value, self._read = 2, -every

    def limit(self) -> int:
        if self.fixed:
            return self.fixed
        now = time.monotonic()
        if now - self._read >= self.every:
            self._value, self._read = 2 * max(1, sum(self.client.nthreads().values())), now
        return self._value


def _note_retried(rows: list[dict], paths: list[str], reason: str, summary: ArchiveSummary) -> None:
    """Say in the summary and in each row's notes that these files' task ran again, and why."""
    for path in paths:
        summary.retried[path] = f"rescheduled: {reason}"
    for row in rows:
        row["notes"] = "; ".join(filter(None, [row.get("notes"), f"rescheduled: {reason}"]))
