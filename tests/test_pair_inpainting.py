"""Inpainting judged on a real pair: the other exposure's pixels are the truth under a ray."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file


@pytest.fixture(scope="module")
def pair():
    real_file("stis_o56502050_raw.fits")
    from deepcr_dask.sim.pairs import real_pairs

    return real_pairs("stis", associations=("o56502050",))[0]


def test_masks_are_grown_rays_scored_where_the_reference_is_clean(pair):
    from scipy import ndimage

    from deepcr_dask.evaluate.inpainting import pair_masks
    from deepcr_dask.sim.pairs import AMBIGUOUS_SIGMA, pair_truth

    mask, scored = pair_masks(pair, 0)
    truth, _ = pair_truth(pair, 0)
    grown = ndimage.binary_dilation(truth, np.ones((3, 3), bool))
    assert (mask == (grown & ~pair.ignore)).all()  # the rays grown by a pixel, as a detector's mask
    assert not (scored & ~mask).any()
    assert not (scored & (pair.significance(0) < -AMBIGUOUS_SIGMA)).any()  # never on the other's rays
    assert scored.sum() > 0.8 * mask.sum()


def test_every_inpainter_on_the_same_pixels_and_the_median_is_no_oracle(pair):
    from deepcr_dask.evaluate.inpainting import MEDIAN, pair_inpainting

    result = pair_inpainting(["generic-HST"], "stis", "test")
    assert set(result) == {MEDIAN, "generic-HST"}
    counts = {r["n"] for r in result.values()}
    assert len(counts) == 1 and counts.pop() > 50_000
    for r in result.values():
        assert np.isfinite(r["rms"]) and r["rms"] > 5.0  # the reference carries its own noise
    # a filler that leaves the ray in place is far worse than either
    from deepcr_dask.evaluate.inpainting import pair_masks

    _, scored = pair_masks(pair, 0)
    untouched = np.sqrt(np.mean((pair.exposures[0][scored] - pair.reference(0)[scored]) ** 2))
    assert untouched > 3 * max(r["rms"] for r in result.values())
