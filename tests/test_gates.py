"""Quality gates: flagged fraction against the cosmic-ray rate, star cores against chance, run outliers."""
from __future__ import annotations

import numpy as np
import pytest

from deepcr_dask.archive import gates


def _field(stars: int, rays: int, seed: int = 3) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """Sky of 100 e- with read noise, Gaussian stars (sigma 1.2 px) and single-pixel hits."""
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 5.0, (256, 256))
    yy, xx = np.mgrid[:256, :256]
    star_at = [(int(y), int(x)) for y, x in rng.integers(12, 244, (stars, 2))]
    for y, x in star_at:
        image += 4000.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2 ** 2))
    ray_at = [(int(y), int(x)) for y, x in rng.integers(5, 251, (rays, 2))]
    for y, x in ray_at:
        image[y, x] += 3000.0
    return image, star_at, ray_at


def test_expected_fraction_follows_the_handbook_rate():
    assert gates.expected_fraction(1000.0, space=True) == pytest.approx(0.03)
    assert gates.expected_fraction(60.0, space=True) == pytest.approx(0.0018)
    assert gates.expected_fraction(None, space=True) == 0.0
    # Ground: 0.05 rays cm^-2 s^-1 on 15 um pixels, 20 px a ray.
    assert gates.expected_fraction(600.0, space=False) == pytest.approx(0.05 * 600 * (15e-4) ** 2 * 20)


def test_star_cores_finds_stars_not_cosmic_rays():
    image, star_at, ray_at = _field(stars=30, rays=200)
    labels, n = gates.star_cores(image, np.zeros(image.shape, bool))
    # Overlapping stars merge into one core; every isolated star is found, no single-pixel hit is.
    assert 25 <= n <= 30
    assert all(labels[y, x] > 0 for y, x in star_at)
    isolated = [(y, x) for y, x in ray_at
                if min(abs(y - sy) + abs(x - sx) for sy, sx in star_at) > 8]
    assert isolated and not any(labels[y, x] for y, x in isolated)


def test_check_chip_catches_star_flagging_and_excess_flags():
    image, star_at, ray_at = _field(stars=40, rays=100)
    ignore = np.zeros(image.shape, bool)
    honest = np.zeros(image.shape, bool)
    for y, x in ray_at:
        honest[y, x] = True
    gate = gates.check_chip(honest, image, ignore, exptime=500.0, space=True)
    assert not gate.suspect and gate.stars >= 30

    stars_too = honest.copy()
    for y, x in star_at:
        stars_too[y, x] = True
    gate = gates.check_chip(stars_too, image, ignore, exptime=500.0, space=True)
    assert gate.suspect and any("stars" in r for r in gate.reasons)
    assert gate.cores_flagged >= 30

    everything = np.zeros(image.shape, bool)
    everything[:40] = True  # 15.6% of the chip in 500 s, where 1.5% is the most cosmic rays touch
    gate = gates.check_chip(everything, image, ignore, exptime=500.0, space=True)
    assert any("over 3x" in r for r in gate.reasons)
    assert gate.flagged_fraction == pytest.approx(40 / 256)


def test_run_outliers_needs_a_distribution():
    fractions = {(f"f{i}.fits", "SCI,1"): ("ACS", 0.01 + 0.001 * i) for i in range(6)}
    fractions[("bad.fits", "SCI,1")] = ("ACS", 0.2)
    fractions[("lone.fits", "SCI,1")] = ("WFPC2", 0.5)  # one WFPC2 chip: nothing to compare with
    out = gates.run_outliers(fractions)
    assert set(out) == {("bad.fits", "SCI,1")}
    assert "ACS" in out[("bad.fits", "SCI,1")]
