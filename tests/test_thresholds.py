"""Thresholds by false-positive rate: calibration, lookup, and the Cleaner's ``fpr=``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_frame

import deepcr_dask as dcr
from deepcr_dask.errors import ModelError
from deepcr_dask.models import zoo
from deepcr_dask.models.thresholds import FPR_LEVELS, calibrate_thresholds, fpr_thresholds, resolve_threshold


def test_calibrated_thresholds_give_at_most_the_asked_false_positive_rate():
    rng = np.random.default_rng(3)
    truth = rng.random((400, 500)) < 0.01
    prob = np.where(truth, rng.beta(8, 1, truth.shape), rng.beta(1, 30, truth.shape)).astype(np.float32)
    ignore = rng.random(truth.shape) < 0.05
    prob[ignore & ~truth] = 1.0  # ignored pixels must not move the thresholds
    table = calibrate_thresholds(prob, truth, ignore)
    assert list(table) == ["0.0001", "0.0005", "0.005"]
    negatives = prob[~truth & ~ignore]
    for fpr in FPR_LEVELS:
        rate = float((negatives > table[f"{fpr:g}"]).mean())
        assert fpr - 2.0 / negatives.size <= rate <= fpr  # the quantile, to within a pixel or two
    assert table["0.0001"] > table["0.0005"] > table["0.005"]


def test_every_listed_mask_model_records_thresholds_that_decrease_with_the_rate():
    for name in zoo.list_models("mask"):
        table = fpr_thresholds(zoo.get_spec(name, "mask"))
        assert sorted(table) == sorted(FPR_LEVELS), name
        assert 0.0 < table[5e-3] < table[5e-4] < table[1e-4] < 1.0, (name, table)


def test_cleaner_fpr_equals_the_recorded_threshold():
    image, _ = synthetic_frame((192, 192), seed=4)
    cleaner = dcr.Cleaner("generic-HST", device="cpu")
    for fpr in FPR_LEVELS:
        by_rate = cleaner.clean(image, fpr=fpr, inpaint=False)[0]
        by_value = cleaner.clean(image, threshold=cleaner.fpr_thresholds[fpr], inpaint=False)[0]
        np.testing.assert_array_equal(by_rate, by_value)
    strict, loose = (cleaner.clean(image, fpr=f, inpaint=False)[0].sum() for f in (1e-4, 5e-3))
    assert strict < loose
    with pytest.raises(ModelError, match=r"no threshold for FPR 0\.001"):
        cleaner.clean(image, fpr=1e-3)
    with pytest.raises(ModelError, match="not both"):
        cleaner.clean(image, threshold=0.5, fpr=1e-4)


def test_a_model_without_a_record_refuses_fpr(tmp_path):
    spec = zoo.get_spec("generic-HST", "mask")
    bare = zoo.ModelSpec(spec.name, spec.kind, spec.architecture, "file", spec.filename)
    assert resolve_threshold(bare) == 0.5 and resolve_threshold(bare, 0.3) == 0.3
    with pytest.raises(ModelError, match="recorded: none recorded"):
        resolve_threshold(bare, fpr=1e-4)
