"""Training and evaluation samples: a scene (simulated or real) with injected cosmic rays and its truth."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from .catalogue import FootprintCatalogue
from .instruments import Instrument, SeedLike, get_instrument
from .own_rays import find_own_cosmic_rays, local_noise
from .rays import TRUTH_SIGMA, RayFootprint, inject_cosmic_rays
from .scenes import expose, simulate_scene

__all__ = ["Sample", "simulate", "simulate_group", "training_pair_from_real"]


# ------------------------------------------------------------------------------------- training samples
@dataclass(frozen=True, eq=False)
class Sample:
    """A training / evaluation pair.

    Attributes
    ----------
    image : float32 ndarray
        Frame with injected rays (electrons).
    truth : bool ndarray
        Injected rays only.
    ignore : bool ndarray
        Pixels to leave out of losses and scores.
    clean : float32 ndarray
        The frame without the injected rays.
    noise_sigma : float32 ndarray
    charge : float32 ndarray
        Injected electrons.
    footprints : list of RayFootprint
    instrument : Instrument
    exptime : float
    name, field : str
        What the sample is called and its field type (in benchmarks).
    """

    image: np.ndarray
    truth: np.ndarray
    ignore: np.ndarray
    clean: np.ndarray
    noise_sigma: np.ndarray
    charge: np.ndarray
    footprints: list[RayFootprint]
    instrument: Instrument
    exptime: float
    name: str = ""
    field: str = ""


def simulate(
    shape: tuple[int, int] = (256, 256),
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    field: Literal["sparse", "globular", "galaxy"] = "sparse",
    *,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
    real_fraction: float = 0.7,
    truth_sigma: float = TRUTH_SIGMA,
) -> Sample:
    """A simulated scene with injected cosmic rays.

    Parameters
    ----------
    shape, instrument, exptime, field
        As :func:`simulate_scene`.
    seed : int, SeedSequence or Generator
        Split into independent streams for the scene and the rays.
    rate_scale, catalogue, real_fraction, truth_sigma
        As :func:`inject_cosmic_rays`.

    Returns
    -------
    Sample
    """
    scene_seed, ray_seed = _split_seed(seed)
    scene = simulate_scene(shape, instrument, exptime, scene_seed, field=field)
    inj = inject_cosmic_rays(
        scene.image, scene.noise_sigma, scene.instrument, exptime, ray_seed,
        rate_scale=rate_scale, catalogue=catalogue, real_fraction=real_fraction, truth_sigma=truth_sigma,
    )
    return Sample(inj.image, inj.truth, scene.ignore, scene.image, scene.noise_sigma, inj.charge,
                  inj.footprints, scene.instrument, float(exptime))


def simulate_group(
    shape: tuple[int, int] = (256, 256),
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    field: Literal["sparse", "globular", "galaxy"] = "sparse",
    n_exposures: int = 2,
    *,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
) -> list[Sample]:
    """Repeat exposures of one simulated scene (a CR-SPLIT): the same sky, fresh noise and fresh cosmic rays.

    Parameters
    ----------
    shape, instrument, exptime, field
        As :func:`simulate_scene`; ``exptime`` is each exposure's.
    seed : int, SeedSequence or Generator
    n_exposures : int
    rate_scale, catalogue
        As :func:`inject_cosmic_rays`.

    Returns
    -------
    list of Sample
        Named ``e0``, ``e1``, ...
    """
    scene_seed, *exposure_seeds = _seeds(seed, 1 + n_exposures)
    scene = simulate_scene(shape, instrument, exptime, scene_seed, field=field)
    saturated = scene.noiseless >= scene.instrument.saturation
    samples = []
    for k, exposure_seed in enumerate(exposure_seeds):
        noise_seed, ray_seed = _split_seed(exposure_seed)
        image = expose(scene.noiseless.astype(np.float64), saturated, scene.instrument,
                       np.random.default_rng(noise_seed)).astype(np.float32)
        inj = inject_cosmic_rays(image, scene.noise_sigma, scene.instrument, exptime, ray_seed, rate_scale=rate_scale,
                                 catalogue=catalogue)
        samples.append(Sample(inj.image, inj.truth, scene.ignore, image, scene.noise_sigma, inj.charge,
                              inj.footprints, scene.instrument, float(exptime), f"e{k}", field))
    return samples


def _seeds(seed: SeedLike, n: int) -> list:
    if isinstance(seed, np.random.Generator):
        return list(seed.spawn(n))
    return list((seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)).spawn(n))


def _split_seed(seed: SeedLike) -> tuple:
    """Two independent streams (scene, rays) from one seed."""
    if isinstance(seed, np.random.Generator):
        return tuple(seed.spawn(2))
    if not isinstance(seed, np.random.SeedSequence):
        seed = np.random.SeedSequence(seed)
    return tuple(seed.spawn(2))


def training_pair_from_real(
    image,
    instrument: str | Instrument = "ACS-WFC",
    exptime: float = 500.0,
    seed: SeedLike = 0,
    gain: float = 1.0,
    read_noise: float | None = None,
    *,
    ignore=None,
    rate_scale: float = 1.0,
    catalogue: FootprintCatalogue | str | os.PathLike | None = "auto",
    real_fraction: float = 0.7,
    truth_sigma: float = TRUTH_SIGMA,
) -> Sample:
    """Turn a real frame into a training pair by injecting extra cosmic rays.

    The frame's own rays are found conservatively (:func:`find_own_cosmic_rays`) and go to ``ignore``;
    ``truth`` holds the injected rays only.

    Parameters
    ----------
    image : 2-D array
        The real frame; multiplied by ``gain`` to give electrons (``gain=1`` for a frame in electrons).
    instrument : str or Instrument
        Sets the ray rate, footprint scaling and saturation.
    exptime : float
        Seconds (sets the number of injected rays with ``rate_scale``).
    seed : int, SeedSequence or Generator
    gain : float
        Electrons per input unit.
    read_noise : float, optional
        Electrons; default the instrument's.
    ignore : 2-D bool array, optional
        Known bad pixels (e.g. from a DQ array), kept in ``ignore``.
    rate_scale, catalogue, real_fraction, truth_sigma
        As :func:`inject_cosmic_rays`.

    Returns
    -------
    Sample
        ``clean`` is the frame in electrons (its own rays included; they are in ``ignore``).
    """
    inst = get_instrument(instrument)
    rn = inst.read_noise if read_noise is None else float(read_noise)
    frame = np.asarray(image, np.float64) * gain
    if frame.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {frame.shape}")
    bad = ~np.isfinite(frame)
    if bad.any():  # never let NaN/inf spread: fill with the median, and ignore them
        frame[bad] = np.median(frame[~bad]) if (~bad).any() else 0.0
    sigma = local_noise(frame, rn)
    ign = bad | find_own_cosmic_rays(frame, sigma)
    ign |= ndimage.binary_dilation(frame >= 0.98 * inst.saturation, np.ones((3, 3), bool))
    if ignore is not None:
        ign |= np.asarray(ignore, bool)
    clean = frame.astype(np.float32)
    inj = inject_cosmic_rays(
        clean, sigma, inst, exptime, seed,
        rate_scale=rate_scale, catalogue=catalogue, real_fraction=real_fraction, truth_sigma=truth_sigma,
    )
    return Sample(inj.image, inj.truth, ign, clean, sigma.astype(np.float32), inj.charge, inj.footprints,
                  inst, float(exptime))
