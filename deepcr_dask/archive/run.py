"""Archive runs: discover FITS files, skip those already done, group repeat exposures, clean the rest on a cluster.

The driver lists the inputs (:mod:`deepcr_dask.archive.layout`), drops files the manifest records as complete for
the same input, options, package version and weights, reads the others' headers (what each file is, its
pointing), groups repeat exposures (:mod:`deepcr_dask.archive.groups`) and submits one task per file or group:
:func:`process_file` / :func:`process_group` run :mod:`deepcr_dask.archive.pipeline` on the worker, which reads
the pixels, cleans them with the worker's resident Cleaner and writes the cleaned FITS and Zarr groups
itself, so pixels never travel through the driver. A bounded number of tasks is in flight; each result
is recorded in the SQLite manifest as it lands. A task whose worker dies (and is rescheduled by the
scheduler until it gives up) is recorded as failed with the reason; the run goes on.

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
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .._version import __version__
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
from .staging import needs_staging, run_staged, staged_group

__all__ = ["ArchiveOptions", "ArchiveSummary", "discover", "process_archive", "process_file", "process_group"]

ArchiveOptions = CleanOptions  # the per-file settings an archive task carries
NOTHING_CLEANED = 4  # the exit code of a run that cleaned nothing


@dataclass
class ArchiveSummary:
    """Outcome of :func:`process_archive`."""

    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_kinds: dict[str, str] = field(default_factory=dict)  # path -> product type
    not_fits: list[str] = field(default_factory=list)  # files under the inputs whose names do not say FITS
    suspect: dict[str, list[str]] = field(default_factory=dict)  # path -> "CHIP: reason" lines
    outliers: dict[str, str] = field(default_factory=dict)  # "path CHIP" -> reason (the run's own distribution)
    cr_pixels: int = 0
    pixels: int = 0
    seconds: float = 0.0
    output_dir: str = ""
    zarr_path: str | None = None
    strict: bool = False
    manifest_path: str = ""

    @property
    def exit_code(self) -> int:
        """0 files cleaned, 1 some failed, 3 suspect chips under ``strict``, 4 nothing cleaned (for scripts and
        SLURM)."""
        if self.failed:
            return 1
        if not self.done and not self.already_done:
            return NOTHING_CLEANED
        return 3 if self.strict and self.suspect else 0

    def skipped_by_kind(self) -> dict[str, tuple[int, str]]:
        """Product type -> (files, one example), most files first."""
        counts: dict[str, list[str]] = {}
        for path in sorted(self.skipped):
            counts.setdefault(self.skipped_kinds.get(path) or "other", []).append(path)
        return {kind: (len(paths), paths[0]) for kind, paths in sorted(counts.items(), key=lambda kv: -len(kv[1]))}

    def nothing_cleaned(self) -> str:
        """The one line a run that cleaned nothing prints (empty otherwise)."""
        if self.exit_code != NOTHING_CLEANED:
            return ""
        found = len(self.skipped) + len(self.not_fits)
        if not found:
            return "NOTHING CLEANED: no file found under the inputs (exit code 4)"
        kinds = ", ".join(f"{n} {kind}" for kind, (n, _) in self.skipped_by_kind().items())
        return (f"NOTHING CLEANED: {found} file(s) found, none an image to clean: "
                f"{len(self.skipped)} skipped by design" + (f" ({kinds})" if kinds else "")
                + f", {len(self.not_fits)} not FITS by name (exit code 4)")

    def table(self, verbose: bool = False) -> str:
        """The run's outcome as a Markdown table, then one line per failed, suspect and skipped file."""
        nothing = self.nothing_cleaned()
        lines = [nothing] if nothing else []
        lines += [
            "| outcome | files |",
            "|---|---|",
            f"| cleaned now | {len(self.done)} |",
            f"| with suspect chips (flagged, not inpainted) | {len(self.suspect)} |",
            f"| already complete | {len(self.already_done)} |",
            f"| not cleaned by design | {len(self.skipped)} |",
            f"| failed | {len(self.failed)} |",
            f"| not FITS by name | {len(self.not_fits)} |",
        ]
        if self.skipped:
            lines += ["", "| skipped as | files | for example |", "|---|---|---|"]
            lines += [f"| {kind} | {n} | {Path(example).name} |"
                      for kind, (n, example) in self.skipped_by_kind().items()]
        fraction = self.cr_pixels / self.pixels if self.pixels else 0.0
        lines.append(f"\n{self.cr_pixels} cosmic-ray pixels in {self.pixels} ({fraction:.4%}); "
                     f"{self.seconds:.1f} s wall")
        for path, reason in sorted(self.failed.items()):
            lines.append(f"FAILED  {reason}" if reason.startswith(path) else f"FAILED  {path}: {reason}")
        for path, reasons in sorted(self.suspect.items()):
            lines += [f"SUSPECT {path} {reason}" for reason in reasons]
        for key, reason in sorted(self.outliers.items()):
            lines.append(f"OUTLIER {key}: {reason}")
        for path, reason in sorted(self.skipped.items()):
            lines.append(f"SKIPPED {reason}" if reason.startswith(path) else f"SKIPPED {path}: {reason}")
        if verbose:
            lines += [f"NOT FITS {path}" for path in self.not_fits]
        elif self.not_fits:
            lines.append(f"NOT FITS {len(self.not_fits)} file(s) whose names do not say FITS, e.g. "
                         f"{self.not_fits[0]} (all listed with --verbose)")
        return "\n".join(lines)


