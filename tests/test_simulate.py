"""Simulator: determinism, truth masks, footprint statistics against the catalogue, noise and rates."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from conftest import real_file
from scipy import ndimage

from deepcr_dask import sim
from deepcr_dask.sim.catalogue import shape_stats

CATALOGUE = "imsim_cosmic_rays_itl_2017.fits.gz"
GMOS = "gmos_S20190808S0048_cutout.fits"
GMOS_RAYS = [(slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))]


@pytest.fixture(scope="module")
def catalogue() -> sim.FootprintCatalogue:
    return sim.footprint_catalogue(real_file(CATALOGUE))


def _sample_arrays(s: sim.Sample) -> list[np.ndarray]:
    return [s.image, s.truth, s.ignore, s.clean, s.noise_sigma, s.charge]


def _components(charge: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixel count, length, charge) of each 8-connected charge island away from the image edge."""
    labels, _ = ndimage.label(charge > 0, np.ones((3, 3), bool))
    stats = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == charge.shape[0] or sl[1].stop == charge.shape[1]:
            continue
        stamp = np.where(labels[sl] == i, charge[sl], 0)
        stats.append((*shape_stats(stamp), stamp.sum()))
    return tuple(np.array(stats).T)


def test_presets_have_the_documented_units():
    for name in ("ACS-WFC", "WFC3-UVIS", "WFPC2", "ground", "DECam"):
        inst = sim.get_instrument(name)
        assert inst.pixel_um == 15.0
        assert inst.fwhm_px[0] <= inst.fwhm_px[1] and inst.sky_e_per_s[0] <= inst.sky_e_per_s[1]
    acs = sim.INSTRUMENTS["ACS-WFC"]
    assert acs.gain == 1.0 and 4 <= acs.read_noise <= 5 and 1.2 <= acs.cr_rate_per_cm2_s <= 2
    assert sim.INSTRUMENTS["WFPC2"].gain == 7.0 and sim.INSTRUMENTS["WFPC2"].pixel_scale_arcsec == 0.1
    assert sim.INSTRUMENTS["ground"].fwhm_px == (2.5, 5.0)
    assert 0.01 <= sim.INSTRUMENTS["ground"].cr_rate_per_cm2_s <= 0.02
    assert sim.get_instrument("decam") is sim.INSTRUMENTS["DECam"]
    with pytest.raises(KeyError, match="ACS-WFC"):
        sim.get_instrument("nope")


