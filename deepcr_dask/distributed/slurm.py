"""SLURM through dask-jobqueue: options, a jobqueue.yaml file and dask's configuration, resolved by dask-jobqueue.

dask-jobqueue looks a job's settings up in ``jobqueue.<section>`` of dask's configuration (its own keys,
deprecated spellings and all) when each job is created, and writes the batch script itself
(``job_script()``). What it lacks, and this module adds:

* a ``jobqueue.yaml`` given by path (read as dask reads its own config files);
* a section other than ``slurm`` inheriting what it does not set from ``slurm`` (the shipped file's
  ``slurm-gpu`` lists only what differs);
* defaults where neither the options nor the configuration set a value (one single-threaded worker per
  job, 4 GB, node-local scratch), and a loopback dashboard;
* the worker environment the networks need (``MALLOC_ARENA_MAX=1``) exported in every job script;
* ``gpus=N`` (``--gres=gpu:N`` and the worker resource ``GPU=N``), ``partition`` as an alias of ``queue``;
* clear :class:`~deepcr_dask.errors.ClusterOptionError` messages for bad values, before any job is
  submitted.

The effective section is registered in dask's configuration under a private name derived from its
content, so that jobs submitted later (``scale``, adaptivity) read the same settings.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import dask.config

from ..errors import ClusterError, ClusterOptionError
from ..inference.allocator import WORKER_ENVIRONMENT
from .tls import resolve_security

__all__ = ["resolve_slurm", "slurm_job_script"]

# Defaults when neither the options nor the jobqueue configuration set a value. One process per job
# with one thread keeps torch's thread count, memory and SLURM's CPU accounting in step.
DEFAULTS: dict[str, Any] = {
    "cores": 1,
    "memory": "4GB",
    "processes": 1,
    "local-directory": "${TMPDIR:-/tmp}",  # expanded by the job's shell: node-local scratch where sites set it
}
LOCAL_DASHBOARD = "127.0.0.1:0"
_CLUSTER_ONLY = {"scheduler_options", "shared_temp_directory", "silence_logs", "name", "scheduler_cls"}
_OURS = {"partition", "gpus", "jobs", "n_workers", "config", "config_name"}
_LIST_OPTIONS = ("worker_extra_args", "job_extra_directives", "job_script_prologue", "job_directives_skip")


def _errors():
    return ClusterError, ClusterOptionError


def _allowed() -> set[str]:
    """Every keyword dask-jobqueue's SLURM job and cluster accept, plus ours."""
    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    names: set[str] = set()
    for func in (Job.__init__, SLURMJob.__init__, JobQueueCluster.__init__):
        names |= {p.name for p in inspect.signature(func).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD}
    # Set by us or by the cluster, never by a caller ("name" stays: the cluster's name).
    names -= {"self", "scheduler", "job_cls", "loop", "asynchronous", "security", "config_name"}
    return names | _OURS


def _load_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a jobqueue.yaml (or any dask config file) as a nested mapping."""
    import yaml

    _, option_error = _errors()
    file = Path(path).expanduser()
    if not file.is_file():
        raise option_error(f"jobqueue config file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise option_error(f"cannot parse {file} as YAML: {exc}") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("jobqueue", {}), Mapping):
        raise option_error(f"{file} must be a mapping with a 'jobqueue:' section")
    return dict(data)


def _section(config_file: Any, config_name: str) -> dict[str, Any]:
    """The section to use: dask's configuration, overlaid with ``config_file``; ``slurm`` underneath."""
    _, option_error = _errors()
    base = copy.deepcopy(dask.config.get("jobqueue", default={}) or {})
    if config_file is not None:
        # `update` canonicalises job_extra/job-extra spellings the way dask's own loader does.
        dask.config.update(base, _load_file(config_file).get("jobqueue", {}) or {}, priority="new")
    if config_name not in base:
        where = f" in {config_file}" if config_file is not None else " in the dask configuration"
        raise option_error(f"no jobqueue section {config_name!r}{where}; found: {sorted(base)}")
    section = copy.deepcopy(dict(base.get("slurm", {}) or {}))
    dask.config.update(section, copy.deepcopy(base[config_name]) or {}, priority="new")
    return {str(k).replace("_", "-"): v for k, v in section.items()}