def _base(path: str, options: CleanOptions) -> dict:
    size, mtime = remote.stamp(path)
    return {"path": path, "size": size, "mtime": mtime, "options": options.key(), "version": __version__}


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
    handle = make_cluster(cluster or "local")
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
    if zarr_path and not remote.is_url(zarr_path):
        zarr_io.clear_temporary(zarr_path)
    if isinstance(output, Path):
        for stale in output.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
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
        _tally([row], summary)
    groups = group_exposures(infos) if options.use_groups else [Group([i.path]) for i in infos]
    if not groups:
        return
    client, owned = _connect(cluster)
    try:
        ensure_plugin(TorchThreadsPlugin(), client)  # torch on each worker's own threads, not the nanny's one
        print(f"deepcr-dask: {len(infos)} file(s) to clean in {len(groups)} task(s); scheduler "
              f"{client.scheduler.address}; dashboard: {client.dashboard_link}", file=sys.stderr)
        threads = sum(client.nthreads().values()) or 1
        limit = max_in_flight or 2 * threads
        gpu = gpu_resources(client)  # a share of a GPU per task: the worker's threads batch together
        report_ctx = performance_report(filename=str(report)) if report else contextlib.nullcontext()
        with report_ctx, _progress(len(infos), progress) as bar:
            pending = iter(groups)
            futures = as_completed(with_results=False)
            submitted = {}

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
                else:
                    fn, what = (process_file, group.paths[0]) if single else (process_group, group)
                    # Model tasks ask for the GPU where workers have one; discovery and scanning never do.
                    future = client.submit(fn, what, layout, zarr_path, options, pure=False, resources=gpu,
                                           key=f"deepcr-{stem}")
                submitted[future.key] = group
                futures.add(future)

            for group in pending:
                submit(group)
                if futures.count() >= limit:
                    break
            for future in futures:
                group = submitted.pop(future.key)
                try:
                    rows = future.result()
                except Exception as exc:  # the worker died (KilledWorker) or the task was lost: record, go on
                    reason = f"its worker died while cleaning it ({type(exc).__name__}: {exc})"
                    rows = [{**_failure(p, exc, options, time.perf_counter()), "error": f"{p}: {reason}",
                             "seconds": None} for p in group.paths]
                manifest.record(rows)
                _tally(rows, summary)
                bar.update(len(group.paths))
                bar.set_postfix(failed=len(summary.failed), suspect=len(summary.suspect), refresh=False)
                next_group = next(pending, None)
                if next_group is not None:
                    submit(next_group)
    finally:
        if owned is not None:
            owned.close()


class _PlainProgress:
    """Progress as whole lines for logs (SLURM output files): no carriage returns, one line every
    ``interval`` seconds and one at the end."""

    def __init__(self, total: int, interval: float = 30.0, stream=None):
        self.total, self.interval, self.stream = total, interval, stream or sys.stderr
        self.done, self.extra, self.start = 0, {}, time.monotonic()
        self.last = self.start

    def __enter__(self):
        return self

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self._line(now)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.extra = values

    def _line(self, now: float) -> None:
        minutes = max(now - self.start, 1e-9) / 60.0
        extra = "".join(f", {v} {k}" for k, v in self.extra.items())
        print(f"deepcr-dask: {self.done}/{self.total} files{extra} ({self.done / minutes:.1f} files/min)",
              file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        return None


def _in_notebook() -> bool:
    """True inside a Jupyter kernel, where tqdm.auto draws a widget (its stderr is no terminal)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _progress(total: int, enabled: bool):
    """A tqdm bar on a terminal or in a notebook, plain lines every 30 s elsewhere, nothing when disabled."""
    from tqdm.auto import tqdm

    if enabled and not sys.stderr.isatty() and not _in_notebook():
        return _PlainProgress(total)
    return tqdm(total=total, unit="file", disable=not enabled, dynamic_ncols=True, mininterval=1.0)


def _tally(rows: list[dict], summary: ArchiveSummary) -> None:
    by_path: dict[str, list[dict]] = {}
    for row in rows:
        by_path.setdefault(row["path"], []).append(row)
    for path, file_rows in by_path.items():
        statuses = {row["status"] for row in file_rows}
        if "failed" in statuses:
            summary.failed[path] = next(row["error"] for row in file_rows if row["status"] == "failed")
        elif statuses == {"skipped"}:
            summary.skipped[path] = file_rows[0]["error"]
            summary.skipped_kinds[path] = file_rows[0].get("product") or "other"
        else:
            summary.done.append(path)
            reasons = [f"{row['chip']}: {row['error']}" for row in file_rows if row["status"] == "suspect"]
            if reasons:
                summary.suspect[path] = reasons

