"""The device-resident pipeline run on CPU tensors gives exactly what the numpy (host) path gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.errors import ModelError
from deepcr_dask.inference.device_path import median_fill_torch, nanmedian_rows
from deepcr_dask.inference.fill import median_fill
from deepcr_dask.inference.preprocess import Region, prepare_image
from deepcr_dask.inference.tiling import Span


def _frame(shape=(203, 258), seed=4):
    image, _ = synthetic_frame(shape, seed=seed, n_rays=25)
    ignore = np.zeros(shape, bool)
    ignore[40:43, 30:150] = True  # a bad column block, wider than one fill pass
    ignore[120:140, 200:203] = True
    image[7, 9] = np.nan
    image[0, :5] = np.inf  # on the top edge, in the zero-padding's neighbourhood
    return image, ignore


def test_nanmedian_rows_is_numpys_including_even_counts_and_empty_rows():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(5000, 25)).astype(np.float32)
    windows[rng.random(windows.shape) < 0.45] = np.nan
    windows[:10] = np.nan  # rows with nothing usable
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(windows, axis=1)
    got = nanmedian_rows(torch.from_numpy(windows)).numpy()
    np.testing.assert_array_equal(got, expected)
    assert (np.sum(~np.isnan(windows), axis=1) % 2 == 0).sum() > 1000  # the averaged case is exercised


def test_median_fill_torch_equals_median_fill():
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (90, 110)).astype(np.float32)
    targets = rng.random(image.shape) < 0.05
    targets[30:50, 40:60] = True  # deeper than three passes reach: the background fills the middle
    sources = ~targets & (rng.random(image.shape) > 0.1)
    for src in (None, sources):
        expected = median_fill(image, targets, src, background=-5.0)
        got = median_fill_torch(torch.from_numpy(image), torch.from_numpy(targets),
                                None if src is None else torch.from_numpy(src), background=-5.0)
        np.testing.assert_array_equal(got.numpy(), expected)
    assert (expected == -5.0).sum() > 0


@pytest.mark.parametrize("mask,inpaint", [("ACS-WFC", None), ("ACS-WFC", "ACS-WFC-F606W-2-32"), ("WFC3-UVIS", None),
                                          ("generic-HST", "generic-HST")])  # a "sky"-normalised mask model
def test_device_path_on_cpu_equals_host_path(mask, inpaint):
    image, ignore = _frame()
    host = dcr.Cleaner(mask, inpaint, device="cpu", tile=96, pipeline="host")
    device = dcr.Cleaner(mask, inpaint, device="cpu", tile=96, pipeline="device")
    assert device.pipeline == "device" and host.pipeline == "host"
    expected, got = host.run(image, ignore=ignore), device.run(image, ignore=ignore)
    assert expected["mask"].sum() > 20
    for name in ("mask", "probability", "cleaned"):
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    # mask only (cleaned = the input), and inpainting a given mask
    for a, b in zip(host.clean(image, inpaint=False, ignore=ignore), device.clean(image, inpaint=False,
                                                                                  ignore=ignore)):
        np.testing.assert_array_equal(a, b)
    given = expected["mask"] | (np.arange(image.size).reshape(image.shape) % 97 == 0)
    np.testing.assert_array_equal(device.inpaint(image, given, ignore), host.inpaint(image, given, ignore))


def test_device_path_on_a_block_core_equals_host_path():
    """A Dask block: the region holds the core plus a halo, outputs for the core only."""
    image, ignore = _frame((260, 300))
    cleaner = dcr.Cleaner("ACS-WFC", device="cpu", tile=64, pipeline="host")
    stats = cleaner.stats(*prepare_image(image, ignore))
    core = (Span(100, 180), Span(120, 230))
    held = (Span(100 - cleaner.halo, 180 + cleaner.halo), Span(120 - cleaner.halo, 230 + cleaner.halo))
    data = np.where(np.isfinite(image), image, np.nan).astype(np.float32)
    region = Region(data[held[0].start:held[0].stop, held[1].start:held[1].stop],
                    (ignore | ~np.isfinite(image))[held[0].start:held[0].stop, held[1].start:held[1].stop], *held)
    expected = cleaner.run_region(region, image.shape, stats, want="clean", core=core)
    cleaner.pipeline = "device"
    got = cleaner.run_region(region, image.shape, stats, want="clean", core=core)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    whole = cleaner.run(image, ignore=ignore)
    np.testing.assert_array_equal(got["mask"], whole["mask"][100:180, 120:230])


def test_pipeline_choice():
    assert dcr.Cleaner("ACS-WFC", device="cpu").pipeline == "host"  # auto: no copies to save on a CPU
    with pytest.raises(ModelError, match="pipeline must be one of"):
        dcr.Cleaner("ACS-WFC", device="cpu", pipeline="gpu")
