"""Archive runs on an object store: a real S3-compatible server (moto, server mode) on loopback.

The server checks signatures (IAM on), so refused credentials are the server's answer, not a stand-in.
Credentials and the endpoint reach s3fs, astropy and the Dask workers through the usual AWS environment
variables only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import synthetic_frame

pytest.importorskip("moto", reason="moto (server mode) is in the test extras")
s3fs = pytest.importorskip("s3fs", reason="s3fs is in the test extras")

import deepcr_dask as dcr  # noqa: E402
from deepcr_dask.demo import write_flc  # noqa: E402
from deepcr_dask.errors import InputError  # noqa: E402
from deepcr_dask.io.fits import inspect_file, read_chip  # noqa: E402
from deepcr_dask.io.zarr import chip_group_path  # noqa: E402

BIT = 8192


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with signature checks on, an IAM user for it, and its environment."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The first three calls (user, key, policy attachment) are allowed unsigned; everything after is checked.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the moto server did not start")
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="astronomer")
        key = iam.create_access_key(UserName="astronomer")["AccessKey"]
        policy = iam.create_policy(PolicyName="buckets", PolicyDocument='{"Version": "2012-10-17", "Statement": '
                                   '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}')
        iam.attach_user_policy(UserName="astronomer", PolicyArn=policy["Policy"]["Arn"])
        saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                "AWS_DEFAULT_REGION", "XDG_CACHE_HOME")}
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=key["AccessKeyId"],
                          AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"], AWS_DEFAULT_REGION="us-east-1",
                          XDG_CACHE_HOME=str(tmp_path_factory.mktemp("cache")))
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        for bucket in ("raw-frames", "cleaned-frames"):
            fs.mkdir(bucket)
        yield fs
    finally:
        server.terminate()
        server.wait(timeout=30)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def client(s3):
    """Workers started after the environment is set, so they see the same store."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster) as c:
            yield c


def _flc(path: Path, seed: int, shape=(128, 160)) -> Path:
    chips = []
    for chip in range(2):
        sci, _ = synthetic_frame(shape, seed=seed * 2 + chip, n_rays=12)
        chips.append((sci, np.sqrt(np.abs(sci) + 25), np.zeros(shape, np.int16)))
    return write_flc(path, chips, rootname=path.stem)


def _upload_archive(s3, tmp_path: Path) -> dict[str, Path]:
    """Two visits with a file of the same name each, and a file that is not FITS."""
    local = {}
    for visit, seed in (("visit1", 1), ("visit2", 2)):
        path = _flc(tmp_path / "src" / visit / "jsame01q_flc.fits", seed=seed)
        key = f"raw-frames/cycle7/{visit}/jsame01q_flc.fits"
        s3.put_file(str(path), key)
        local[f"s3://{key}"] = path
    s3.pipe("raw-frames/cycle7/bad/notes.fits", b"not a FITS file\n")
    return local


