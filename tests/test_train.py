"""Training: loss goes down, checkpoints resume the same run, the result loads through the Cleaner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import deepcr_dask as dcr
from deepcr_dask.training.train import TrainConfig, load_pairs, simulated_pairs, train, train_inpaint, train_mask

pytest.importorskip("deepcr_dask.sim")


@pytest.fixture(scope="module")
def mask_data():
    return simulated_pairs("mask", 24, 64, "ACS-WFC", seed=1)


def test_short_training_lowers_validation_loss_and_loads_in_cleaner(tmp_path, mask_data):
    torch.set_num_threads(2)
    result = train_mask(mask_data, tmp_path, epochs=4, hidden=8, lr=3e-3, name="tiny", batch_size=4, device="cpu")
    losses = [h["val_loss"] for h in result.history]
    assert min(losses[1:]) < losses[0]
    assert (tmp_path / "log.csv").read_text().count("\n") == len(result.history) + 1
    assert (tmp_path / "curves.png").stat().st_size > 1000
    meta = json.loads(result.metadata_path.read_text())
    assert meta["kind"] == "mask" and meta["architecture"]["hidden"] == 8 and meta["scale"] == 1.0
    cleaner = dcr.Cleaner(str(result.model_path), device="cpu")
    image = mask_data.images[0]
    prob = cleaner.probability(image)
    assert prob.shape == image.shape and np.isfinite(prob).all()


def test_resume_continues_the_same_run(tmp_path, mask_data):
    torch.set_num_threads(1)
    train_part, val_part = mask_data.split(0.25, 0)
    config = dict(kind="mask", hidden=4, epochs=3, batch_size=6, name="r", device="cpu", patience=10)
    straight = train(train_part, val_part, TrainConfig(**config), tmp_path / "straight")
    train(train_part, val_part, TrainConfig(**{**config, "epochs": 2}), tmp_path / "split")
    resumed = train(train_part, val_part, TrainConfig(**config), tmp_path / "split", resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history],
                               [h["val_loss"] for h in straight.history], rtol=1e-5)
    a = load_file(str(straight.model_path))
    b = load_file(str(resumed.model_path))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_inpaint_training_and_user_arrays(tmp_path):
    torch.set_num_threads(2)
    data = simulated_pairs("inpaint", 12, 64, "WFPC2", seed=2)
    result = train_inpaint(data, tmp_path, epochs=2, hidden=4, name="inp", batch_size=4, device="cpu")
    assert json.loads(result.metadata_path.read_text())["kind"] == "inpaint"
    cleaner = dcr.Cleaner("ACS-WFC", inpaint=str(result.model_path), device="cpu")
    out = cleaner.inpaint(data.images[0], data.masks[0])
    assert np.isfinite(out).all()
    user = load_pairs("mask", [data.images[0], data.images[1]], [data.masks[0], data.masks[1]], patch=32)
    assert len(user) == 8 and user.images.shape == (8, 32, 32)


def test_training_on_real_frames_holds_out_whole_frames_and_records_thresholds(tmp_path):
    from conftest import real_file

    from deepcr_dask.errors import InputError
    from deepcr_dask.training.data import frames_from_names, real_pairs
    from deepcr_dask.training.train import train_real

    real_file("wfpc2_u5780205r_c0f.fits")
    real_file("imsim_cosmic_rays_itl_2017.fits.gz")
    frames = frames_from_names(["wfpc2:0"])
    pairs = real_pairs(frames, 6, 64, seed=1, ray_fraction=0.02)
    again = real_pairs(frames, 6, 64, seed=1, ray_fraction=0.02)
    np.testing.assert_array_equal(pairs.images, again.images)  # seeded
    assert pairs.images.shape == (6, 64, 64) and 0.005 < pairs.labels.mean() < 0.05
    # labels are the injected rays: where a pixel is labelled, the image exceeds the frame there
    assert (pairs.labels.astype(bool) & ~pairs.ignore).any()
    with pytest.raises(InputError, match="both training and validation: wfpc2-chip1"):
        train_real("mask", tmp_path / "x", real=["wfpc2:0,1"], val_real=["wfpc2:0"], n_real=4, n_val=2, patch=64,
                   epochs=1)
    result = train_real("mask", tmp_path / "run", real=["wfpc2:0", "wfpc2:1"], val_real=["wfpc2:2"], n_real=8,
                        n_sim=4, n_val=4, patch=64, instrument="WFPC2", epochs=1, name="tiny")
    meta = json.loads(result.metadata_path.read_text())
    assert meta["training"]["config"]["data"]["frames"] == {
        "train": ["wfpc2-chip1", "wfpc2-chip2"], "validation": ["wfpc2-chip3"], "thresholds": ["wfpc2-chip3"]}
    table = meta["fpr_thresholds"]
    assert list(table) == ["0.0001", "0.0005", "0.005"] and table["0.0001"] >= table["0.0005"] >= table["0.005"]
    assert 0.0 <= meta["default_fpr"] <= 1.0
    cleaner = dcr.Cleaner(str(result.model_path), device="cpu")
    assert cleaner.fpr_thresholds[5e-4] == table["0.0005"]


def test_training_never_sees_the_values_of_ignored_pixels(tmp_path, mask_data):
    """The Cleaner median-fills ignored pixels before its networks; training must see the same inputs."""
    from deepcr_dask.inference.fill import median_fill
    from deepcr_dask.training.train import Pairs, as_cleaner_input

    torch.set_num_threads(1)
    ignore = mask_data.ignore.copy()
    ignore[:, 20:26, 30:34] = True  # a saturated core
    ignore[:, :, 0] = True  # a flagged edge column
    hot = mask_data.images.copy()
    hot[ignore] = 80_000.0
    cold = mask_data.images.copy()
    cold[ignore] = -50.0
    filled = as_cleaner_input(Pairs(hot, mask_data.labels, ignore))
    reference = median_fill(hot[0], ignore[0], background=float(np.median(hot[0][~ignore[0]])))
    np.testing.assert_array_equal(filled.images[0], reference)
    np.testing.assert_array_equal(filled.images[~ignore], mask_data.images[~ignore])
    assert filled.images[ignore].max() < 80_000.0 and hot[ignore].min() == 80_000.0  # a copy, input unchanged
    config = dict(kind="mask", hidden=4, epochs=1, batch_size=6, name="f", device="cpu", seed=3)
    runs = []
    for images in (hot, cold):
        data = Pairs(images, mask_data.labels, ignore)
        train_part, val_part = data.split(0.25, 0)
        runs.append(load_file(str(train(train_part, val_part, TrainConfig(**config), tmp_path / str(len(runs)),
                                        log=lambda *_: None).model_path)))
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
