"""Dask clusters for cleaning: local processes, local GPUs, SLURM jobs, or a running scheduler.

``make_cluster`` hides the four ways of getting a connected :class:`distributed.Client`:

- ``"local"``: a :class:`distributed.LocalCluster` of worker processes (the embedded default);
- ``"cuda"``: a ``dask_cuda.LocalCUDACluster``, one worker per GPU;
- ``"slurm"``: a ``dask_jobqueue.SLURMCluster``, whose workers are SLURM jobs;
- an address (``tcp://...``, ``tls://...``) or a scheduler file (``scheduler-file:PATH`` or an existing
  path): connect to a scheduler somebody else started (e.g. ``deploy/slurm/scheduler-file.sbatch``).

Dashboards are bound to 127.0.0.1 unless told otherwise: on a shared login node an open dashboard lets
anyone watch (and, through its JSON routes, probe) the run. Reach it through an SSH tunnel.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dask
import dask.config
from dask.utils import parse_bytes

from ..errors import ClusterError, ClusterOptionError, ClusterTimeoutError
from ..inference.allocator import WORKER_ENVIRONMENT
from .slurm import resolve_slurm, slurm_job_script
from .tls import resolve_security

__all__ = [
    "ClusterError",
    "ClusterHandle",
    "ClusterOptionError",
    "ClusterTimeoutError",
    "make_cluster",
    "slurm_job_script",
]

_ADDRESS_PREFIXES = ("tcp://", "tls://", "ucx://", "ws://", "wss://")
_SCHEDULER_FILE_PREFIX = "scheduler-file:"
_LOCAL_DASHBOARD = "127.0.0.1:0"
# Seconds to wait for a client connection: a local cluster starts in a few seconds; a remote scheduler
# that does not answer within this is not coming.
_CLUSTER_CONNECT_TIMEOUT = 60.0
_ADDRESS_CONNECT_TIMEOUT = 10.0
_CLOSE_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------- handle


class ClusterHandle:
    """A connected client and, when this process started it, the cluster behind it.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"cuda"``, ``"slurm"`` or ``"address"``.
    cluster : distributed.deploy.Cluster or None
        The cluster object this handle owns; None when connected to an existing scheduler.
    client : distributed.Client
        A client connected to the scheduler.

    Notes
    -----
    Use as a context manager, or call :meth:`close`: it closes the client and then the cluster it owns
    (for SLURM this cancels the worker jobs). A scheduler reached by address is never shut down.
    """

    def __init__(self, kind: str, cluster: Any, client: Any, dashboard_host: str | None = None) -> None:
        self.kind = kind
        self.cluster = cluster
        self.client = client
        self._dashboard_host = dashboard_host
        self._closed = False

    @property
    def scheduler_address(self) -> str:
        """Address of the scheduler, e.g. ``tcp://127.0.0.1:40737``."""
        if self.cluster is not None:
            return str(self.cluster.scheduler_address)
        return str(self.client.scheduler.address)

    @property
    def dashboard_link(self) -> str | None:
        """URL of the scheduler's dashboard, or None when it runs without one."""
        try:
            link = self.client.dashboard_link
        except (KeyError, AttributeError, TypeError, OSError):
            return None
        if link and self._dashboard_host:
            # dask builds the link from the scheduler's host, even when the dashboard listens on
            # loopback only (as the SLURM scheduler's does by default): point it where it listens.
            parts = urlsplit(link)
            host = f"[{self._dashboard_host}]" if ":" in self._dashboard_host else self._dashboard_host
            if parts.port is not None:
                link = urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))
        return link or None

    def wait_for_workers(self, n: int = 1, timeout: float | None = 120.0) -> None:
        """Block until at least ``n`` workers are connected.

        Parameters
        ----------
        n : int
            Number of workers to wait for.
        timeout : float or None
            Seconds to wait; None waits forever.

        Raises
        ------
        ClusterTimeoutError
            When fewer than ``n`` workers arrived in time (for SLURM: the jobs may still be queued).
        """
        _check_int("n", n, minimum=1)
        try:
            self.client.wait_for_workers(n, timeout=timeout)
        except TimeoutError as exc:
            have = len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
            hint = " (SLURM jobs may still be pending: see `squeue`)" if self.kind == "slurm" else ""
            raise ClusterTimeoutError(
                f"only {have} of {n} Dask workers connected to {self.scheduler_address} within {timeout} s{hint}"
            ) from exc

    def close(self, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Close the client, then the cluster this handle started (idempotent).

        Parameters
        ----------
        timeout : float
            Seconds allowed for each of the two steps.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close(timeout=timeout)
        except Exception as exc:  # the cluster must still be closed
            warnings.warn(f"closing the Dask client failed: {exc!r}", RuntimeWarning, stacklevel=2)
        if self.cluster is not None:
            try:
                self.cluster.close(timeout=timeout)
            except Exception as exc:
                warnings.warn(f"closing the {self.kind} cluster failed: {exc!r}", RuntimeWarning, stacklevel=2)

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.scheduler_address
        return f"<ClusterHandle {self.kind} {state}>"


# --------------------------------------------------------------------------------------------- entry


def make_cluster(kind: str = "local", **options: Any) -> ClusterHandle:
    """Start (or connect to) a Dask cluster and return a handle holding a connected client.

    Parameters
    ----------
    kind : str
        ``"local"`` (default), ``"cuda"``, ``"slurm"`` (or ``"slurm:SECTION"`` for a section of the
        jobqueue configuration other than ``slurm``), a scheduler address (``tcp://host:port``,
        ``tls://host:port``), ``"scheduler-file:PATH"``, or the path of an existing scheduler file.
        ``make_cluster(scheduler_file=PATH)`` also connects through a scheduler file.
    **options
        Depend on ``kind``; unknown names raise :class:`ClusterOptionError`. Common to all kinds:

        ``timeout`` (float): seconds to wait for the client to connect.
        ``security`` (``distributed.Security`` or True): TLS; True makes temporary self-signed
        credentials (needs the ``cryptography`` package). Use it on shared machines.

        ``"local"``: ``n_workers`` (default: the CPU count), ``threads_per_worker`` (default 1),
        ``memory_limit``, ``dashboard_address`` (default ``"127.0.0.1:0"``), ``processes`` (default
        True), ``local_directory``, ``resources``, ``host``, ``scheduler_port``, ``protocol``,
        ``silence_logs``.

        ``"cuda"``: passed to ``dask_cuda.LocalCUDACluster`` (``n_workers``, ``CUDA_VISIBLE_DEVICES``,
        ``device_memory_limit``, ...); ``dashboard_address`` defaults to ``"127.0.0.1:0"`` and each
        worker gets the resource ``GPU=1``.

        ``"slurm"``: any ``dask_jobqueue.SLURMCluster`` argument (``cores``, ``memory``, ``processes``,
        ``walltime``, ``queue``, ``account``, ``job_extra_directives``, ``worker_extra_args``,
        ``local_directory``, ``log_directory``, ``scheduler_options``, ...), plus ``partition`` (alias
        of ``queue``), ``gpus`` (GPUs per job: ``--gres=gpu:N`` and the worker resource ``GPU=N``),
        ``jobs`` (jobs to submit now) or ``n_workers`` (workers to ask for now), ``config`` (a
        ``jobqueue.yaml`` file) and ``config_name`` (its section, default ``"slurm"``). See
        :func:`slurm_job_script`.

        Address or scheduler file: only ``timeout`` and ``security``.

    Returns
    -------
    ClusterHandle
        Use it as a context manager, or call ``close()``.

    Raises
    ------
    ClusterOptionError
        Unknown kind, unknown option, or an invalid value (e.g. a negative worker count).
    ClusterTimeoutError
        The scheduler could not be reached within ``timeout``.
    ClusterError
        The cluster failed to start.

    Examples
    --------
    >>> with make_cluster("local", n_workers=2) as handle:  # doctest: +SKIP
    ...     mask, cleaned = clean_dask(image)
    ...     mask, cleaned = handle.client.compute([mask, cleaned], sync=True)
    """
    if not isinstance(kind, str) or not kind:
        raise ClusterOptionError(f"cluster kind must be a non-empty string, not {kind!r}")
    options = dict(options)
    timeout = options.pop("timeout", None)
    if timeout is not None:
        _check_number("timeout", timeout)
    security = resolve_security(options.pop("security", None))

    name = kind.strip()
    lowered = name.lower()
    if lowered in ("scheduler-file", "scheduler_file") or (lowered == "local" and "scheduler_file" in options):
        # make_cluster(scheduler_file=PATH) reads naturally; it means "connect", not "start local".
        path = options.pop("scheduler_file", None)
        if not path:
            raise ClusterOptionError(f"kind {kind!r} needs scheduler_file=PATH")
        return _connect(None, os.fspath(path), options, security, timeout)
    if name.lower() == "local":
        return _make_local(options, security, timeout)
    if name.lower() == "cuda":
        return _make_cuda(options, security, timeout)
    if name.lower() == "slurm":
        return _make_slurm(options, security, timeout)
    if name.lower().startswith("slurm:"):
        # "slurm:SECTION" picks a jobqueue section (e.g. slurm-gpu) from a CLI-friendly single string.
        if options.get("config_name") not in (None, name[6:]):
            raise ClusterOptionError(f"kind {kind!r} and config_name={options['config_name']!r} disagree")
        options["config_name"] = name[6:]
        return _make_slurm(options, security, timeout)
    if name.startswith(_ADDRESS_PREFIXES):
        return _connect(name, None, options, security, timeout)
    if name.startswith(_SCHEDULER_FILE_PREFIX):
        return _connect(None, name[len(_SCHEDULER_FILE_PREFIX) :], options, security, timeout)
    if Path(name).expanduser().is_file():
        return _connect(None, str(Path(name).expanduser()), options, security, timeout)
    raise ClusterOptionError(
        f"unknown cluster kind {kind!r}: use 'local', 'cuda', 'slurm', a scheduler address such as "
        "'tcp://host:8786', 'scheduler-file:PATH', or the path of an existing scheduler file"
    )


# --------------------------------------------------------------------------------------------- checks


def _check_int(name: str, value: Any, minimum: int = 0) -> int:
    # bool is an int subclass; `n_workers=True` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ClusterOptionError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ClusterOptionError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _check_memory(name: str, value: Any, allow_auto: bool = False) -> None:
    if value is None or (allow_auto and value == "auto"):
        return
    if isinstance(value, bool):
        raise ClusterOptionError(f"{name} must be a size such as '4GB', not {value!r}")
    if isinstance(value, (int, float)):
        # LocalCluster also takes a fraction of the machine's memory (0 < x <= 1).
        if value > 0:
            return
        raise ClusterOptionError(f"{name} must be positive, not {value!r}")
    try:
        size = parse_bytes(str(value))
    except (ValueError, TypeError) as exc:
        raise ClusterOptionError(f"{name} must be a size such as '4GB', not {value!r}") from exc
    if size <= 0:
        raise ClusterOptionError(f"{name} must be positive, not {value!r}")


def _reject_unknown(kind: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ClusterOptionError(
            f"unknown option(s) for a {kind} cluster: {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}"
        )


def _default_workers() -> int:
    # dask's CPU_COUNT honours affinity masks and cgroup quotas, unlike os.cpu_count().
    from dask.system import CPU_COUNT

    return max(1, int(CPU_COUNT))


# --------------------------------------------------------------------------------------------- client


def _loopback_host(dashboard_address: Any) -> str | None:
    """The host of a ``host:port`` dashboard address when it is a loopback one, else None."""
    if not isinstance(dashboard_address, str):
        return None
    host = dashboard_address.rpartition(":")[0].strip("[]") if ":" in dashboard_address else dashboard_address
    return host if host in ("127.0.0.1", "localhost", "::1") else None


def _client_for(
    kind: str, cluster: Any, security: Any, timeout: float | None, dashboard_address: Any = None
) -> ClusterHandle:
    """Connect a client to a cluster we started; close the cluster if that fails."""
    from distributed import Client

    wait = _CLUSTER_CONNECT_TIMEOUT if timeout is None else timeout
    try:
        client = Client(cluster, security=security, timeout=wait)
    except BaseException as exc:
        try:
            cluster.close(timeout=_CLOSE_TIMEOUT)
        except Exception:
            pass
        if isinstance(exc, (OSError, TimeoutError)):
            raise ClusterTimeoutError(f"could not connect to the {kind} cluster within {wait} s: {exc}") from exc
        raise
    return ClusterHandle(kind, cluster, client, _loopback_host(dashboard_address))


def _connect(
    address: str | None, scheduler_file: str | None, options: dict[str, Any], security: Any, timeout: float | None
) -> ClusterHandle:
    from distributed import Client

    _reject_unknown("scheduler-address", options, set())
    wait = _ADDRESS_CONNECT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + wait
    if scheduler_file is not None:
        # The client itself waits forever for a missing scheduler file; bound it (the file may appear
        # shortly after submission, when the scheduler task of the same job starts).
        path = Path(scheduler_file).expanduser()
        while not path.is_file():
            if time.monotonic() >= deadline:
                raise ClusterTimeoutError(f"scheduler file {scheduler_file} did not appear within {wait} s")
            time.sleep(0.1)
        scheduler_file = str(path)
    target = address or f"scheduler file {scheduler_file}"
    remaining = max(1.0, deadline - time.monotonic())
    try:
        client = Client(address, scheduler_file=scheduler_file, security=security, timeout=remaining)
    except (OSError, TimeoutError) as exc:
        raise ClusterTimeoutError(
            f"could not connect to the Dask scheduler at {target} within {wait} s: {exc}"
        ) from exc
    except ValueError as exc:  # malformed address, e.g. "tcp://nohost:notaport"
        raise ClusterOptionError(f"bad scheduler address {target!r}: {exc}") from exc
    return ClusterHandle("address", None, client)


# --------------------------------------------------------------------------------------------- local


_LOCAL_OPTIONS = {
    "n_workers",
    "threads_per_worker",
    "memory_limit",
    "dashboard_address",
    "processes",
    "local_directory",
    "resources",
    "host",
    "scheduler_port",
    "protocol",
    "silence_logs",
    "worker_dashboard_address",
}


def _make_local(options: dict[str, Any], security: Any, timeout: float | None) -> ClusterHandle:
    from distributed import LocalCluster

    _reject_unknown("local", options, _LOCAL_OPTIONS)
    kwargs: dict[str, Any] = {
        "n_workers": _default_workers(),
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": _LOCAL_DASHBOARD,
    }
    kwargs.update(options)
    _check_int("n_workers", kwargs["n_workers"], minimum=0)
    _check_int("threads_per_worker", kwargs["threads_per_worker"], minimum=1)
    _check_memory("memory_limit", kwargs.get("memory_limit"), allow_auto=True)
    if security is not None:
        kwargs["security"] = security
    # Worker processes start with one malloc arena (see deepcr_dask.inference.allocator): set before spawning.
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRONMENT}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ClusterOptionError(f"bad option for a local cluster: {exc}") from exc
    except Exception as exc:
        raise ClusterError(f"the local Dask cluster failed to start: {exc!r}") from exc
    return _client_for("local", cluster, security, timeout, kwargs.get("dashboard_address"))


# --------------------------------------------------------------------------------------------- cuda


def _make_cuda(options: dict[str, Any], security: Any, timeout: float | None) -> ClusterHandle:
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        raise ClusterError(
            "kind='cuda' needs dask-cuda: pip install 'deepcr-dask[gpu]' (and a CUDA build of torch)"
        ) from exc
    kwargs = dict(options)
    kwargs.setdefault("dashboard_address", _LOCAL_DASHBOARD)
    # Tasks that must own a GPU ask for resources={"GPU": 1}; each LocalCUDACluster worker has one.
    kwargs.setdefault("resources", {"GPU": 1})
    if "n_workers" in kwargs and kwargs["n_workers"] is not None:
        _check_int("n_workers", kwargs["n_workers"], minimum=1)
    if "threads_per_worker" in kwargs:
        _check_int("threads_per_worker", kwargs["threads_per_worker"], minimum=1)
    if security is not None:
        kwargs["security"] = security
    try:
        cluster = LocalCUDACluster(**kwargs)
    except TypeError as exc:
        raise ClusterOptionError(f"bad option for a cuda cluster: {exc}") from exc
    except Exception as exc:
        raise ClusterError(f"the local CUDA cluster failed to start: {exc!r}") from exc
    return _client_for("cuda", cluster, security, timeout, kwargs.get("dashboard_address"))


# --------------------------------------------------------------------------------------------- slurm


def _make_slurm(options: dict[str, Any], security: Any, timeout: float | None) -> ClusterHandle:
    config_name, job_kwargs, cluster_kwargs, scale = resolve_slurm(options, security)
    from dask_jobqueue import SLURMCluster

    if scale and any(scale.values()) and shutil.which("sbatch") is None:
        raise ClusterError("kind='slurm' submits jobs with sbatch, which is not on PATH here")
    try:
        cluster = SLURMCluster(config_name=config_name, **cluster_kwargs, **job_kwargs)
    except (TypeError, ValueError) as exc:
        raise ClusterOptionError(f"bad option for a slurm cluster: {exc}") from exc
    except Exception as exc:
        raise ClusterError(f"the SLURM cluster's scheduler failed to start: {exc!r}") from exc
    dashboard = cluster_kwargs["scheduler_options"].get("dashboard_address")
    handle = _client_for("slurm", cluster, security, timeout, dashboard)
    if scale:
        try:
            cluster.scale(**scale)
        except Exception as exc:
            handle.close()
            raise ClusterError(f"submitting SLURM worker jobs failed: {exc!r}") from exc
    return handle
