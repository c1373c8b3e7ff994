"""Archive runs end to end: real FITS in, cleaned FITS + Zarr + manifest out, bad files, reruns, crashes."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import REPO, real_file, synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.demo import write_flc
from deepcr_dask.io import zarr as zarr_io
from deepcr_dask.io.fits import inspect_file, read_chip

BIT = 8192


def _flc(path: Path, seed: int, shape=(128, 192)) -> Path:
    chips = []
    for chip in range(2):
        sci, _ = synthetic_frame(shape, seed=seed * 2 + chip, n_rays=15)
        dq = np.zeros(shape, np.int16)
        dq[5, 7] = 16  # a hot pixel
        dq[:, 100] = 4 if chip else 0  # a bad column on one chip
        chips.append((sci, np.sqrt(np.abs(sci) + 25), dq))
    return write_flc(path, chips, rootname=path.stem)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def archive(tmp_path):
    """Good FLC-like files, the real WFPC2 frame, the STIS raw spectrum (skipped) and the bad files."""
    root = tmp_path / "archive"
    good = [_flc(root / "visit1" / f"jgood{i}q_flc.fits", seed=i) for i in range(3)]
    for name in ("wfpc2_u5780205r_c0f.fits", "stis_o4sp040b0_raw.fits"):
        target = root / "real" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real_file(name), target)
        good.append(target)
    good.pop()  # a raw STIS spectrum is not cleaned
    bad = {}
    data = good[0].read_bytes()
    (root / "bad").mkdir()
    bad["truncated"] = root / "bad" / "jtrunc_flc.fits"
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["text"] = root / "bad" / "notes.fits"
    bad["text"].write_text("this is not a FITS file\n")
    nan = np.full((64, 64), np.nan, np.float32)
    bad["nan"] = write_flc(root / "bad" / "jnanq_flc.fits", [(nan, nan, np.zeros((64, 64), np.int16))])
    ir = fits.PrimaryHDU()
    ir.header["INSTRUME"], ir.header["DETECTOR"] = "WFC3", "IR"
    skipped = root / "bad" / "iabc01_flt.fits"
    fits.HDUList([ir, fits.ImageHDU(np.zeros((16, 16), np.float32), name="SCI")]).writeto(skipped)
    return root, good, bad, skipped


def _check_outputs(summary, good, zarr_path, root):
    cleaner_cache = {}
    for path in good:
        info = inspect_file(path)
        relative = path.relative_to(root)
        out = Path(summary.output_dir) / relative.parent / f"{path.name.removesuffix('.fits')}_crclean.fits"
        assert out.is_file(), out
        with fits.open(out, checksum=True) as hdul:
            assert hdul[0].header["CRBIT"] == BIT and hdul[0].header["CRMODEL"] == info.model
            assert any("deepcr-dask" in str(h) for h in hdul[0].header["HISTORY"])
            for chip in info.chips:
                name = f"{relative.parent.as_posix()}/{path.name[:-5]}"
                group = zarr_io.read_chip_group(zarr_path, zarr_io.chip_group_path(name, chip.name))
                assert group["attrs"]["complete"] is True
                electrons, ignore = read_chip(path, chip)
                key = info.model
                cleaner_cache.setdefault(key, dcr.Cleaner(key, device="cpu"))
                threshold = group["attrs"]["threshold"]
                mask, cleaned = cleaner_cache[key].clean(electrons, threshold=threshold, ignore=ignore)
                np.testing.assert_array_equal(group["mask"].astype(bool), mask)
                np.testing.assert_allclose(group["cleaned"], cleaned, rtol=1e-6, equal_nan=True)
                if chip.dq_hdu is not None:
                    dq = hdul[chip.dq_hdu].data
                    np.testing.assert_array_equal((dq & BIT) != 0, mask)
                else:
                    crmask = hdul["CRMASK", int("".join(c for c in chip.name if c.isdigit()))].data
                    np.testing.assert_array_equal(crmask.astype(bool), mask)
                sci = hdul[chip.hdu].data if chip.plane is None else hdul[chip.hdu].data[chip.plane]
                np.testing.assert_allclose(sci * chip.factor, cleaned, rtol=1e-5, equal_nan=True)


def test_archive_run_outputs_failures_and_rerun(archive, tmp_path, client):
    root, good, bad, skipped = archive
    inputs = sorted(p for p in root.rglob("*") if p.is_file())
    before = {p: _sha(p) for p in inputs}
    out, store = tmp_path / "out", tmp_path / "out.zarr"
    summary = dcr.process_archive(root, out, zarr_path=store, cluster=client, progress=False)

    assert sorted(summary.done) == sorted(str(p.resolve()) for p in good)
    assert set(summary.failed) == {str(p.resolve()) for p in bad.values()}
    assert summary.exit_code == 1
    for reason in summary.failed.values():
        assert "\n" not in reason
    assert "no finite pixels" in summary.failed[str(bad["nan"].resolve())]
    assert "not a readable FITS" in summary.failed[str(bad["text"].resolve())]
    assert "up-the-ramp" in summary.skipped[str(skipped.resolve())]
    assert "spectrum" in summary.skipped[str((root / "real" / "stis_o4sp040b0_raw.fits").resolve())]
    assert {p: _sha(p) for p in inputs} == before  # inputs untouched
    _check_outputs(summary, good, store, root)
    rows = sqlite3.connect(out / "manifest.sqlite").execute("SELECT status, count(*) FROM chips GROUP BY status")
    assert dict(rows.fetchall()) == {"done": 3 * 2 + 4, "failed": 3, "skipped": 2}

    # Rerun: nothing is recomputed and outputs stay byte-identical.
    outputs = {p: _sha(p) for p in out.rglob("*_crclean.fits")}
    again = dcr.process_archive(root, out, zarr_path=store, cluster=client, progress=False)
    assert again.done == []
    skips = [str(skipped.resolve()), str((root / "real" / "stis_o4sp040b0_raw.fits").resolve())]
    assert sorted(again.already_done) == sorted([str(p.resolve()) for p in good] + skips)
    assert set(again.failed) == set(summary.failed)  # bad files are tried again, and fail again
    assert {p: _sha(p) for p in out.rglob("*_crclean.fits")} == outputs


def test_cli_archive_killed_then_resumed(tmp_path):
    root = tmp_path / "archive"
    files = [_flc(root / f"jkill{i:02d}q_flc.fits", seed=100 + i, shape=(256, 512)) for i in range(10)]
    out, store = tmp_path / "out", tmp_path / "out.zarr"
    cmd = [sys.executable, "-m", "deepcr_dask.cli", "archive", str(root), "-o", str(out), "--zarr", str(store),
           "--workers", "1", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    manifest = out / "manifest.sqlite"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            done = sqlite3.connect(manifest, timeout=1).execute(
                "SELECT count(DISTINCT path) FROM chips WHERE status='done'").fetchone()[0]
        except sqlite3.Error:
            continue
        if done >= 3:
            break
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # the driver
    proc.wait()
    time.sleep(1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # and its orphaned local workers
    except ProcessLookupError:
        pass
    assert 3 <= done < len(files)

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    complete = re.search(r"\| already complete \| (\d+) \|", rerun.stdout)
    assert complete and int(complete.group(1)) >= 3
    outputs = sorted(out.glob("*.fits"))
    assert [p.name for p in outputs] == sorted(f"{f.name[:-5]}_crclean.fits" for f in files)
    staging = zarr_io.staging_dir(store)
    assert not list(out.glob(".*.tmp")) and not (store / ".tmp").exists()
    assert not staging.exists() or not any(staging.iterdir())
    for f in files:
        with fits.open(out / f"{f.name[:-5]}_crclean.fits", checksum=True) as hdul:
            assert hdul["SCI", 1].data.shape == (256, 512)
        for chip in ("SCI_1", "SCI_2"):
            assert zarr_io.is_complete(store, f"{f.name[:-5]}/{chip}")


def test_worker_killed_during_run_still_completes(tmp_path, client):
    root = tmp_path / "archive"
    files = [_flc(root / f"jwork{i:02d}q_flc.fits", seed=200 + i, shape=(256, 512)) for i in range(8)]
    out = tmp_path / "out"
    result = {}
    thread = threading.Thread(target=lambda: result.update(s=dcr.process_archive(root, out, cluster=client,
                                                                                progress=False)))
    thread.start()
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and thread.is_alive():
        busy = [w for w, keys in client.processing().items() if any("deepcr-" in str(k) for k in keys)]
        if busy:
            victim = busy[0]
        time.sleep(0.05)
    assert victim is not None
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=600)
    summary = result["s"]
    assert len(summary.done) == len(files) and not summary.failed
    for f in files:
        with fits.open(out / f"{f.name[:-5]}_crclean.fits", checksum=True) as hdul:
            assert "CRNPIX" in hdul[0].header
    client.wait_for_workers(2, timeout=120)


def test_archive_fpr_uses_each_models_recorded_threshold(tmp_path, client, deepcr_module):
    from deepcr_dask.models.thresholds import fpr_thresholds
    from deepcr_dask.models.zoo import get_spec

    root = tmp_path / "in"
    _flc(root / "jfpr01q_flc.fits", seed=11)
    summary = dcr.process_archive(root, tmp_path / "out", cluster=client, fpr=5e-4, device="cpu", progress=False)
    assert len(summary.done) == 1, summary.table()
    expected = fpr_thresholds(get_spec("ACS-WFC", "mask"))[5e-4]
    with fits.open(tmp_path / "out" / "jfpr01q_flc_crclean.fits") as hdul:
        assert hdul[0].header["CRMODEL"] == "ACS-WFC"
        assert hdul[0].header["CRTHRESH"] == pytest.approx(expected, rel=1e-12)
    wrong = dcr.process_archive(root, tmp_path / "out2", cluster=client, fpr=1e-3, device="cpu", progress=False)
    assert len(wrong.failed) == 1 and "no threshold for FPR 0.001" in wrong.table()


def test_every_zarr_group_opens_in_xarray_with_the_chips_wcs(tmp_path, client):
    """Plain zarr sees only chip groups; xarray opens every one without warnings; the WCS in its attributes
    gives the FITS file's sky coordinates at the dataset's pixel coordinates."""
    import warnings

    xr = pytest.importorskip("xarray")
    import zarr
    from astropy.wcs import WCS

    files = []
    for i in range(2):
        path = _flc(tmp_path / "in" / f"jwcs0{i}q_flc.fits", seed=20 + i)
        with fits.open(path, mode="update") as hdul:
            for ver in (1, 2):
                h = hdul["SCI", ver].header
                h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
                h["CRVAL1"], h["CRVAL2"] = 10.0 + 0.3 * i + 0.05 * ver, -30.0
                h["CRPIX1"], h["CRPIX2"] = 96.0, 64.0
                h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -1.3e-5, 2e-7, 2e-7, 1.4e-5
        files.append(path)
    store = tmp_path / "out.zarr"
    summary = dcr.process_archive(tmp_path / "in", tmp_path / "out", zarr_path=store, cluster=client, progress=False)
    assert len(summary.done) == 2, summary.table()
    assert not zarr_io.staging_dir(store).exists() or not any(zarr_io.staging_dir(store).iterdir())
    top = zarr.open_group(str(store), mode="r")
    assert sorted(name for name, _ in top.members()) == ["jwcs00q_flc", "jwcs01q_flc"]  # nothing stray
    for path in files:
        for chip in inspect_file(path).chips:
            group = zarr_io.chip_group_path(path.name.removesuffix(".fits"), chip.name)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                ds = xr.open_zarr(str(store), group=group, consolidated=False)
            assert ds["cleaned"].dims == ("y", "x") and ds["mask"].dims == ("y", "x")
            assert ds["cleaned"].attrs["units"] == "electron" and ds.attrs["complete"] is True
            header = fits.Header.fromstring(ds.attrs["fits_header"], sep="\n")
            assert header["EXTNAME"] == "SCI" and header["INSTRUME"] == "ACS"
            with fits.open(path) as hdul:
                truth = WCS(hdul[chip.hdu].header)
            stored = WCS(fits.Header(ds.attrs["wcs"]))
            for y, x in ((0, 0), (17, 101), (127, 191)):
                a = stored.pixel_to_world(int(ds.x[x]), int(ds.y[y]))
                b = truth.pixel_to_world(x, y)
                assert a.separation(b).arcsec < 1e-9
            stored_mask = zarr_io.read_chip_group(store, group)["mask"]
            np.testing.assert_array_equal(ds["mask"].values, stored_mask)