def test_archive_bucket_to_bucket_with_rerun(s3, client, tmp_path):
    import xarray as xr

    local = _upload_archive(s3, tmp_path)
    before = {key: s3.info(key)["ETag"] for key in s3.find("raw-frames")}
    summary = dcr.process_archive("s3://raw-frames/cycle7", "s3://cleaned-frames/run1",
                                  zarr_path="s3://cleaned-frames/run1/masks.zarr", cluster=client, progress=False)
    assert sorted(summary.done) == sorted(local)
    assert list(summary.failed) == ["s3://raw-frames/cycle7/bad/notes.fits"]
    assert "not a readable FITS file" in summary.failed["s3://raw-frames/cycle7/bad/notes.fits"]
    # The manifest is local, named after the output URL; inputs are untouched.
    assert Path(summary.manifest_path).is_file()
    assert Path(summary.manifest_path).is_relative_to(os.environ["XDG_CACHE_HOME"])
    assert {key: s3.info(key)["ETag"] for key in s3.find("raw-frames")} == before

    s3.invalidate_cache()
    written = sorted(s3.find("cleaned-frames/run1"))
    for visit in ("visit1", "visit2"):
        assert f"cleaned-frames/run1/{visit}/jsame01q_flc_crclean.fits" in written
    assert not [k for k in written if k.rpartition("/")[2].startswith(".") or "staging" in k]

    for url, path in local.items():
        visit = url.split("/")[-2]
        info = inspect_file(path)
        with s3.open(f"cleaned-frames/run1/{visit}/jsame01q_flc_crclean.fits", "rb") as handle:
            with fits.open(handle) as hdul:
                for chip in info.chips:
                    group = chip_group_path(f"{visit}/jsame01q_flc", chip.name)
                    ds = xr.open_zarr("s3://cleaned-frames/run1/masks.zarr", group=group, consolidated=False)
                    assert ds.attrs["source"] == url and ds.attrs["complete"] is True
                    electrons, ignore = read_chip(path, chip)
                    mask, _ = dcr.Cleaner(info.model, device="cpu").clean(electrons, threshold=ds.attrs["threshold"],
                                                                          ignore=ignore)
                    assert mask.sum() > 0
                    np.testing.assert_array_equal(ds["mask"].values.astype(bool), mask)
                    np.testing.assert_array_equal((hdul[chip.dq_hdu].data & BIT) != 0, mask)

    stamps = {k: s3.info(k)["LastModified"] for k in written}
    again = dcr.process_archive("s3://raw-frames/cycle7", "s3://cleaned-frames/run1",
                                zarr_path="s3://cleaned-frames/run1/masks.zarr", cluster=client, progress=False)
    assert sorted(again.already_done) == sorted(local) and not again.done
    s3.invalidate_cache()
    assert {k: s3.info(k)["LastModified"] for k in s3.find("cleaned-frames/run1")} == stamps

    # An output that went missing from the bucket is written again; the other file stays done.
    s3.rm("cleaned-frames/run1/visit2/jsame01q_flc_crclean.fits")
    third = dcr.process_archive("s3://raw-frames/cycle7", "s3://cleaned-frames/run1",
                                zarr_path="s3://cleaned-frames/run1/masks.zarr", cluster=client, progress=False)
    assert third.done == ["s3://raw-frames/cycle7/visit2/jsame01q_flc.fits"]
    assert s3.exists("cleaned-frames/run1/visit2/jsame01q_flc_crclean.fits")


def test_local_inputs_to_a_bucket_and_back(s3, client, tmp_path):
    """Local files cleaned into a bucket, then those cleaned copies' bucket read as inputs to a local folder."""
    path = _flc(tmp_path / "in" / "jlocal1q_flc.fits", seed=5)
    summary = dcr.process_archive(tmp_path / "in", "s3://cleaned-frames/from-local", cluster=client, progress=False,
                                  manifest=tmp_path / "m.sqlite")
    assert summary.done == [str(path.resolve())]
    s3.invalidate_cache()
    assert s3.exists("cleaned-frames/from-local/jlocal1q_flc_crclean.fits")
    s3.put_file(str(path), "raw-frames/single/jlocal1q_flc.fits")
    back = dcr.process_archive("s3://raw-frames/single/jlocal1q_flc.fits", tmp_path / "out", cluster=client,
                               progress=False)
    out = tmp_path / "out" / "jlocal1q_flc_crclean.fits"
    assert back.done == ["s3://raw-frames/single/jlocal1q_flc.fits"] and out.is_file()
    with fits.open(out) as mine, s3.open("cleaned-frames/from-local/jlocal1q_flc_crclean.fits", "rb") as handle:
        with fits.open(handle) as theirs:
            np.testing.assert_array_equal(mine["DQ", 1].data, theirs["DQ", 1].data)
            np.testing.assert_array_equal(mine["SCI", 2].data, theirs["SCI", 2].data)


