"""Real repeat pairs and the HST ray catalogue harvested from them (needs the STIS pairs of ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file
from scipy import ndimage

from deepcr_dask.sim import footprint_catalogue, inject_catalogue_footprints
from deepcr_dask.sim.harvest import HARVEST_SPLITS, harvest_pair, harvested_catalogue, write_catalogue
from deepcr_dask.sim.pairs import hot_pixels, pair_truth, real_pairs


@pytest.fixture(scope="module")
def stis_pair():
    real_file("stis_o56502050_raw.fits")
    return real_pairs("stis", associations=("o56502050",))[0]


def test_stis_pair_reduction(stis_pair):
    """Overscan trimmed off (1024 x 512 binned science), bias near zero, read noise from the overscan."""
    pair = stis_pair
    assert pair.exposures[0].shape == pair.exposures[1].shape == (1024, 512)
    assert pair.binning == (1, 2)
    assert pair.exptimes == (1350.0, 1422.0)
    assert 2.5 < pair.read_noise < 5.0  # a plain std of the overscan gives ~100 e- (its outliers)
    for exposure in pair.exposures:  # G430M sky a few tens of e- above the bias: bias removed, not the sky
        assert 5.0 < float(np.median(exposure)) < 40.0
    # hot pixels: tens of thousands in an undarked 1999 STIS CCD (4-5% of the pixels), grown along columns
    assert 0.05 < pair.ignore.mean() < 0.2
    assert pair.saturated.mean() < 0.01 and not (pair.saturated & ~pair.ignore).any()


def test_pair_truth_counts_and_symmetry(stis_pair):
    """5,000-8,000 ray groups per exposure; a ray of one exposure is not a ray of the other; hot pixels
    (raised in both exposures) are never truth."""
    truths = []
    for k in (0, 1):
        truth, ambiguous = pair_truth(stis_pair, k)
        n_groups = ndimage.label(truth, np.ones((3, 3), bool))[1]
        assert 4_000 < n_groups < 9_000, n_groups
        assert not (truth & ambiguous).any()
        assert not (truth & stis_pair.ignore).any()
        truths.append(truth)
    assert (truths[0] & truths[1]).sum() < 0.01 * truths[0].sum()


def test_hot_pixels_need_both_exposures():
    rng = np.random.default_rng(0)
    a, b = (rng.normal(20, 4, (64, 64)) for _ in range(2))
    a[10, 10] = b[10, 10] = 900.0  # hot: both
    a[30, 30] = 900.0  # a ray: one only
    a[40:60, 50] = b[40:60, 50] = 900.0  # an emission line along the slit: smooth along y
    hot = hot_pixels(a, b, 4.0)
    assert hot[10, 10] and hot[9, 10] and hot[11, 10]
    assert not hot[30, 30]
    assert not hot[42:58, 50].any()  # (its abrupt ends stand above the sky beyond them)


def test_harvest_conserves_charge_and_undoes_binning(stis_pair):
    binned = harvest_pair(stis_pair, 0, unbin=False)
    unbinned = harvest_pair(stis_pair, 0, unbin=True)
    assert len(binned) == len(unbinned) > 3_000
    for (id_a, a), (id_b, b) in zip(binned[:200], unbinned[:200]):
        assert id_a == id_b
        assert b.shape == (a.shape[0], 2 * a.shape[1])  # binned 2x1 along x
        assert b.sum() == pytest.approx(a.sum(), rel=1e-9)
    # a ray's charge is the exposure minus the other, scaled: check one group's total on the frame
    truth, _ = pair_truth(stis_pair, 0, grow=True, exclude=stis_pair.saturated)
    labels, _ = ndimage.label(truth, np.ones((3, 3), bool))
    fp_id, stamp = binned[len(binned) // 2]
    group = labels == fp_id
    diff = stis_pair.difference(0)
    assert stamp.sum() == pytest.approx(np.clip(diff[group], 0, None).sum(), rel=1e-9)
    totals = np.array([s.sum() for _, s in binned])
    assert 500 < np.median(totals) < 5_000  # electrons: a thin CCD's compact rays


def test_splits_are_whole_associations_and_disjoint(tmp_path):
    real_file("stis_o56502020_raw.fits")
    ids = {split: {fp.fp_id for fp in harvested_catalogue(split).footprints} for split in HARVEST_SPLITS}
    assert all(len(v) > 3_000 for v in ids.values())
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert not set(HARVEST_SPLITS["train"]) & set(HARVEST_SPLITS["test"])
    # injection into another camera's frame draws from its own split only
    test = harvested_catalogue("test")
    injected = inject_catalogue_footprints(np.zeros((200, 200), np.float32), test, 50, seed=1)
    used = {f.source_id for f in injected.footprints}
    assert used <= ids["test"] and not used & ids["train"]
    # the catalogue round-trips through imSim's table format, sensor recorded
    path = write_catalogue(test, tmp_path / "stis_test.fits")
    back = footprint_catalogue(path)
    assert len(back) == len(test)
    assert (back.pixel_um, back.binning, back.name) == (21.0, (1, 1), test.name)
    assert np.allclose(np.sort(back.total_e), np.sort(test.total_e), rtol=1e-5)


def test_training_injects_train_split_hst_rays_only():
    """HST frames get harvested HST rays of the training associations, never a validation or test ray."""
    real_file("wfpc2_u5780205r_c0f.fits")
    real_file("stis_o56502020_raw.fits")
    from deepcr_dask.training.data import frames_from_names
    from deepcr_dask.training.data import real_pairs as training_pairs

    used: set[int] = set()
    pairs = training_pairs(frames_from_names(["wfpc2:0"]), 8, 64, seed=3, used_ids=used)
    assert len(pairs) == 8
    train = {fp.fp_id for fp in harvested_catalogue("train").footprints}
    held_out = {fp.fp_id for s in ("validation", "test") for fp in harvested_catalogue(s).footprints}
    hst = used & train
    assert hst and not used & held_out


def test_ground_rays_from_the_wht_pair():
    real_file("wht_isis_r2701244.fits.gz")
    wht = harvested_catalogue("wht")
    assert 500 < len(wht) < 5_000  # ~800 groups of 3 px or more per frame, less those on the edges
    assert wht.n_pixels.min() >= 3 and wht.binning == (1, 1) and wht.name == "wht-isis"
    assert wht.thickness_um > 15.0  # a ground CCD: rescaled to HST, its tracks shorten
    # a thicker sensor collects more charge along a ray: measured 4,100 e- against the thin STIS CCD's 1,500
    assert np.median(wht.total_e) > 2 * np.median(harvested_catalogue("test").total_e)
