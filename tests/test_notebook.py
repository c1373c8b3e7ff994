"""workflows/archive_dashboard.ipynb runs headless (nbclient) on a tiny demo archive and leaves real outputs.

The notebook runs in a fresh kernel of this interpreter (a kernelspec written to a temporary JUPYTER_PATH,
so whatever ``python3`` kernel the machine has cannot be picked instead), in a temporary folder, with its
parameters overridden through the ``DEEPCR_DASK_NB_*`` environment variables its first cell reads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
import time
from contextlib import closing

import pytest
from conftest import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = REPO / "workflows" / "archive_dashboard.ipynb"
KERNEL = "deepcr-dask-notebook-test"
N_FILES = 2
WIDGET = "application/vnd.jupyter.widget-view+json"


def _tagged(nb, tag: str):
    cells = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _mime_types(cell) -> set[str]:
    return {mime for out in cell.get("outputs", []) for mime in out.get("data", {})}


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "clear the notebook's outputs before saving"
    assert "parameters" in nb.cells[1].metadata.get("tags", []), "the parameters cell comes first, after the title"


@pytest.fixture
def kernel_name(tmp_path_factory, monkeypatch) -> str:
    """A kernelspec running this interpreter, found first through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "deepcr-dask test kernel",
        "language": "python",
    }))
    previous = os.environ.get("JUPYTER_PATH")
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(root), *([previous] if previous else [])]))
    return KERNEL


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_archive_dashboard_notebook_runs_headless(tmp_path, kernel_name, monkeypatch):
    work = tmp_path / "run"
    work.mkdir()
    for name, value in (("OUTPUT", "nb-out"), ("FILES", str(N_FILES)), ("SHAPE", "128,256"), ("WORKERS", "2"),
                        ("REAL", "0"), ("SEED", "3")):
        monkeypatch.setenv(f"DEEPCR_DASK_NB_{name}", value)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # the notebook must still give inline PNGs (it asks for them)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel_name, timeout=300, startup_timeout=120,
                                     resources={"metadata": {"path": str(work)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"the notebook failed:\n{exc}")
    elapsed = time.perf_counter() - start
    print(f"notebook executed in {elapsed:.1f} s")

    errors = [out for c in nb.cells for out in c.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors

    # Outputs on disk: one cleaned FITS per input (mirroring the input tree), every chip done in the manifest,
    # a Zarr group per chip.
    out = work / "nb-out"
    cleaned = sorted((out / "cleaned").rglob("*_crclean.fits"))
    assert [p.relative_to(out / "cleaned").as_posix() for p in cleaned] == \
        [f"acs/jdemo{i:02d}q_flc_crclean.fits" for i in range(N_FILES)]
    with closing(sqlite3.connect(out / "cleaned" / "manifest.sqlite")) as db:
        rows = db.execute("SELECT path, chip, status, cr_pixels, zarr_group FROM chips").fetchall()
    assert len(rows) == 2 * N_FILES
    assert {status for _, _, status, _, _ in rows} == {"done"}
    assert all(cr_pixels > 0 for *_, cr_pixels, _ in rows), rows
    assert all((out / "cleaned.zarr" / group / "zarr.json").is_file() for *_, group in rows)

    # What the reader sees: the dashboard link, a progress bar, the summary, the manifest table and two plots.
    dashboard = _tagged(nb, "dashboard")
    assert "text/html" in _mime_types(dashboard) and "http://" in _text(dashboard)
    run = _tagged(nb, "run")
    assert "cleaned now | 2" in _text(run)
    if importlib.util.find_spec("ipywidgets") is not None:
        assert WIDGET in _mime_types(run), "tqdm.auto should give a live progress widget in a kernel"
    assert "jdemo01q_flc.fits" in _text(_tagged(nb, "manifest"))
    for tag in ("plot-cr-fractions", "plot-cutout"):
        assert "image/png" in _mime_types(_tagged(nb, tag)), f"cell {tag!r} drew no figure"
    assert "cleaned FITS and manifest" in _text(_tagged(nb, "close"))
