"""make_cluster and slurm_job_script: option handling, a real LocalCluster, and a real single-node SLURM.

The SLURM test needs the daemons started by ``tests/slurm/start.sh`` (``.ci/run`` starts them); it
skips, saying why, when ``sinfo`` is absent or the node is not up.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from astropy.io import fits

import deepcr_dask as dcr
from deepcr_dask.distributed.cluster import (
    ClusterError,
    ClusterOptionError,
    ClusterTimeoutError,
    make_cluster,
    slurm_job_script,
)
from deepcr_dask.errors import DeepCRDaskError

REPO = Path(__file__).resolve().parents[1]


def _sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def _worker_command(script: str) -> str:
    return next(line for line in script.splitlines() if "dask_worker" in line or "dask_cuda" in line)


# ------------------------------------------------------------------------------------ job scripts


def test_job_script_cpu_options():
    script = slurm_job_script(cores=4, memory="8GB", processes=2, walltime="02:30:00", partition="debug")
    header = _sbatch_lines(script)
    assert "#SBATCH -p debug" in header
    assert "#SBATCH --cpus-per-task=4" in header
    assert "#SBATCH --mem=8G" in header  # jobqueue rounds bytes up to whole GiB
    assert "#SBATCH -t 02:30:00" in header
    assert not any("gres" in line for line in header)
    command = _worker_command(script)
    assert "--nworkers 2" in command and "--nthreads 2" in command
    # Workers run this very interpreter (the venv), wherever the repository lives.
    assert command.startswith(sys.executable)
    assert "--local-directory" in command


def test_job_script_defaults_one_process_one_core():
    header = _sbatch_lines(slurm_job_script())
    assert "#SBATCH --cpus-per-task=1" in header
    assert "#SBATCH -n 1" in header


def test_job_script_gpu_options():
    script = slurm_job_script(cores=8, memory="32GB", gpus=1, queue="gpu", job_extra_directives=["--qos=high"])
    header = _sbatch_lines(script)
    assert "#SBATCH --gres=gpu:1" in header
    assert "#SBATCH --qos=high" in header  # user directives are kept, gres is added
    assert "#SBATCH -p gpu" in header
    assert "--resources GPU=1" in _worker_command(script)


def test_job_script_from_jobqueue_yaml(tmp_path):
    config = tmp_path / "jobqueue.yaml"
    config.write_text(
        "jobqueue:\n"
        "  slurm:\n"
        "    cores: 3\n"
        "    memory: 6GB\n"
        "    queue: short\n"
        "    job_extra_directives: ['--exclusive']\n"
        "  slurm-big:\n"
        "    cores: 16\n"
        "    memory: 64GB\n"
    )
    header = _sbatch_lines(slurm_job_script(config=str(config)))
    assert {"#SBATCH -p short", "#SBATCH --cpus-per-task=3", "#SBATCH --exclusive"} <= set(header)
    # A second section inherits what it does not set from `slurm`; explicit options win over the file.
    header = _sbatch_lines(slurm_job_script(config=str(config), config_name="slurm-big", memory="32GB"))
    assert {"#SBATCH -p short", "#SBATCH --cpus-per-task=16", "#SBATCH --mem=30G"} <= set(header)
    with pytest.raises(ClusterOptionError, match="no jobqueue section"):
        slurm_job_script(config=str(config), config_name="missing")


def test_shipped_jobqueue_yaml():
    config = REPO / "deploy" / "jobqueue.yaml"
    cpu = slurm_job_script(config=str(config))
    gpu = slurm_job_script(config=str(config), config_name="slurm-gpu")
    assert "--gres" not in cpu
    # The workers' malloc setting is exported once, whether the file already has it (it does) or not.
    assert cpu.count("MALLOC_ARENA_MAX=1") == 1 and gpu.count("MALLOC_ARENA_MAX=1") == 1
    assert "export MALLOC_ARENA_MAX=1" in slurm_job_script()
    # CPU jobs: one single-threaded worker per core; the GPU section keeps one worker per GPU.
    assert "--nworkers 4" in _worker_command(cpu) and "--nthreads 1" in _worker_command(cpu)
    assert "--nworkers" not in _worker_command(gpu) and "--nthreads 8" in _worker_command(gpu)
    assert "#SBATCH --gres=gpu:1" in _sbatch_lines(gpu)
    assert "--resources GPU=1" in _worker_command(gpu)
    assert not (Path.cwd() / "dask-logs").exists() or (Path.cwd() / "dask-logs").is_dir()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"cores": 0}, "cores"),
        ({"cores": 2, "processes": 3}, "processes"),
        ({"memory": "lots"}, "memory"),
        ({"memory": "-1GB"}, "memory"),
        ({"jobs": -1}, "jobs"),
        ({"jobs": 1, "n_workers": 1}, "either"),
        ({"gpus": 1, "cores": 2, "processes": 2}, "processes=1"),
        ({"partition": "a", "queue": "b"}, "disagree"),
        ({"walltime": 30}, "walltime"),
        ({"job_extra_directives": "--exclusive"}, "list"),
        ({"no_such_option": 1}, "unknown option"),
        ({"config": "/nonexistent/jobqueue.yaml"}, "not found"),
    ],
)
def test_slurm_bad_options(options, message):
    with pytest.raises(ClusterOptionError, match=message):
        slurm_job_script(**options)


# ------------------------------------------------------------------------------------ local cluster


def test_local_cluster_two_processes():
    start = time.monotonic()
    with make_cluster("local", n_workers=2) as handle:
        handle.wait_for_workers(2, timeout=60)
        info = handle.client.scheduler_info(n_workers=-1)
        assert len(info["workers"]) == 2
        assert all(w["nthreads"] == 1 for w in info["workers"].values())
        pids = set(handle.client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # separate worker processes
        assert handle.scheduler_address.startswith("tcp://127.0.0.1:")
        assert handle.dashboard_link is not None and handle.dashboard_link.startswith("http://127.0.0.1:")
        assert handle.client.submit(sum, [1, 2, 3]).result(timeout=30) == 6
        client, cluster = handle.client, handle.cluster
    assert client.status == "closed"
    assert cluster.status.name == "closed"
    handle.close()  # idempotent
    assert time.monotonic() - start < 60


def test_connect_by_address_and_scheduler_file(tmp_path):
    with make_cluster("local", n_workers=1) as owner:
        path = tmp_path / "scheduler.json"
        owner.client.write_scheduler_file(str(path))
        for kind, extra in [
            (owner.scheduler_address, {}),
            (f"scheduler-file:{path}", {}),
            (str(path), {}),
            ("local", {"scheduler_file": str(path)}),
        ]:
            with make_cluster(kind, timeout=10, **extra) as guest:
                assert guest.cluster is None
                assert guest.scheduler_address == owner.scheduler_address
                guest.wait_for_workers(1, timeout=30)
        # Closing a guest must leave the scheduler it connected to running.
        assert owner.client.submit(len, "abc").result(timeout=30) == 3


def test_wait_for_workers_times_out_clearly():
    with make_cluster("local", n_workers=1) as handle:
        start = time.monotonic()
        with pytest.raises(ClusterTimeoutError, match="1 of 3"):
            handle.wait_for_workers(3, timeout=2)
        assert time.monotonic() - start < 15


def test_security_true_gives_tls_or_a_clear_error():
    try:
        import cryptography  # noqa: F401
    except ImportError:
        with pytest.raises(ClusterOptionError, match="cryptography"):
            make_cluster("local", n_workers=1, security=True)
        return
    with make_cluster("local", n_workers=1, security=True) as handle:
        assert handle.scheduler_address.startswith("tls://127.0.0.1:")
        handle.wait_for_workers(1, timeout=60)


# ------------------------------------------------------------------------------------ bad input, fast


@pytest.mark.parametrize(
    "kind, options",
    [
        ("nonsense", {}),
        ("", {}),
        ("local", {"n_workers": -1}),
        ("local", {"n_workers": 1.5}),
        ("local", {"threads_per_worker": 0}),
        ("local", {"memory_limit": "a lot"}),
        ("local", {"no_such_option": 1}),
        ("local", {"timeout": -1}),
        ("local", {"security": "yes"}),
        ("tcp://127.0.0.1:8786", {"n_workers": 2}),
        ("scheduler-file", {}),
    ],
)
def test_bad_options_raise_quickly(kind, options):
    start = time.monotonic()
    with pytest.raises(ClusterOptionError) as info:
        make_cluster(kind, **options)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DeepCRDaskError)
    assert time.monotonic() - start < 5


def test_unreachable_address_fails_in_bounded_time():
    start = time.monotonic()
    with pytest.raises(ClusterTimeoutError, match=r"127\.0\.0\.1:1"):
        make_cluster("tcp://127.0.0.1:1")  # default connect timeout
    assert time.monotonic() - start < 30


def test_missing_scheduler_file_fails_in_bounded_time(tmp_path):
    start = time.monotonic()
    with pytest.raises(ClusterTimeoutError, match="did not appear"):
        make_cluster(f"scheduler-file:{tmp_path / 'none.json'}", timeout=2)
    assert time.monotonic() - start < 15


def test_cuda_without_dask_cuda_is_a_clear_error():
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(ClusterError, match="dask-cuda"):
            make_cluster("cuda")
    else:
        pytest.skip("dask-cuda is installed; LocalCUDACluster needs a GPU to test")


# ------------------------------------------------------------------------------------ real SLURM


def _slurm_ready() -> str | None:
    """None when a SLURM node is usable here, else the reason to skip."""
    for tool in ("sinfo", "sbatch", "squeue", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not found: start a single-node SLURM with `bash tests/slurm/start.sh` (as root)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*~#") in ("idle", "mixed") for s in states):
        detail = (out.stderr or out.stdout).strip() or "no nodes"
        return f"no idle SLURM node ({detail}); run `bash tests/slurm/start.sh`"
    return None


def _queue(*fields: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", " ".join(fields)], capture_output=True, text=True, timeout=20)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _streaked_sky(shape=(256, 256), seed=3) -> np.ndarray:
    """100 e- sky with Gaussian noise and a few bright 1-3 px wide streaks."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, shape)
    for y, x, length, width in [(40, 30, 12, 1), (120, 200, 7, 2), (200, 90, 15, 1), (70, 150, 5, 3), (230, 20, 9, 2)]:
        image[y : y + width, x : x + length] += rng.uniform(800, 3000)
    return image.astype(np.float32)


