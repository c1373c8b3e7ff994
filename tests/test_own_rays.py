"""A real frame's own cosmic rays: what is ignored, and that stars are never hidden by it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import real_file
from scipy import ndimage
from scipy.special import erf

from deepcr_dask import sim
from deepcr_dask.sim.own_rays import (
    find_own_cosmic_rays,
    local_noise,
    peak_ratio_limit,
    sharper_than_psf,
    source_pixels,
    star_peak_ratio,
)
from deepcr_dask.sim.real import _omegacen_frames


def _pixel_star(shape, y, x, flux, fwhm):
    """A Gaussian star integrated over pixels."""
    s = fwhm / 2.3548 * math.sqrt(2.0)
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    fy = (erf((rows + 0.5 - y) / s) - erf((rows - 0.5 - y) / s)) / 2
    fx = (erf((cols + 0.5 - x) / s) - erf((cols - 0.5 - x) / s)) / 2
    return flux * np.outer(fy, fx)


def test_star_peak_ratio_is_a_centred_gaussian_star_s():
    star = _pixel_star((21, 21), 10, 10, 1.0, 1.3)
    assert star_peak_ratio(1.3) == pytest.approx(star[10, 10] / star[10, 11], rel=1e-9)
    off = _pixel_star((21, 21), 10.3, 10.2, 1.0, 1.3)
    peak = np.unravel_index(np.argmax(off), off.shape)
    sides = [off[peak[0] + dy, peak[1] + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    assert off[peak] / np.mean(sides) < star_peak_ratio(1.3)  # off-centre stars are flatter
    assert star_peak_ratio(1.3) > star_peak_ratio(2.0) > star_peak_ratio(5.0) > 1


def test_sharp_rays_are_found_and_undersampled_stars_are_not():
    rng = np.random.default_rng(3)
    shape, fwhm = (96, 96), 1.3
    truth = np.zeros(shape, bool)
    scene = np.full(shape, 20.0)
    for y, x in rng.uniform(8, 88, (25, 2)):  # undersampled stars, some pixel-centred, up to 40k e-
        scene += _pixel_star(shape, round(y) + rng.choice([0.0, 0.3]), round(x), rng.uniform(2e3, 4e4), fwhm)
    sky = np.argwhere(ndimage.maximum_filter(scene, 5) < 21.0)  # rays on sky between the stars
    for (y, x), value in zip(sky[rng.choice(len(sky), 3, replace=False)], (900.0, 2500.0, 400.0)):
        scene[y, x] += value  # single-pixel rays
        truth[y, x] = True
    y, x = sky[rng.choice(len(sky))]
    scene[y, x : x + 2] += (2000.0, 500.0)  # and a 2-px one
    truth[y, x : x + 2] = True
    image = rng.poisson(scene).astype(np.float64) + rng.normal(0, 5, shape)
    sigma = local_noise(image, 5.0)
    seeds = find_own_cosmic_rays(image, sigma, grow=0)
    sharp = sharper_than_psf(image, seeds, sigma, fwhm)
    labels, _ = ndimage.label(truth, np.ones((3, 3), bool))
    assert all(sharp[labels == i].any() for i in range(1, labels.max() + 1))
    near_rays = ndimage.binary_dilation(truth, np.ones((3, 3), bool), iterations=2)  # noise seeds join a ray
    assert not (sharp & ~near_rays).any()  # no star core


@pytest.mark.parametrize("chip", [1, 3])
def test_omegacen_bright_star_peaks_are_never_ignored_as_rays(chip):
    real_file("wfpc2_u40x010hm_c1f.fits")
    frame = sim.real_frames("omegacen", chips=(chip,))[0]
    (_, _, dq_only), = _omegacen_frames(real_file("wfpc2_u40x010hm_c0f.fits").parent, (chip,))[0]
    own = frame.ignore & ~dq_only
    assert 0.002 < own.mean() < 0.02  # a 100 s WFPC2 exposure's rays, grown by 2 px
    image = frame.image.astype(np.float64)
    sigma = local_noise(image, frame.instrument.read_noise)
    background = ndimage.median_filter(image, 7)
    smooth = ndimage.median_filter(image, 5) - background
    stars = (image == ndimage.maximum_filter(image, 3)) & (smooth > 10 * sigma) & ~dq_only
    assert stars.sum() > 300
    assert (own & stars).sum() <= 0.01 * stars.sum()
    limit = peak_ratio_limit(image, sigma, frame.instrument.fwhm_px[0], ignore=dq_only)
    assert limit > 1.5 * star_peak_ratio(frame.instrument.fwhm_px[0])  # real WF cores beat the Gaussian


def test_ngc4151_rays_on_sources_and_the_chip_edge_are_ignored():
    folder = real_file("wfpc2_u5780205r_c0f.fits").parent
    chip3, chip4 = sim.real_frames("wfpc2", folder, chips=(2, 3))
    assert chip3.ignore[[0, -1], :].all() and chip3.ignore[:, [0, -1]].all()  # no c1f: its edge ring
    assert chip3.ignore[157:162, 196:200].all()  # a 4235 e- ray and its 790/203/180 e- fringe
    assert chip4.ignore[54:57, 37:39].all()  # 1154 e- with side neighbours of 453, 56, 20 and 12 e-
    inner = np.zeros(chip3.image.shape, bool)
    inner[1:-1, 1:-1] = True
    sources = source_pixels(chip3.image, chip3.ignore)
    assert (chip3.ignore & sources & inner).mean() < 0.01  # the galaxy and the stars still count