def _register(section: dict[str, Any]) -> str:
    """Put the effective section into dask's configuration under a private, content-derived name."""
    digest = hashlib.sha1(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = f"deepcr-dask-{digest}"
    dask.config.update(dask.config.config, {"jobqueue": {name: section}}, priority="new")
    return name


def resolve_slurm(options: dict[str, Any], security: Any) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, int]]:
    """Check the options and register the effective configuration section.

    Returns
    -------
    config_name, job_kwargs, cluster_kwargs, scale
        Pass ``config_name`` and both kwargs to ``SLURMCluster`` (``job_kwargs`` alone to ``SLURMJob``);
        ``scale`` is for ``cluster.scale``.
    """
    cluster_error, option_error = _errors()
    try:
        allowed = _allowed()
    except ImportError as exc:
        raise cluster_error("kind='slurm' needs dask-jobqueue: pip install 'deepcr-dask[slurm]'") from exc
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise option_error(f"unknown option(s) for a slurm cluster: {', '.join(unknown)}; "
                           f"accepted: {', '.join(sorted(allowed))}")
    options = dict(options)
    section = _section(options.pop("config", None), options.pop("config_name", None) or "slurm")
    if "partition" in options:
        partition = options.pop("partition")
        if options.get("queue") not in (None, partition):
            raise option_error(f"partition={partition!r} and queue={options['queue']!r} disagree")
        options["queue"] = partition
    # dask-jobqueue wants these inside scheduler_options; accept them where users expect them.
    for key in ("dashboard_address", "host"):
        if key in options:
            options["scheduler_options"] = {**(options.get("scheduler_options") or {}), key: options.pop(key)}
    gpus, jobs, n_workers = options.pop("gpus", None), options.pop("jobs", None), options.pop("n_workers", None)
    options = {k: v for k, v in options.items() if v is not None}
    for key, value in DEFAULTS.items():
        if section.get(key) is None:
            section[key] = value

    def effective(key: str) -> Any:
        return options[key] if key in options else section.get(key.replace("_", "-"))

    _check(effective, option_error)
    if gpus is not None and _count("gpus", gpus, option_error) > 0:
        # SLURM sets CUDA_VISIBLE_DEVICES for the job's GPUs; the worker uses cuda:0 of that list, and
        # the resource lets GPU tasks be routed only to workers that own a GPU.
        if effective("processes") > 1:
            raise option_error("gpus needs processes=1: worker processes of one job would share the same CUDA device")
        options["job_extra_directives"] = [*(effective("job_extra_directives") or []), f"--gres=gpu:{gpus}"]
        options["worker_extra_args"] = [*(effective("worker_extra_args") or []), "--resources", f"GPU={gpus}"]
    # Worker processes start with one malloc arena (deepcr_dask.inference.allocator): without it the task threads'
    # own arenas serve activations with fresh mmaps (an archive on 1 job x 2 threads measured 1.4x slower).
    prologue = list(effective("job_script_prologue") or [])
    for name, value in WORKER_ENVIRONMENT.items():
        if not any(f"{name}=" in line for line in prologue):
            prologue.append(f"export {name}={value}")
    options["job_script_prologue"] = prologue
    scheduler_options = dict(effective("scheduler_options") or {})
    scheduler_options.setdefault("dashboard_address", LOCAL_DASHBOARD)
    options["scheduler_options"] = scheduler_options
    cluster_kwargs = {k: options.pop(k) for k in list(options) if k in _CLUSTER_ONLY}
    if security is not None:
        cluster_kwargs["security"] = security
    scale: dict[str, int] = {}
    if jobs is not None and n_workers is not None:
        raise option_error("give either jobs or n_workers, not both")
    if jobs is not None:
        scale["jobs"] = _count("jobs", jobs, option_error)
    if n_workers is not None:
        scale["n"] = _count("n_workers", n_workers, option_error)
    return _register(section), options, cluster_kwargs, scale


def _count(name: str, value: Any, option_error) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise option_error(f"{name} must be an integer >= 0, not {value!r}")
    return value


def _check(effective, option_error) -> None:
    from dask.utils import parse_bytes

    for key in ("cores", "processes"):
        value = effective(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise option_error(f"{key} must be an integer >= 1, not {value!r}")
    if effective("processes") > effective("cores"):
        raise option_error(f"processes={effective('processes')} exceeds cores={effective('cores')}")
    memory = effective("memory")
    try:
        size = parse_bytes(str(memory)) if not isinstance(memory, bool) else -1
    except (ValueError, TypeError):
        size = -1
    if size <= 0:
        raise option_error(f"memory must be a size such as '4GB', not {memory!r}")
    walltime = effective("walltime")
    if walltime is not None and not isinstance(walltime, str):
        raise option_error(f"walltime must be a string such as '01:00:00', not {walltime!r}")
    for key in _LIST_OPTIONS:
        value = effective(key)
        if value is not None and (isinstance(value, str) or not isinstance(value, (list, tuple))):
            raise option_error(f"{key} must be a list of strings, not {value!r}")


def slurm_job_script(**options: Any) -> str:
    """The batch script a ``make_cluster("slurm", **options)`` cluster would submit per job.

    Nothing is started and nothing is submitted: dask-jobqueue's own ``SLURMJob`` writes the script, so
    resources, paths and the worker command can be inspected before running (or in tests). The
    scheduler address is a placeholder.

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


    _, option_error = _errors()
    options = dict(options)
    options.pop("timeout", None)
    security = resolve_security(options.pop("security", None))
    config_name, job_kwargs, cluster_kwargs, _ = resolve_slurm(options, security)
    worker_security = None
    if security is not None:
        # In-memory (temporary) credentials are written to files when the cluster starts; show where.
        worker_security = copy.copy(security)
        shared = cluster_kwargs.get("shared_temp_directory") or os.getcwd()
        for key, value in security.get_tls_config_for_role("worker").items():
            if value is not None and "\n" in value:
                attr = "tls_" + ("worker_" if key != "ca_file" else "") + key
                setattr(worker_security, attr, os.path.join(shared, f".dask-jobqueue.worker.{key}.XXXX"))
    job_kwargs.pop("scheduler_options", None)
    protocol = job_kwargs.pop("protocol", None) or ("tls://" if security is not None else None)
    # The job class creates log_directory as a side effect; an inspection must leave no trace.
    log_dir = job_kwargs.get("log_directory", dask.config.get(f"jobqueue.{config_name}.log-directory", None))
    created = log_dir is not None and not os.path.exists(log_dir)
    try:
        job = SLURMJob(f"{protocol or 'tcp://'}<scheduler-address>:8786", name="dummy-name", config_name=config_name,
                       protocol=protocol, security=worker_security, **job_kwargs)
    except TypeError as exc:
        raise option_error(f"bad option for a slurm cluster: {exc}") from exc
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(log_dir)
    return job.job_script()
