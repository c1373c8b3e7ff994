"""A MAST-like archive directory end to end: every product gets the right outcome, outputs mirror the inputs,
no chip is suspect with the default models, a worker-killing file fails alone, GPU tasks go to GPU workers."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import dask
import numpy as np
import pytest
from astropy.io import fits
from conftest import archive_outcome, real_file
from distributed import Client, LocalCluster, Nanny
from test_products import write_hst

import deepcr_dask as dcr
from deepcr_dask.archive.pipeline import CleanOptions
from deepcr_dask.distributed.engine import load_count
from deepcr_dask.sim import simulate_group


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(name: str, target: Path, **header) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_file(name), target)
    if header:
        with fits.open(target, mode="update") as hdul:
            hdul[0].header.update(header)
    return target


def _stis_pair(path: Path) -> Path:
    """A STIS CCD imaging FLT holding a CR-SPLIT pair (two imsets of one simulated scene), HST layout."""
    group = simulate_group((96, 128), "WFPC2", 300.0, seed=5, field="globular", n_exposures=2)
    write_hst(path, instrument="STIS", detector="CCD", chips=2, shape=(96, 128), extra={"CRSPLIT": 2})
    with fits.open(path, mode="update") as hdul:
        for k, sample in enumerate(group):
            hdul["SCI", k + 1].data = sample.image
            hdul["SCI", k + 1].header["EXPTIME"] = 300.0
    return path


@pytest.fixture(scope="module")
def mast(tmp_path_factory):
    """Real frames where we have them, generated support files with HST's header layouts, and the outcome
    each file must get."""
    root = tmp_path_factory.mktemp("mast") / "archive"
    expect = {}
    hrc = _copy("acs_hrc_j8bt06nyq_flt.fits", root / "visit1" / "j8bt06nyq_flt.fits")
    expect[hrc] = "done"  # the generic model flags 0.25% of 47 Tuc in 60 s, not its star cores: the gates pass it
    twin = _copy("acs_hrc_j8bt06nyq_flt.fits", root / "visit2" / "j8bt06nyq_flt.fits", ROOTNAME="j8bt07nyq")
    expect[twin] = "done"  # the same name in another visit: its own outputs
    expect[write_hst(root / "visit1" / "j8bt06nyq_raw.fits", detector="HRC",
                     switches={"BIASCORR": "PERFORM", "FLATCORR": "PERFORM"})] = "skipped:raw"
    expect[write_hst(root / "visit1" / "j8bt06010_asn.fits", filetype="ASN_TABLE", table=True)] = "skipped:table"
    expect[write_hst(root / "visit1" / "j8bt06nyq_spt.fits", filetype="SPT")] = "skipped:table"
    expect[write_hst(root / "visit1" / "j8bt06010_drz.fits", switches={"DRIZCORR": "COMPLETE"})] = "skipped:combined"
    expect[_copy("stis_o4sp040b0_raw.fits", root / "stis" / "o4sp040b0_raw.fits")] = "skipped:spectrum"
    expect[write_hst(root / "stis" / "o4sp040b0_crj.fits", instrument="STIS", detector="CCD",
                     extra={"NCOMBINE": 2})] = "skipped:combined"
    expect[_stis_pair(root / "stis" / "o4sp050b0_flt.fits")] = "done"
    omega = _copy("wfpc2_u40x010hm_c0f.fits", root / "wfpc2" / "u40x010hm_c0f.fits")
    expect[omega] = "done"  # the WFPC2 model leaves Omega Cen's undersampled star cores alone
    expect[_copy("wfpc2_u40x010hm_c1f.fits", root / "wfpc2" / "u40x010hm_c1f.fits")] = "skipped:dq"
    expect[_copy("wfpc2_u5780205r_c0f.fits", root / "wfpc2" / "u5780205r_c0f.fits")] = "done"
    expect[write_hst(root / "ir" / "ib1f01abq_flt.fits", instrument="WFC3", detector="IR")] = "skipped:up-the-ramp"
    expect[_copy("saao_a8280271.fits", root / "ground" / "a8280271.fits")] = "done"
    expect[_copy("gmos_S20190808S0048_cutout.fits", root / "ground" / "S20190808S0048.fits")] = "done"
    return root, {p.resolve(): outcome for p, outcome in expect.items()}


def test_a_mast_like_directory(mast, tmp_path, client):
    root, expect = mast
    inputs = {p: _sha(p) for p in root.rglob("*") if p.is_file()}
    out, store = tmp_path / "out", tmp_path / "out.zarr"
    summary = dcr.process_archive(root, out, zarr_path=store, cluster=client, progress=False, probability=True)
    assert {p: archive_outcome(summary, p) for p in expect} == expect
    assert summary.exit_code == 0 and not summary.failed
    assert {p: _sha(p) for p in inputs} == inputs  # inputs byte-identical

    # Outputs mirror the input tree; only cleaned files have one; the same name in two visits does not collide.
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*_crclean.fits"))
    assert written == sorted(p.relative_to(root).parent.joinpath(p.name.replace(".fits", "_crclean.fits"))
                             .as_posix() for p, o in expect.items() if o in ("done", "suspect"))
    assert _sha(out / "visit1" / "j8bt06nyq_flt_crclean.fits") != _sha(root / "visit1" / "j8bt06nyq_flt.fits")
    rows = sqlite3.connect(out / "manifest.sqlite").execute(
        "SELECT path, chip, status, error, group_name, zarr_group FROM chips").fetchall()
    by_chip = {(Path(p).name, c): (s, e, g, z) for p, c, s, e, g, z in rows}
    twins = {Path(p).parent.name: z for p, c, *_, z in rows if Path(p).name == "j8bt06nyq_flt.fits"}
    assert twins == {"visit1": "visit1/j8bt06nyq_flt/SCI_1", "visit2": "visit2/j8bt06nyq_flt/SCI_1"}

    # WFPC2 c0f with its c1f: the c1f's bad pixels are never flagged; with the default WFPC2 model the WF chips
    # pass the gates (0.1-0.3% flagged, about a 100 s exposure's cosmic rays) and only flagged pixels change.
    omega_out = out / "wfpc2" / "u40x010hm_c0f_crclean.fits"
    with fits.open(omega_out) as cleaned, fits.open(root / "wfpc2" / "u40x010hm_c0f.fits") as raw, \
            fits.open(root / "wfpc2" / "u40x010hm_c1f.fits") as dq:
        for plane in range(4):
            mask = cleaned["CRMASK", plane + 1].data.astype(bool)
            bad = (dq[0].data[plane].astype(np.int64) & CleanOptions().ignore_bits) != 0
            assert bad.any() and not (mask & bad).any()
            if plane > 0:  # WF2-4
                status, reasons, *_ = by_chip[("u40x010hm_c0f.fits", f"CHIP{plane + 1}")]
                assert status == "done" and not reasons and 5e-4 < mask.mean() < 5e-3
                changed = cleaned[0].data[plane] != raw[0].data[plane]
                assert changed.any() and not (changed & ~mask).any()
    # The STIS imsets were cleaned together.
    status, _, group, _ = by_chip[("o4sp050b0_flt.fits", "SCI,2")]
    assert status == "done" and "imsets" in group
    # Every outcome is listed; with the default models no chip here is suspect (tests/test_pipeline.py and
    # tests/test_gates.py catch suspect chips).
    table = summary.table()
    assert not summary.suspect and "SKIPPED" in table and "u40x010hm_c1f.fits" in table


def test_output_folder_equal_to_the_input_folder(mast, tmp_path, client):
    root, expect = mast
    work = tmp_path / "work"
    shutil.copytree(root, work)
    first = dcr.process_archive(work, work, cluster=client, progress=False)
    cleaned = [p for p, o in expect.items() if o in ("done", "suspect")]
    assert len(first.done) == len(cleaned) and not first.failed
    assert len(list(work.rglob("*_crclean.fits"))) == len(cleaned)
    again = dcr.process_archive(work, work, cluster=client, progress=False)
    assert again.done == [] and len(again.already_done) == len(expect)  # outputs are never inputs
    inside = dcr.process_archive(work, work / "out", cluster=client, progress=False)  # -o inside the input
    assert len(inside.done) == len(cleaned)
    assert dcr.process_archive(work, work / "out", cluster=client, progress=False).done == []


def test_a_new_version_or_new_weights_redo_the_work(tmp_path, client):
    folder = tmp_path / "in"
    _copy("gmos_S20190808S0048_cutout.fits", folder / "S20190808S0048.fits")
    out = tmp_path / "out"
    assert dcr.process_archive(folder, out, cluster=client, progress=False).done
    assert dcr.process_archive(folder, out, cluster=client, progress=False).already_done
    with sqlite3.connect(out / "manifest.sqlite") as db:
        db.execute("UPDATE chips SET version = '0.0.1'")
    assert dcr.process_archive(folder, out, cluster=client, progress=False).done
    with sqlite3.connect(out / "manifest.sqlite") as db:
        db.execute("UPDATE chips SET weight_hash = 'other-weights'")
    assert dcr.process_archive(folder, out, cluster=client, progress=False).done


def _huge_flt(path: Path, shape=(7600, 7600)) -> Path:
    """An FLT whose 7600x7600 float64 SCI (441 MB, sparse on disk) is more than its worker may hold."""
    header = fits.Header()
    header.update({"SIMPLE": True, "BITPIX": 8, "NAXIS": 0, "EXTEND": True, "TELESCOP": "HST", "INSTRUME": "ACS",
                   "DETECTOR": "WFC", "FILETYPE": "SCI", "EXPTIME": 100.0})
    sci = fits.Header({"XTENSION": "IMAGE", "BITPIX": -64, "NAXIS": 2, "NAXIS1": shape[1], "NAXIS2": shape[0],
                       "PCOUNT": 0, "GCOUNT": 1, "EXTNAME": "SCI", "EXTVER": 1, "BUNIT": "ELECTRONS"})
    with open(path, "wb") as handle:
        handle.write(header.tostring().encode())
        handle.write(sci.tostring().encode())
        data_bytes = shape[0] * shape[1] * 8
        handle.truncate(handle.tell() + data_bytes + (-data_bytes % 2880))
    return path


def test_a_file_that_kills_its_worker_fails_alone(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = [_copy("gmos_S20190808S0048_cutout.fits", folder / f"g{i}.fits") for i in range(3)]
    huge = _huge_flt(folder / "jhuge01q_flt.fits")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="900MiB",
                         dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as small:
        summary = dcr.process_archive(folder, tmp_path / "out", cluster=small, progress=False)
    assert set(summary.done) == {str(p.resolve()) for p in good}
    assert list(summary.failed) == [str(huge.resolve())]
    assert "worker died" in summary.failed[str(huge.resolve())] and summary.exit_code == 1
    rows = sqlite3.connect(tmp_path / "out" / "manifest.sqlite").execute(
        "SELECT status, count(*) FROM chips GROUP BY status").fetchall()
    assert dict(rows) == {"done": 3, "failed": 1}


def test_model_tasks_ask_for_the_gpu_where_workers_have_one(tmp_path):
    """One worker advertises GPU=1, the other none: every cleaning task runs on the GPU worker (here it
    computes on its CPU), and the other never loads a model."""
    folder = tmp_path / "in"
    for i in range(3):
        _copy("gmos_S20190808S0048_cutout.fits", folder / f"g{i}.fits")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources={"GPU": 1},
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as c:
        cluster.worker_spec["cpu-only"] = {"cls": Nanny, "options": {"nthreads": 1}}
        cluster.sync(cluster._correct_state)
        c.wait_for_workers(2, timeout=120)
        summary = dcr.process_archive(folder, tmp_path / "out", cluster=c, progress=False, device="cpu")
        loads = c.run(load_count)
        resources = {a: w.get("resources", {}) for a, w in c.scheduler_info()["workers"].items()}
    assert len(summary.done) == 3
    assert {resources[a].get("GPU", 0): n > 0 for a, n in loads.items()} == {1: True, 0: False}