@pytest.mark.parametrize("field", ["sparse", "globular", "galaxy"])
def test_same_seed_same_arrays_other_seed_differs(field):
    a = sim.simulate((128, 160), "ACS-WFC", 500.0, seed=3, field=field)
    b = sim.simulate((128, 160), "ACS-WFC", 500.0, seed=3, field=field)
    c = sim.simulate((128, 160), "ACS-WFC", 500.0, seed=4, field=field)
    for x, y in zip(_sample_arrays(a), _sample_arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert a.footprints == b.footprints
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.truth.dtype == bool and a.ignore.dtype == bool
    assert np.isfinite(a.image).all() and a.image.shape == (128, 160)


def test_truth_is_the_injected_charge_above_the_threshold():
    scene = sim.simulate_scene((256, 256), "ACS-WFC", 500.0, seed=5)
    for truth_sigma in (sim.TRUTH_SIGMA, 3.0):
        inj = sim.inject_cosmic_rays(scene.image, scene.noise_sigma, "ACS-WFC", 500.0, seed=6, truth_sigma=truth_sigma)
        np.testing.assert_allclose(inj.image - scene.image, inj.charge, atol=1e-2)
        np.testing.assert_array_equal(inj.truth, inj.charge > truth_sigma * scene.noise_sigma)
        assert not (inj.truth & (inj.charge <= 0)).any()  # truth only where charge was injected
        assert inj.truth.sum() > 100
        # Most injected electrons sit in truth pixels: the faint wings left out are, by definition, below noise.
        assert inj.charge[inj.truth].sum() > 0.95 * inj.charge.sum()


def test_ray_count_follows_rate_area_and_exposure():
    shape, exptime = (256, 256), 500.0
    expected = sim.expected_ray_count(shape, "ACS-WFC", exptime)
    assert expected == pytest.approx(1.5 * exptime * (256 * 15e-4) ** 2)
    counts = [
        sim.inject_cosmic_rays(np.zeros(shape), 1.0, "ACS-WFC", exptime, seed=s, catalogue=None).n_rays
        for s in range(6)
    ]
    assert abs(np.mean(counts) - expected) < 4 * np.sqrt(expected / len(counts))
    doubled = sim.inject_cosmic_rays(np.zeros(shape), 1.0, "ACS-WFC", exptime, seed=0, catalogue=None, rate_scale=2)
    assert abs(doubled.n_rays - 2 * expected) < 5 * np.sqrt(2 * expected)


def _matches(values: np.ndarray, reference: np.ndarray) -> None:
    """Distribution check with stated tolerances, in quantiles of the reference so that discrete, flat-topped
    distributions are judged fairly: the sample median lies between the reference's 40th and 60th percentiles
    and the sample 95th percentile between its 90th and 98.5th (about 4 standard errors for 500 rays)."""
    for q, lo, hi in ((50, 40, 60), (95, 90, 98.5)):
        value = np.percentile(values, q)
        assert np.percentile(reference, lo) <= value <= np.percentile(reference, hi), (q, value)


def test_identity_rescaling_reproduces_catalogue_footprints(catalogue):
    """On the catalogue's own sensor the injected rays are the catalogue's footprints, measured from the image."""
    raw = catalogue.stats()
    assert len(catalogue) == 1764 and raw["n_pixels_median"] == 7.0 and raw["n_pixels_p95"] == pytest.approx(60, abs=1)
    assert catalogue.length_px.max() == pytest.approx(182, abs=2)  # the README's longest ray
    inj = sim.inject_cosmic_rays(np.zeros((2048, 2048)), 1.0, "LSST-ITL", seed=1, catalogue=catalogue,
                                 real_fraction=1.0, n_rays=500, truth_sigma=0.0)
    index = {fp.fp_id: i for i, fp in enumerate(catalogue.footprints)}
    for fp in inj.footprints:  # each injected ray keeps its catalogue pixels and charge exactly
        i = index[fp.source_id]
        assert (fp.n_pixels, fp.length_px) == (catalogue.n_pixels[i], pytest.approx(catalogue.length_px[i]))
        assert fp.charge_e == pytest.approx(catalogue.total_e[i])
    measured = _components(inj.charge)  # and the image holds them (a few overlap or touch the edge)
    assert len(measured[0]) > 450
    for values, reference in zip(measured, catalogue.properties()):
        _matches(values, reference)


def test_rescaled_real_footprints_match_the_rescaled_catalogue(catalogue):
    """HST: injected real rays follow the catalogue rescaled once; tracks shrink ~10x, charge by 15/100."""
    reference = catalogue.properties("ACS-WFC", seed=123)
    inj = sim.inject_cosmic_rays(np.zeros((1024, 1024)), 1.0, "ACS-WFC", seed=2, catalogue=catalogue,
                                 real_fraction=1.0, n_rays=500, truth_sigma=0.0)
    assert all(fp.real for fp in inj.footprints)
    meta = np.array([(fp.n_pixels, fp.length_px, fp.charge_e) for fp in inj.footprints]).T
    for values, ref in zip(meta, reference):
        _matches(values, ref)
    assert np.median(reference[2]) == pytest.approx(0.15 * np.median(catalogue.total_e), rel=0.05)
    assert np.percentile(reference[1], 95) < 0.5 * np.percentile(catalogue.length_px, 95)  # lab tracks shorten
    measured = _components(inj.charge)  # the image holds what the metadata says
    for values, ref in zip(measured, reference):
        _matches(values, ref)


def test_synthetic_tracks_scale_with_sensor_thickness():
    def median_length(name: str) -> float:
        inj = sim.inject_cosmic_rays(np.zeros((512, 512)), 1.0, name, seed=0, catalogue=None, n_rays=200)
        assert {fp.kind for fp in inj.footprints} == {"track", "worm"}
        return np.median([fp.length_px for fp in inj.footprints if fp.kind == "track"])

    assert median_length("DECam") > 2 * median_length("ACS-WFC")  # 250 um vs 15 um of silicon


@pytest.mark.parametrize("name", ["ACS-WFC", "WFPC2", "ground"])
def test_sky_and_noise_match_the_preset(name):
    inst = sim.INSTRUMENTS[name]
    scene = sim.simulate_scene((384, 384), name, 500.0, seed=7, n_stars=15, n_galaxies=5)
    assert inst.sky_e_per_s[0] <= scene.sky / 500.0 <= inst.sky_e_per_s[1]
    longer = sim.simulate_scene((384, 384), name, 1000.0, seed=7, n_stars=15, n_galaxies=5)
    assert longer.sky == pytest.approx(2 * scene.sky)  # same draws, sky proportional to exposure
    sky = ~scene.ignore & (np.abs(scene.noiseless - scene.background) < 0.01 * scene.noise_sigma)
    assert sky.mean() > 0.5
    assert scene.image[sky].mean() == pytest.approx(scene.background[sky].mean(), rel=0.01)
    expected = np.sqrt(scene.sky + inst.read_noise**2 + inst.gain**2 / 12)  # gain: digitisation step
    measured = np.std((scene.image - scene.noiseless)[sky])
    assert measured == pytest.approx(expected, rel=0.05)
    if name == "ACS-WFC":
        assert measured == pytest.approx(np.sqrt(scene.sky + inst.read_noise**2), rel=0.05)
    good = ~scene.ignore  # stars too: noise_sigma is the per-pixel expectation
    assert np.std(((scene.image - scene.noiseless) / scene.noise_sigma)[good]) == pytest.approx(1.0, rel=0.05)


def test_saturation_bleeds_along_columns_and_is_ignored():
    scene = sim.simulate_scene((512, 512), "ground", 500.0, seed=1)
    saturated = scene.noiseless >= scene.instrument.saturation
    assert saturated.sum() > 20, "this seed has saturated stars"
    assert scene.image.max() <= scene.instrument.saturation
    assert scene.ignore[saturated].all()
    labels, _ = ndimage.label(saturated)
    heights = [sl[0].stop - sl[0].start for sl in ndimage.find_objects(labels)]
    widths = [sl[1].stop - sl[1].start for sl in ndimage.find_objects(labels)]
    assert max(h / w for h, w in zip(heights, widths)) > 2  # bleed trails run along the columns


def test_galsim_engine_agrees_with_the_builtin_sersic():
    pytest.importorskip("galsim", reason="GalSim is optional; pip install galsim")
    kw = {"field": "galaxy", "n_stars": 0, "n_galaxies": 12}
    a = sim.simulate_scene((256, 256), "ACS-WFC", 500.0, seed=3, **kw)
    b = sim.simulate_scene((256, 256), "ACS-WFC", 500.0, seed=3, galaxy_engine="galsim", **kw)
    da, db = a.noiseless - a.background, b.noiseless - b.background
    assert db.sum() == pytest.approx(da.sum(), rel=0.05)
    assert np.corrcoef(da.ravel(), db.ravel())[0, 1] > 0.99


def test_missing_catalogue_falls_back_to_synthetic(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        sim.footprint_catalogue(tmp_path)
    monkeypatch.setenv("DEEPCR_DASK_REAL_DATA", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="synthetic"):
        inj = sim.inject_cosmic_rays(np.zeros((256, 256)), 1.0, seed=0)
    assert inj.n_rays > 50 and {fp.kind for fp in inj.footprints} == {"track", "worm"}


def test_training_pair_from_real_gmos_ignores_its_own_rays():
    path = real_file(GMOS)
    frame = fits.getdata(path, "SCI").astype(np.float64)  # electrons
    pair = sim.training_pair_from_real(frame, "ground", 90.0, seed=0, gain=1.0, read_noise=4.24, rate_scale=300)
    np.testing.assert_array_equal(pair.clean, frame.astype(np.float32))
    level = ndimage.median_filter(frame, 5)
    own = np.zeros(frame.shape, bool)
    for box in GMOS_RAYS:  # the frame's own ray pixels: 3 sigma above the local median
        own[box] = (frame - level)[box] > 3 * np.sqrt(level[box] + 4.24**2)
        assert own[box].sum() > 60
        assert pair.ignore[box][own[box]].mean() > 0.95
    assert pair.ignore.mean() < 0.05  # conservative, not blanket
    assert len(pair.footprints) > 5 and pair.truth.sum() > 50
    injected = pair.image != pair.clean
    assert not (pair.truth & ~injected).any()  # truth holds injected rays only ...
    assert not (pair.truth & own & (pair.charge == 0)).any()  # ... never the frame's own
