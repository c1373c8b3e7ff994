"""An archive across a real multi-node SLURM cluster: nodes are network namespaces on this machine.

``tests/slurm/start-nodes.sh`` (started by ``.ci/run``) makes two compute nodes, each a network namespace
with its own address on a private bridge and its own slurmd, under one slurmctld. The driver submits its
worker jobs through dask-jobqueue as a user would (``deepcr-dask archive --cluster slurm``); the jobs run
inside the nodes' namespaces and reach the driver's scheduler across the bridge. Inputs and outputs are on
a folder every node sees, as on a cluster's shared file system.

The first run goes over TLS (``--tls``), the others over plain TCP. Each run is compared with a reference run
of the same inputs on a local cluster: the FITS copies byte for byte (but for the cards that carry the time
they were written), the Zarr stores file for file (but for the ``date`` attribute) and the manifests row for
row (but for timings, the output folder and the worker).

Losing a node is done as a node dies: its link goes down first (no connection is closed politely), then
every process in its namespace (slurmd, the job, the Dask nanny and worker) is killed. The scheduler finds
out when the worker misses its heartbeats (``worker-ttl``, shortened here), slurmctld when slurmd stops
answering. After each loss the node is brought back by running the script again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import files_done

from deepcr_dask.io.zarr import staging_dir

REPO = Path(__file__).resolve().parents[1]
START_NODES = REPO / "tests" / "slurm" / "start-nodes.sh"
CLUSTER_JSON = Path(os.environ.get("DEEPCR_DASK_SLURM_NODES", "/etc/slurm-nodes/cluster.json"))
N_FILES = 16
# Cards that hold the time of writing (CHECKSUM covers the header, so its comments' times too); DATASUM's value
# must match, its comment holds a time. Everything else in a header must match to the byte.
TIME_CARDS = {"CRDATE", "CHECKSUM"}
# Manifest columns that differ between two correct runs by design.
RUN_COLUMNS = {"seconds", "finished", "worker", "fits_output", "zarr_group", "notes"}

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


# ------------------------------------------------------------------------------------------ the cluster


def _cluster() -> dict:
    """The multi-node cluster's description, or skip with the reason it is not there."""
    if not CLUSTER_JSON.is_file():
        pytest.skip(f"no multi-node SLURM ({CLUSTER_JSON} missing): run `bash {START_NODES.relative_to(REPO)}` "
                    "as root (it needs network namespaces)")
    info = json.loads(CLUSTER_JSON.read_text())
    env = {**os.environ, "SLURM_CONF": info["conf"]}
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"sinfo failed for the multi-node cluster: {exc}")
    states = dict(line.split()[:2] for line in out.stdout.splitlines() if line.strip())
    usable = [n for n in info["nodes"] if states.get(n, "").rstrip("*~#") in ("idle", "mixed")]
    if len(usable) < len(info["nodes"]):
        pytest.skip(f"multi-node SLURM not idle ({states or out.stderr.strip()}): run `bash {START_NODES}`")
    return info


@pytest.fixture(scope="module")
def nodes():
    return _cluster()


def _env(info: dict, **extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "SLURM_CONF": info["conf"], "PATH": f"{bin_dir}:{os.environ['PATH']}", **extra}


def _jobqueue_yaml(folder: Path, info: dict) -> Path:
    """What a site's jobqueue.yaml says, for this cluster: one single-threaded worker per job, one job per
    node (--exclusive), scheduler and workers on the cluster network's interface."""
    path = folder / "jobqueue.yaml"
    path.write_text(
        "jobqueue:\n"
        "  slurm:\n"
        f"    queue: {info['partition']}\n"
        "    cores: 1\n"
        "    processes: 1\n"
        "    memory: 3GB\n"
        "    walltime: '00:15:00'\n"
        f"    interface: {info['interface']}\n"
        "    death-timeout: 15\n"
        f"    log-directory: {folder / 'job-logs'}\n"
        f"    local-directory: {folder / 'scratch'}\n"
        "    job-extra-directives: ['--exclusive']\n"
        "    job-script-prologue: ['export MALLOC_ARENA_MAX=1']\n"
        "    scheduler-options:\n"
        "      dashboard_address: '127.0.0.1:0'\n"
    )
    return path


