"""A worker process killed mid-run on a real local cluster: its tasks run again elsewhere and the run says so.

The multi-node version (a whole SLURM node lost) is in test_multinode.py; this one needs no SLURM and no
network namespaces, so it runs everywhere.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest
from conftest import files_done

from deepcr_dask.archive import process_archive
from deepcr_dask.demo import make_demo_archive
from deepcr_dask.distributed.workers import worker_address

pytestmark = pytest.mark.slow


def test_a_killed_worker_s_tasks_are_rescheduled_and_reported(tmp_path):
    from distributed import Client, LocalCluster

    files = make_demo_archive(tmp_path / "in", n_files=8, shape=(512, 512), include_real=False)
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)
        victim, victim_pid = sorted(pids.items())[0]
        result = {}
        run = threading.Thread(target=lambda: result.update(summary=process_archive(
            tmp_path / "in", out, zarr_path=tmp_path / "out.zarr", cluster=client, progress=False)))
        run.start()
        deadline = time.monotonic() + 240
        while files_done(out / "manifest.sqlite") < 2 and run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert run.is_alive(), "the run ended before the worker could be killed"
        os.kill(victim_pid, signal.SIGKILL)  # the nanny starts a new worker; the scheduler reschedules
        run.join(timeout=300)
    summary = result["summary"]
    assert summary.exit_code == 0 and sorted(summary.done) == sorted(map(str, files))
    assert len(summary.lost_workers) == 1 and summary.lost_workers[0].startswith(victim), summary.lost_workers
    held = int(summary.lost_workers[0].split(" holding ")[1].split()[0])
    assert 1 <= len(summary.retried) <= held
    assert all(f"its worker {victim} was lost at" in why and "(its connection closed)" in why
               for why in summary.retried.values()), summary.retried
    table = summary.table()
    assert f"LOST    worker {victim} lost at" in table
    assert f"| rescheduled after losing a worker (counted above) | {len(summary.retried)} |" in table
    with sqlite3.connect(out / "manifest.sqlite") as db:
        rows = db.execute("SELECT path, chip, status, worker, notes FROM chips").fetchall()
    assert len(rows) == 2 * len(files) and {r[2] for r in rows} == {"done"}
    for path, _, _, worker, notes in rows:
        assert worker.startswith("tcp://")
        assert ("rescheduled: its worker" in (notes or "")) == (path in summary.retried)
        if path in summary.retried:
            assert worker != victim  # cleaned by a worker that was alive
    assert not list(out.rglob("*.tmp"))


def test_a_run_without_losses_reports_none(tmp_path, client):
    make_demo_archive(tmp_path / "in", n_files=2, shape=(256, 256), include_real=False)
    summary = process_archive(tmp_path / "in", tmp_path / "out", cluster=client, progress=False)
    assert summary.exit_code == 0 and summary.lost_workers == [] and summary.retried == {}
    assert "LOST" not in summary.table() and "rescheduled" not in summary.table()
    with sqlite3.connect(tmp_path / "out" / "manifest.sqlite") as db:
        workers = {w for (w,) in db.execute("SELECT worker FROM chips")}
    assert workers <= set(client.scheduler_info()["workers"]) and workers


def test_worker_address_outside_a_worker():
    assert worker_address() == "in-process"
