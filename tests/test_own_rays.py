"""A real frame's own cosmic rays: what is ignored, and that stars are never hidden by it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import real_file
from scipy import ndimage
from scipy.special import erf

from deepcr_dask import sim
from deepcr_dask.sim.own_rays import find_own_cosmic_rays, local_noise, source_pixels
from deepcr_dask.sim.real import _hrc_frame, _omegacen_frames
from deepcr_dask.sim.sharpness import peak_ratio_limit, sharper_than_psf, star_peak_ratio


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
    y, x = sky[rng.choice(len(sky))]
    scene[y : y + 2, x : x + 2] += ((500.0, 650.0), (1100.0, 1000.0))  # a 2x2 one: only a diagonal pair is faint
    truth[y : y + 2, x : x + 2] = True
    image = rng.poisson(scene).astype(np.float64) + rng.normal(0, 5, shape)
    sigma = local_noise(image, 5.0)
    seeds = find_own_cosmic_rays(image, sigma, grow=0)
    sharp = sharper_than_psf(image, seeds, sigma, fwhm)
    labels, _ = ndimage.label(truth, np.ones((3, 3), bool))
    assert all(sharp[labels == i].any() for i in range(1, labels.max() + 1))
    near_rays = ndimage.binary_dilation(truth, np.ones((3, 3), bool), iterations=2)  # noise seeds join a ray
    assert not (sharp & ~near_rays).any()  # no star core


def _dq_only(field, chip):
    """A crowded real frame as :func:`sim.real_frames` gives it, and its DQ-flagged pixels alone."""
    folder = real_file("wfpc2_u40x010hm_c0f.fits" if field == "omegacen" else "acs_hrc_j8bt06nyq_flt.fits").parent
    if field == "omegacen":
        real_file("wfpc2_u40x010hm_c1f.fits")
        return sim.real_frames(field, folder, chips=(chip,))[0], _omegacen_frames(folder, (chip,))[0][0][2]
    return sim.real_frames(field, folder)[0], _hrc_frame(folder)[2]


@pytest.mark.parametrize("field, chip", [("omegacen", 1), ("omegacen", 3), ("hrc", None)])
def test_crowded_fields_bright_star_peaks_are_not_ignored_as_rays(field, chip):
    frame, dq_only = _dq_only(field, chip)
    own = frame.ignore & ~dq_only
    assert 0.002 < own.mean() < 0.02  # a 60-100 s exposure's rays, grown by 2 px
    image = frame.image.astype(np.float64)
    sigma = local_noise(image, frame.instrument.read_noise)
    smooth = ndimage.median_filter(image, 5) - ndimage.median_filter(image, 7)  # rays removed
    peaks = (image == ndimage.maximum_filter(image, 3)) & ~dq_only
    # 10 sigma: the bright cores; 5 sigma: where 7x7 medians as each neighbour's background made HRC's
    # well-sampled cores sharp (58 of 4895, 1.2%, were hidden)
    for level, at_least in ((10, 300), (5, 1000)):
        stars = peaks & (smooth > level * sigma)
        assert stars.sum() > at_least
        assert (own & stars).sum() <= 0.01 * stars.sum()
    if field == "omegacen":
        limits = peak_ratio_limit(image, sigma, frame.instrument.fwhm_px[0], ignore=dq_only)
        assert limits.axis > 1.5 * star_peak_ratio(frame.instrument.fwhm_px[0])  # WF cores beat the Gaussian
        assert limits.diagonal > limits.axis


@pytest.mark.parametrize("fwhm", [1.3, 1.85, 2.5])
def test_crowded_star_fields_without_rays_give_none(fwhm):
    """400 stars of 1e3-1e5 e- on 192x192 px and no rays: every peak the finder seeds is a star or noise."""
    rng = np.random.default_rng(5)
    shape = (192, 192)
    scene = np.full(shape, 300.0)
    for (y, x), flux in zip(rng.uniform(3, 189, (400, 2)), 10 ** rng.uniform(3, 5, 400)):
        scene += _pixel_star(shape, y, x, flux, fwhm)
    image = rng.poisson(scene).astype(np.float64) + rng.normal(0, 4.7, shape)
    sigma = local_noise(image, 4.7)
    seeds = find_own_cosmic_rays(image, sigma, grow=0)
    assert seeds.sum() > 20
    assert not sharper_than_psf(image, seeds, sigma, fwhm).any()


def test_a_star_beside_its_ignored_saturated_core_is_not_a_ray():
    """Only the pairs along a filled core's edge remain there, farther out on the star's steep wing."""
    rng = np.random.default_rng(8)
    shape = (64, 64)
    scene = 20.0 + _pixel_star(shape, 32.2, 31.9, 2e6, 1.3)
    image = rng.poisson(scene).astype(np.float64) + rng.normal(0, 5, shape)
    saturated = image > 6e4
    assert saturated.sum() >= 4
    filled = np.where(saturated, np.median(image), image)
    sigma = local_noise(filled, 5.0)
    seeds = find_own_cosmic_rays(filled, sigma, grow=0)
    assert (seeds & ndimage.binary_dilation(saturated, iterations=3)).any()  # the wing does seed
    assert not sharper_than_psf(filled, seeds, sigma, 1.3, ignore=saturated).any()


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
