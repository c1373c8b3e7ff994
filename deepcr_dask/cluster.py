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

import contextlib
import copy
import inspect
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

from .allocator import WORKER_ENVIRONMENT
from .errors import DeepCRDaskError

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


class ClusterError(DeepCRDaskError, RuntimeError):
    """A cluster could not be started, reached or closed."""


class ClusterOptionError(ClusterError, ValueError):
    """``make_cluster`` was given an unknown kind, an unknown option or an invalid option value."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """A scheduler did not answer, or workers did not arrive, within the time allowed."""


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
    security = _resolve_security(options.pop("security", None))

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


def _resolve_security(security: Any) -> Any:
    """None/False → None; True → temporary TLS credentials; a Security object as is."""
    if security is None or security is False:
        return None
    from distributed.security import Security

    if security is True:
        try:
            return Security.temporary()
        except ImportError as exc:
            raise ClusterOptionError(
                "security=True makes temporary TLS certificates and needs the 'cryptography' package; "
                "install it, or pass a distributed.Security built from your own certificate files"
            ) from exc
    if not isinstance(security, Security):
        raise ClusterOptionError(f"security must be True or a distributed.Security, not {type(security).__name__}")
    return security


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
    # Worker processes start with one malloc arena (see deepcr_dask.allocator): set before spawning.
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

# Defaults when neither the options nor the jobqueue configuration set a value. One process per job
# with one thread keeps torch's thread count, memory and SLURM's CPU accounting in step.
_SLURM_DEFAULTS: dict[str, Any] = {
    "cores": 1,
    "memory": "4GB",
    "processes": 1,
    # Expanded by the job's shell: node-local scratch when the site sets TMPDIR.
    "local_directory": "${TMPDIR:-/tmp}",
}

# Keyword → key of the jobqueue configuration section (dask-jobqueue's own mapping).
_SLURM_CONFIG_KEYS: dict[str, str] = {
    "cores": "cores",
    "memory": "memory",
    "processes": "processes",
    "python": "python",
    "interface": "interface",
    "death_timeout": "death-timeout",
    "local_directory": "local-directory",
    "worker_command": "worker-command",
    "worker_extra_args": "worker-extra-args",
    "shebang": "shebang",
    "queue": "queue",
    "account": "account",
    "walltime": "walltime",
    "job_script_prologue": "job-script-prologue",
    "job_cpu": "job-cpu",
    "job_mem": "job-mem",
    "job_extra_directives": "job-extra-directives",
    "job_directives_skip": "job-directives-skip",
    "log_directory": "log-directory",
    "job_name": "name",
    "scheduler_options": "scheduler-options",
    "shared_temp_directory": "shared-temp-directory",
}
# Deprecated configuration keys that dask-jobqueue still honours, mapped onto their new names.
_SLURM_DEPRECATED_KEYS = {
    "extra": "worker_extra_args",
    "job-extra": "job_extra_directives",
    "env-extra": "job_script_prologue",
    "header-skip": "job_directives_skip",
    "project": "account",
}
_SLURM_CLUSTER_ONLY = {"scheduler_options", "shared_temp_directory", "silence_logs", "name", "scheduler_cls"}
_SLURM_OURS = {"partition", "gpus", "jobs", "n_workers", "config", "config_name"}


def _slurm_allowed() -> set[str]:
    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    names: set[str] = set()
    for func in (Job.__init__, SLURMJob.__init__, JobQueueCluster.__init__):
        names |= {p.name for p in inspect.signature(func).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD}
    # Set by us or by the cluster, never by a caller ("name" stays: the cluster's name).
    names -= {"self", "scheduler", "job_cls", "loop", "asynchronous", "security"}
    return names | _SLURM_OURS


def _load_jobqueue_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a jobqueue.yaml (or any dask config file) as a nested mapping."""
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ClusterOptionError(f"jobqueue config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ClusterOptionError(f"cannot parse {file} as YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("jobqueue", {}), Mapping):
        raise ClusterOptionError(f"{file} must be a mapping with a 'jobqueue:' section")
    return dict(data)