@pytest.mark.slurm
@pytest.mark.slow
def test_real_slurm_cluster_cleans_like_the_cleaner(tmp_path):
    reason = _slurm_ready()
    if reason:
        pytest.skip(reason)
    image = _streaked_sky()
    ref_mask, ref_clean = dcr.Cleaner("ACS-WFC", device="cpu").clean(image)
    logs = tmp_path / "logs"
    job_ids: list[str] = []
    with make_cluster(
        "slurm", cores=1, memory="3GB", processes=1, walltime="00:10:00", jobs=1, log_directory=str(logs)
    ) as handle:
        try:
            handle.wait_for_workers(1, timeout=120)
        except ClusterTimeoutError as exc:
            job_logs = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*")))
            pytest.fail(f"{exc}\nsqueue: {_queue('%i', '%T', '%R')}\njob logs:\n{job_logs}")
        # The scheduler listens on the node's address for workers, its dashboard on loopback only.
        assert handle.dashboard_link is not None and handle.dashboard_link.startswith("http://127.0.0.1:")
        job_ids = [str(job.job_id) for job in handle.cluster.workers.values() if job.job_id]
        assert job_ids, "the SLURMCluster recorded no job id"
        running = _queue("%i", "%T")
        assert any(line.split()[0] in job_ids for line in running), f"our job {job_ids} not in squeue: {running}"

        mask, cleaned = dcr.clean_dask(da.from_array(image, chunks=128))
        mask, cleaned = handle.client.compute([mask, cleaned], sync=True)

    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(cleaned, ref_clean, rtol=1e-5, atol=1e-4)
    assert ref_mask.any()  # the streaks were found, so the comparison means something

    # Closing the handle cancels the worker job; it must leave the queue.
    deadline = time.monotonic() + 30
    remaining = _queue("%i")
    while remaining and time.monotonic() < deadline:
        time.sleep(1)
        remaining = _queue("%i")
    assert not [j for j in remaining if j in job_ids], f"worker jobs still queued after close: {remaining}"
    assert remaining == [], f"squeue not empty after close: {remaining}"


