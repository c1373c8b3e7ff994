"""Shared fixtures: real frames from ../shared/data/real (skipped with a reason when absent).

``DEEPCR_DASK_TEST_ONEDNN=0`` switches oneDNN off in the test process, for deepCR and the Cleaner alike:
the portable path a torch without oneDNN runs (``.ci/run`` runs the exactness tests so).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("DEEPCR_DASK_TEST_ONEDNN", "1") == "0":
    import torch

    torch.backends.mkldnn.enabled = False

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("DEEPCR_DASK_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


@pytest.fixture(scope="module")
def client():
    """A real local Dask cluster (two worker processes, one thread each) per test module."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster) as c:
            yield c


def files_done(manifest: Path) -> int:
    """Files a running archive has recorded as done (read-only, beside the driver writing it); 0 before it exists."""
    import sqlite3

    if not Path(manifest).exists():
        return 0
    try:
        with sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(DISTINCT path) FROM chips WHERE status = 'done'").fetchone()[0]
    except sqlite3.Error:  # the driver is creating it
        return 0


def archive_outcome(summary, path: Path) -> str:
    """What an archive run did to one file: failed, skipped:<product type>, not-fits, suspect, done or missing."""
    key = str(path)
    if key in summary.failed:
        return "failed"
    if key in summary.skipped:
        return f"skipped:{summary.skipped_kinds[key]}"
    if key in summary.not_fits:
        return "not-fits"
    return "suspect" if key in summary.suspect else "done" if key in summary.done else "missing"


def real_file(name: str) -> Path:
    """Path of a real frame, or skip the test saying where it was looked for."""
    path = REAL_DATA / name
    if not path.is_file():
        pytest.skip(f"real frame {name} not found in {REAL_DATA} (set DEEPCR_DASK_REAL_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def deepcr_module():
    """deepCR 0.3.1, the reference implementation (skip if not installed)."""
    pytest.importorskip("matplotlib", reason="deepCR imports matplotlib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deepcr = pytest.importorskip("deepCR", reason="deepCR 0.3.1 is the reference; pip install deepcr")
    return deepcr


def synthetic_frame(shape=(256, 256), seed=0, sky=100.0, n_rays=12) -> tuple[np.ndarray, np.ndarray]:
    """A small electrons frame with stars and cosmic-ray streaks; returns (image, true CR mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, sky, np.float64)
    for _ in range(max(1, shape[0] * shape[1] // 4000)):
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        image += rng.uniform(200, 5000) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
    image = rng.poisson(image).astype(np.float64) + rng.normal(0, 5, shape)
    truth = np.zeros(shape, bool)
    for _ in range(n_rays):
        y, x = rng.integers(5, shape[0] - 5), rng.integers(5, shape[1] - 5)
        length, angle = rng.integers(1, 8), rng.uniform(0, np.pi)
        for t in range(length):
            yi, xi = round(y + t * np.sin(angle)), round(x + t * np.cos(angle))
            if 0 <= yi < shape[0] and 0 <= xi < shape[1]:
                image[yi, xi] += rng.uniform(300, 3000)
                truth[yi, xi] = True
    return image.astype(np.float32), truth