def _slurm_section(config_file: Any, config_name: str) -> dict[str, Any]:
    """The jobqueue section to use: dask's configuration, overlaid with ``config_file`` if given."""
    base = copy.deepcopy(dask.config.get("jobqueue", default={}) or {})
    if config_file is not None:
        # `update` canonicalises job_extra/job-extra spellings the way dask's own loader does.
        dask.config.update(base, _load_jobqueue_file(config_file).get("jobqueue", {}) or {}, priority="new")
    if config_name not in base:
        where = f" in {config_file}" if config_file is not None else " in the dask configuration"
        raise ClusterOptionError(f"no jobqueue section {config_name!r}{where}; found: {sorted(base)}")
    section = dict(base.get("slurm", {}) or {})
    # A custom section (e.g. slurm-gpu) only lists what differs; the rest comes from `slurm`.
    dask.config.update(section, base[config_name] or {}, priority="new")
    return section


def _resolve_slurm(options: dict[str, Any], security: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    """Split and complete SLURM options.

    Every job parameter is resolved *now* (options > config file > dask config > our defaults) and passed
    explicitly, so jobs submitted later by ``scale`` do not depend on a configuration context that has
    since been left.

    Returns
    -------
    job_kwargs, cluster_kwargs, scale
    """
    try:
        allowed = _slurm_allowed()
    except ImportError as exc:
        raise ClusterError("kind='slurm' needs dask-jobqueue: pip install 'deepcr-dask[slurm]'") from exc
    _reject_unknown("slurm", options, allowed)
    options = dict(options)
    config_file = options.pop("config", None)
    config_name = options.pop("config_name", None) or "slurm"
    section = _slurm_section(config_file, config_name)

    if "partition" in options:
        partition = options.pop("partition")
        if options.get("queue") not in (None, partition):
            raise ClusterOptionError(f"partition={partition!r} and queue={options['queue']!r} disagree")
        options["queue"] = partition
    # dask-jobqueue wants these inside scheduler_options; accept them where users expect them.
    for key in ("dashboard_address", "host"):
        if key in options:
            options["scheduler_options"] = {**(options.get("scheduler_options") or {}), key: options.pop(key)}
    gpus = options.pop("gpus", None)
    jobs = options.pop("jobs", None)
    n_workers = options.pop("n_workers", None)

    resolved: dict[str, Any] = {}
    for key, conf_key in _SLURM_CONFIG_KEYS.items():
        value = options.pop(key, None)
        if value is None:
            value = section.get(conf_key)
        if value is None:
            value = _SLURM_DEFAULTS.get(key)
        resolved[key] = value
    for conf_key, key in _SLURM_DEPRECATED_KEYS.items():
        if section.get(conf_key) and not resolved.get(key):
            resolved[key] = section[conf_key]
    resolved.update(options)  # remaining SLURMCluster arguments (nanny, protocol, silence_logs, ...)

    _check_int("cores", resolved["cores"], minimum=1)
    _check_int("processes", resolved["processes"], minimum=1)
    if resolved["processes"] > resolved["cores"]:
        raise ClusterOptionError(f"processes={resolved['processes']} exceeds cores={resolved['cores']}")
    _check_memory("memory", resolved["memory"])
    if resolved.get("walltime") is not None and not isinstance(resolved["walltime"], str):
        raise ClusterOptionError(f"walltime must be a string such as '01:00:00', not {resolved['walltime']!r}")
    for key in ("worker_extra_args", "job_extra_directives", "job_script_prologue", "job_directives_skip"):
        value = resolved.get(key)
        if value is None:
            resolved[key] = []
        elif isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ClusterOptionError(f"{key} must be a list of strings, not {value!r}")
        else:
            resolved[key] = list(value)

    if gpus is not None and _check_int("gpus", gpus, minimum=0) > 0:
        # SLURM sets CUDA_VISIBLE_DEVICES for the job's GPUs; the worker uses cuda:0 of that list, and
        # the resource lets GPU tasks be routed only to workers that own a GPU.
        resolved["job_extra_directives"].append(f"--gres=gpu:{gpus}")
        resolved["worker_extra_args"] += ["--resources", f"GPU={gpus}"]
        if resolved["processes"] > 1:
            raise ClusterOptionError(
                "gpus needs processes=1: worker processes of one job would share the same CUDA device"
            )

    scheduler_options = dict(resolved.pop("scheduler_options") or {})
    scheduler_options.setdefault("dashboard_address", _LOCAL_DASHBOARD)
    cluster_kwargs: dict[str, Any] = {"scheduler_options": scheduler_options}
    for key in _SLURM_CLUSTER_ONLY - {"scheduler_options"}:
        if key in resolved:
            value = resolved.pop(key)
            if value is not None:
                cluster_kwargs[key] = value
    if security is not None:
        cluster_kwargs["security"] = security

    scale: dict[str, int] = {}
    if jobs is not None and n_workers is not None:
        raise ClusterOptionError("give either jobs or n_workers, not both")
    if jobs is not None:
        scale["jobs"] = _check_int("jobs", jobs, minimum=0)
    if n_workers is not None:
        scale["n"] = _check_int("n_workers", n_workers, minimum=0)
    return resolved, cluster_kwargs, scale


def slurm_job_script(**options: Any) -> str:
    """The batch script a ``make_cluster("slurm", **options)`` cluster would submit per job.

    Nothing is started and nothing is submitted: use it to inspect resources, paths and the worker
    command before running (or in tests). The scheduler address is a placeholder.

    Parameters
    ----------
    **options
        As for ``make_cluster("slurm", ...)``; ``jobs``/``n_workers``/``timeout`` are accepted and ignored.

    Returns
    -------
    str
        The job script, ``#SBATCH`` header included.
    """
    from dask_jobqueue.slurm import SLURMJob

    options = dict(options)
    options.pop("timeout", None)
    security = _resolve_security(options.pop("security", None))
    job_kwargs, cluster_kwargs, _ = _resolve_slurm(options, security)
    worker_security = None
    if security is not None:
        # In-memory (temporary) credentials are written to files when the cluster starts; show where.
        worker_security = copy.copy(security)
        shared = cluster_kwargs.get("shared_temp_directory") or os.getcwd()
        for key, value in security.get_tls_config_for_role("worker").items():
            if value is not None and "\n" in value:
                attr = "tls_" + ("worker_" if key != "ca_file" else "") + key
                setattr(worker_security, attr, os.path.join(shared, f".dask-jobqueue.worker.{key}.XXXX"))
    protocol = job_kwargs.pop("protocol", None) or ("tls://" if security is not None else None)
    scheme = protocol or "tcp://"
    # The job class creates log_directory as a side effect; an inspection must leave no trace.
    log_dir = job_kwargs.get("log_directory")
    created = log_dir is not None and not os.path.exists(log_dir)
    try:
        job = SLURMJob(
            f"{scheme}<scheduler-address>:8786",
            name="dummy-name",
            protocol=protocol,
            security=worker_security,
            **job_kwargs,
        )
    except TypeError as exc:
        raise ClusterOptionError(f"bad option for a slurm cluster: {exc}") from exc
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(log_dir)
    return job.job_script()


def _make_slurm(options: dict[str, Any], security: Any, timeout: float | None) -> ClusterHandle:
    job_kwargs, cluster_kwargs, scale = _resolve_slurm(options, security)
    from dask_jobqueue import SLURMCluster

    if scale and any(scale.values()) and shutil.which("sbatch") is None:
        raise ClusterError("kind='slurm' submits jobs with sbatch, which is not on PATH here")
    try:
        cluster = SLURMCluster(**cluster_kwargs, **job_kwargs)
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