@pytest.mark.slurm
@pytest.mark.slow
def test_scheduler_file_sbatch_runs_an_archive_over_tls(tmp_path):
    """The shipped one-job script, as a user submits it: TLS on by default, the archive cleaned."""
    reason = _slurm_ready()
    if reason:
        pytest.skip(reason)
    from deepcr_dask.demo import write_flc

    sky = _streaked_sky((128, 128))
    write_flc(tmp_path / "in" / "jtls01q_flc.fits", [(sky, np.sqrt(sky), np.zeros(sky.shape, np.int16))],
              rootname="jtls01q")
    log = tmp_path / "job.log"
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": sys.executable}
    job = subprocess.run(
        ["sbatch", "--wait", "--nodes=1", "--ntasks=1", "--ntasks-per-node=1", "--cpus-per-task=1",
         "--mem-per-cpu=3G", "--time=00:10:00", f"--output={log}", str(REPO / "deploy/slurm/scheduler-file.sbatch"),
         str(tmp_path / "in"), str(tmp_path / "out"), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert job.returncode == 0, f"{job.stdout}{job.stderr}\n{text[-3000:]}"
    assert "TLS: on" in text and re.search(r"Scheduler at: +tls://", text), text[-3000:]
    assert "deepcr-dask archive exited with 0" in text
    out = tmp_path / "out" / "jtls01q_flc_crclean.fits"
    with fits.open(out) as hdul:
        assert ((hdul["DQ", 1].data & 8192) != 0).any()
    assert not list(tmp_path.glob(".dask-tls-*")), "the job's TLS folder outlived it"