def test_missing_bucket_is_one_line(s3, tmp_path):
    with pytest.raises(InputError, match=r"^s3://no-such-bucket/x: no such bucket, file or folder"):
        dcr.process_archive("s3://no-such-bucket/x", tmp_path / "out", cluster="local", progress=False)
    with pytest.raises(InputError, match=r"^s3://no-such-output-bucket/run: no such bucket"):
        dcr.process_archive(tmp_path, "s3://no-such-output-bucket/run", cluster="local", progress=False)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepcr_dask.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_cli_bad_credentials_and_missing_bucket(s3, tmp_path):
    s3.pipe("raw-frames/creds/jx_flc.fits", b"x")
    bad = _cli("archive", "s3://raw-frames/creds", "-o", str(tmp_path / "out"), "--no-progress",
               AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert bad.returncode == 2, bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, bad.stderr
    assert lines[0].startswith("deepcr-dask: error: s3://raw-frames/creds: access denied"), bad.stderr
    missing = _cli("archive", "s3://not-a-bucket/files", "-o", str(tmp_path / "out"), "--no-progress")
    assert missing.returncode == 2
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "s3://not-a-bucket/files: no such bucket" in lines[0], missing.stderr


def test_chip_sections_read_from_a_bucket_match_the_local_file(s3, tmp_path):
    from deepcr_dask.io.fits import LazyChip

    shape = (96, 112)
    sci, _ = synthetic_frame(shape, seed=9, n_rays=8)
    dq = np.zeros(shape, np.int16)
    dq[10:12, 20] = 4  # a bad column piece
    path = write_flc(tmp_path / "jsect1q_flc.fits", [(sci, np.sqrt(np.abs(sci) + 25), dq)] * 2, rootname="jsect1q")
    s3.put_file(str(path), "raw-frames/sections/jsect1q_flc.fits")
    url = "s3://raw-frames/sections/jsect1q_flc.fits"
    remote_info, local_info = inspect_file(url), inspect_file(path)
    assert [c.name for c in remote_info.chips] == [c.name for c in local_info.chips]
    chip = remote_info.chips[1]
    rows, cols = slice(5, 40), slice(15, 70)
    got, expected = read_chip(url, chip, rows=rows, cols=cols), read_chip(path, local_info.chips[1], rows=rows,
                                                                           cols=cols)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[1].sum() == 2
    lazy = LazyChip(url, chip).to_dask(chunks=(48, 56))
    np.testing.assert_array_equal(lazy.compute(), read_chip(path, local_info.chips[1])[0])


def test_cli_clean_and_report_with_urls(s3, tmp_path):
    """`deepcr-dask clean` from a bucket to a bucket, and the QA report of a bucket-to-bucket run."""
    path = _flc(tmp_path / "jcli01q_flc.fits", seed=11)
    s3.put_file(str(path), "raw-frames/cli/jcli01q_flc.fits")
    out = "s3://cleaned-frames/cli/jcli01q_flc_crclean.fits"
    done = _cli("clean", "s3://raw-frames/cli/jcli01q_flc.fits", "-o", out)
    assert done.returncode == 0, done.stderr
    local = tmp_path / "local_crclean.fits"
    assert _cli("clean", str(path), "-o", str(local)).returncode == 0
    with s3.open(out, "rb") as handle, fits.open(handle) as theirs, fits.open(local) as mine:
        for ext in (("SCI", 1), ("DQ", 1), ("SCI", 2), ("DQ", 2)):
            np.testing.assert_array_equal(theirs[ext].data, mine[ext].data)

    manifest = tmp_path / "run.sqlite"
    run = _cli("archive", "s3://raw-frames/cli", "-o", "s3://cleaned-frames/cli-run", "--manifest", str(manifest),
               "--workers", "1", "--no-progress", "--report")
    assert run.returncode == 0, run.stderr
    page = manifest.with_suffix(".html")
    assert f"report: {page}" in run.stdout and "s3://raw-frames/cli/jcli01q_flc.fits" in page.read_text()
    assert page.read_text().count("<img") >= 3  # the histogram and both chips' thumbnails, read from the bucket


def test_repeat_exposures_in_a_bucket_are_cleaned_together_and_named_by_url(s3, client, tmp_path):
    import sqlite3

    import xarray as xr
    from test_groups import _file, _wcs

    for name in ("j8bt06a1q_flt.fits", "j8bt06a2q_flt.fits"):  # one visit, one pointing: a group
        s3.put_file(str(_file(tmp_path / name, wcs=_wcs())), f"raw-frames/visit06/{name}")
    manifest = tmp_path / "groups.sqlite"
    summary = dcr.process_archive("s3://raw-frames/visit06", "s3://cleaned-frames/visit06", cluster=client,
                                  zarr_path="s3://cleaned-frames/visit06/masks.zarr", manifest=manifest,
                                  progress=False)
    urls = [f"s3://raw-frames/visit06/{n}" for n in ("j8bt06a1q_flt.fits", "j8bt06a2q_flt.fits")]
    assert sorted(summary.done) == urls
    with sqlite3.connect(manifest) as db:
        names = {row[0] for row in db.execute("SELECT group_name FROM chips")}
    assert len(names) == 1 and "+".join(urls) in names.pop()
    group = chip_group_path("j8bt06a1q_flt", inspect_file(tmp_path / "j8bt06a1q_flt.fits").chips[0].name)
    attrs = xr.open_zarr("s3://cleaned-frames/visit06/masks.zarr", group=group, consolidated=False).attrs
    assert attrs["source"] == urls[0] and "+".join(urls) in attrs["group"] and "/tmp" not in attrs["group"]