def _queue(info: dict) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T %N"], capture_output=True, text=True, timeout=20,
                         env=_env(info))
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _drain_queue(info: dict, timeout: float = 60) -> None:
    """Cancel what a test left queued and wait until the nodes are free for the next one."""
    subprocess.run(["scancel", "-p", info["partition"]], capture_output=True, timeout=20, env=_env(info))
    deadline = time.monotonic() + timeout
    while _queue(info) and time.monotonic() < deadline:
        time.sleep(1)


def _lose_node(info: dict, node: str) -> list[int]:
    """Take a node off the network, then kill everything running on it (slurmd, the job, the workers)."""
    netns = info["nodes"][node]["netns"]
    subprocess.run(["ip", "-n", netns, "link", "set", info["interface"], "down"], check=True, timeout=20)
    pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                                           check=True, timeout=20).stdout.split()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def _bring_back(info: dict) -> None:
    out = subprocess.run(["bash", str(START_NODES)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"the lost node did not come back:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"


# ------------------------------------------------------------------------------------- inputs, references


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Inputs on the shared folder and their reference outputs from a local cluster (2 workers x 1 thread)."""
    from distributed import Client, LocalCluster

    from deepcr_dask.archive import process_archive
    from deepcr_dask.demo import make_demo_archive

    root = tmp_path_factory.mktemp("multinode")
    make_demo_archive(root / "in", n_files=N_FILES, shape=(512, 512), include_real=False)
    start = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        summary = process_archive(root / "in", root / "ref", zarr_path=root / "ref.zarr", cluster=client,
                                  progress=False)
    assert summary.exit_code == 0 and len(summary.done) == N_FILES
    return {"root": root, "inputs": root / "in", "ref": root / "ref", "ref_zarr": root / "ref.zarr",
            "local_seconds": time.perf_counter() - start}


def _archive_cmd(archive: dict, out: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "deepcr_dask.cli", "archive", str(archive["inputs"]), "-o", str(out),
            "--zarr", str(out.with_suffix(".zarr")), "--cluster", "slurm", "--jobqueue-config", str(config),
            "--workers", "2", "--no-progress"]


def _card(card) -> str:
    return f"DATASUM = {card.value}" if card.keyword == "DATASUM" else card.image


def _fits_identical(a: Path, b: Path) -> None:
    """Byte-identical data and headers, but for the cards holding the time each was written."""
    with fits.open(a) as ha, fits.open(b) as hb:
        assert [h.name for h in ha] == [h.name for h in hb], a.name
        for x, y in zip(ha, hb):
            cards_x = [_card(c) for c in x.header.cards if c.keyword not in TIME_CARDS]
            cards_y = [_card(c) for c in y.header.cards if c.keyword not in TIME_CARDS]
            assert cards_x == cards_y, f"{a.name} {x.name}: headers differ"
            if x.data is not None or y.data is not None:
                assert np.asarray(x.data).tobytes() == np.asarray(y.data).tobytes(), f"{a.name} {x.name}: data differ"


def _zarr_identical(a: Path, b: Path) -> None:
    """Every file of the two stores equal, but for the ``date`` attribute of the chip groups."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.name == "zarr.json":
            x, y = json.loads(x), json.loads(y)
            for meta in (x, y):
                meta.get("attributes", {}).pop("date", None)
        assert x == y, f"{rel} differs"


def _manifest(path: Path) -> list[dict]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM chips ORDER BY path, chip")]


def _same_as_reference(archive: dict, out: Path) -> list[dict]:
    """Outputs and manifest of ``out`` equal to the reference run's; no temporary file left. Its rows."""
    outputs = sorted(p.relative_to(out) for p in out.rglob("*.fits"))
    assert outputs == sorted(p.relative_to(archive["ref"]) for p in archive["ref"].rglob("*.fits"))
    assert len(outputs) == N_FILES
    for rel in outputs:
        _fits_identical(out / rel, archive["ref"] / rel)
    store = out.with_suffix(".zarr")
    staging = staging_dir(store)
    assert not staging.exists() or not any(staging.iterdir()), f"a Zarr group was left half-made: {staging}"
    _zarr_identical(store, archive["ref_zarr"])
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"half-written outputs left: {leftovers}"
    rows, ref_rows = _manifest(out / "manifest.sqlite"), _manifest(archive["ref"] / "manifest.sqlite")
    assert len(rows) == len(ref_rows) == 2 * N_FILES  # two chips a file: none missing, none twice
    assert {(r["path"], r["chip"]) for r in rows} == {(r["path"], r["chip"]) for r in ref_rows}
    assert all(r["status"] == "done" for r in rows)
    for row, ref in zip(rows, ref_rows):
        assert {k: v for k, v in row.items() if k not in RUN_COLUMNS} == \
            {k: v for k, v in ref.items() if k not in RUN_COLUMNS}, row["path"]
        assert Path(row["fits_output"]).relative_to(out) == Path(ref["fits_output"]).relative_to(archive["ref"])
    return rows


def _wait_for_rows(proc: subprocess.Popen, manifest: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while files_done(manifest) < n:
        assert proc.poll() is None, f"the run ended before {n} files were done:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"fewer than {n} files done after {timeout} s"
        time.sleep(0.2)


def _node_of(info: dict, worker: str) -> str:
    host = re.sub(r"^\w+://", "", worker).rsplit(":", 1)[0]
    return next((name for name, node in info["nodes"].items() if node["address"] == host), host)


# ------------------------------------------------------------------------------------------------- tests


def test_archive_across_two_nodes_over_tls_equals_a_local_run(nodes, archive, tmp_path):
    config = _jobqueue_yaml(tmp_path, nodes)
    out = tmp_path / "out"
    start = time.perf_counter()
    # --tls: temporary certificates; dask-jobqueue hands the workers theirs through files in its shared
    # temporary directory (the driver's working directory), which the nodes read from the shared folder.
    run = subprocess.run([*_archive_cmd(archive, out, config), "--tls"], capture_output=True, text=True,
                         timeout=600, env=_env(nodes), cwd=tmp_path)
    seconds = time.perf_counter() - start
    _drain_queue(nodes)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert re.search(rf"cleaned now \| {N_FILES} \|", run.stdout), run.stdout
    # The scheduler listens on the cluster network's address, encrypted.
    assert re.search(r"scheduler tls://" + re.escape(nodes["controller"]), run.stderr), run.stderr[-2000:]
    rows = _same_as_reference(archive, out)
    # The work was shared: both nodes cleaned files, each from inside its own namespace.
    by_node: dict[str, int] = {}
    for row in rows:
        by_node[_node_of(nodes, row["worker"])] = by_node.get(_node_of(nodes, row["worker"]), 0) + 1
    assert set(by_node) == set(nodes["nodes"]), by_node
    print(f"\n{N_FILES} files on {len(nodes['nodes'])} nodes: {seconds:.1f} s (chips by node {by_node}); "
          f"local reference {archive['local_seconds']:.1f} s")


def test_a_node_lost_mid_run_loses_nothing(nodes, archive, tmp_path):
    config = _jobqueue_yaml(tmp_path, nodes)
    out = tmp_path / "out"
    # A node that dies says nothing: the scheduler notices when its worker misses heartbeats for 10 s.
    env = _env(nodes, DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL="10s")
    start = time.perf_counter()
    proc = subprocess.Popen(_archive_cmd(archive, out, config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)
    try:
        _wait_for_rows(proc, out / "manifest.sqlite", 3)
        in_flight = [p.name for p in out.rglob("*.tmp")]
        killed_at = time.perf_counter() - start
        killed = _lose_node(nodes, "node1")
        killed_clock = time.strftime("%H:%M:%S")
        # What a node that dies mid-write leaves, named as the writers name it: a FITS copy not yet renamed and
        # a Zarr group still in staging (planted, since a write takes milliseconds of a second-long task).
        half_fits = out / "acs" / ".jdemo99q_flc_crclean.fits.0badc0de.tmp"
        half_fits.write_bytes(b"SIMPLE  =                    T")
        half_group = staging_dir(out.with_suffix(".zarr")) / "0badc0de0badc0de0badc0de0badc0de"
        half_group.mkdir(parents=True)
        (half_group / "zarr.json").write_text("{}")
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        _drain_queue(nodes)
        _bring_back(nodes)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, output[-4000:]
    assert killed, "nothing ran on node1"
    rows = _same_as_reference(archive, out)

    # The summary names the lost worker and every file whose task ran again, and why.
    lost = re.findall(r"^LOST +worker (tcp://\S+) lost at (\S+) holding (\d+) task", output, re.M)
    assert [(_node_of(nodes, w), int(held) > 0) for w, _, held in lost] == [("node1", True)], output[-4000:]
    retried = dict(re.findall(r"^RETRIED (\S+): (rescheduled: .+)$", output, re.M))
    assert retried, output[-4000:]
    # A dead host is found by the scheduler's own stream to it (no route once it is gone) or by its heartbeats.
    assert all(re.search(r"was lost at .* \((its connection closed|it missed its heartbeats)\)", why)
               for why in retried.values()), retried
    assert len(retried) <= int(lost[0][2])
    for row in rows:
        if row["path"] in retried:
            # Rerun on the node that remained, and the manifest says why.
            assert _node_of(nodes, row["worker"]) == "node2", row
            assert "rescheduled: its worker" in (row["notes"] or ""), row
    assert not half_fits.exists() and not half_group.exists()
    print(f"\nnode1 lost at {killed_at:.1f} s, {killed_clock} ({len(killed)} processes, temporary files then: "
          f"{in_flight}); "
          f"run ended at {seconds:.1f} s; local reference {archive['local_seconds']:.1f} s\n"
          + "\n".join(line for line in output.splitlines() if line.startswith(("LOST", "RETRIED"))))


def test_a_driver_killed_and_restarted_redoes_only_what_was_not_complete(nodes, archive, tmp_path):
    config = _jobqueue_yaml(tmp_path, nodes)
    out = tmp_path / "out"
    manifest = out / "manifest.sqlite"
    proc = subprocess.Popen(_archive_cmd(archive, out, config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(nodes))
    try:
        _wait_for_rows(proc, manifest, 4)
        proc.send_signal(signal.SIGKILL)  # no cleanup at all: the scheduler dies with it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {(r["path"], r["chip"]): r for r in _manifest(manifest) if r["status"] == "done"}
    done_before = {path for path, _ in before}
    stamps = {r["path"]: os.stat(r["fits_output"]).st_mtime_ns for r in before.values()}
    assert 4 <= len(done_before) < N_FILES, "the driver was not killed mid-run"
    # The orphaned workers give up on their scheduler (death-timeout) and their jobs end; the rerun's jobs
    # queue behind them, as on a real cluster.
    rerun = subprocess.run(_archive_cmd(archive, out, config), capture_output=True, text=True, timeout=600,
                           env=_env(nodes))
    _drain_queue(nodes)
    assert rerun.returncode == 0, f"{rerun.stdout[-3000:]}\n{rerun.stderr[-3000:]}"
    assert re.search(rf"already complete \| {len(done_before)} \|", rerun.stdout), rerun.stdout
    assert re.search(rf"cleaned now \| {N_FILES - len(done_before)} \|", rerun.stdout), rerun.stdout
    rows = _same_as_reference(archive, out)
    for row in rows:
        if row["path"] in done_before:  # untouched by the rerun: same row, same file
            assert row == before[(row["path"], row["chip"])]
            assert os.stat(row["fits_output"]).st_mtime_ns == stamps[row["path"]]
