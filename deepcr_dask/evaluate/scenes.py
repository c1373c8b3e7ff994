"""The benchmark's scenes: real frames with injected real cosmic rays, and the simulator's field types.

Everything here comes from the one simulator (:mod:`deepcr_dask.sim`): its real-frame loaders (own rays
ignored), its catalogue-footprint injector and its simulated fields. A scene is a
:class:`~deepcr_dask.sim.Sample` with its ``name`` and ``field`` set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..data import real_data_dir
from ..sim import (
    CATALOGUE_NAME,
    REAL_FIELDS,
    FootprintCatalogue,
    RealFrame,
    Sample,
    crop_to_multiple,
    footprint_catalogue,
    inject_catalogue_footprints,
    real_frames,
    simulate,
)

if TYPE_CHECKING:
    from .benchmark import BenchmarkConfig

__all__ = ["FOOTPRINT_FILE", "INJECTION_RATES", "REAL_FIELDS", "SIM_FIELDS", "build_scenes", "injected_scenes",
           "pooled_probabilities", "simulated_scenes"]

SIM_FIELDS = ("sparse", "globular", "galaxy")
FOOTPRINT_FILE = CATALOGUE_NAME
SIDE_MULTIPLE = 4  # deepCR's inpaint nets need sides that are multiples of 4; scenes are cropped to it
# Rays injected per real frame: the expected count at these rates (events / cm^2 / s) over the frame's
# area and exposure. HST cameras: 1.2, the low end of the 1.2-2 the instrument handbooks quote; ground
# cameras: the imSim ITL lab darks' rate (1764 events in 1500 s over 16.288 Mpix of 10 um pixels: sea-level
# muons plus the sensor package's radioactivity), which gives enough rays to score small frames.
INJECTION_RATES = {True: 1.2, False: 1764 / (1500.0 * 16.288e6 * (10e-4) ** 2)}


def expected_rays(frame: RealFrame) -> int:
    """Rays to inject into ``frame``: the expected number at :data:`INJECTION_RATES`, at least 1."""
    area = frame.image.size * (frame.instrument.pixel_um * 1e-4) ** 2
    return max(1, round(INJECTION_RATES[frame.instrument.space] * area * frame.exptime))


def injected_scenes(field: str, frames: Sequence[RealFrame], catalogue: FootprintCatalogue, realisations: int,
                    seed: int = 0) -> list[Sample]:
    """Each frame ``realisations`` times, with a fresh draw of catalogue footprints (:func:`expected_rays`)."""
    scenes = []
    for i, frame in enumerate(frames):
        n = expected_rays(frame)
        for r in range(realisations):
            injection = inject_catalogue_footprints(frame.image, catalogue, n, np.random.default_rng([seed, i, r]))
            noise = np.sqrt(np.clip(frame.image, 0, None) + frame.instrument.read_noise**2).astype(np.float32)
            scenes.append(Sample(injection.image, injection.truth, frame.ignore, frame.image, noise, injection.charge,
                                 injection.footprints, frame.instrument, frame.exptime, f"{frame.name}-r{r}", field))
    return scenes


def simulated_scenes(field: str, shape: tuple[int, int], seeds: Sequence[int], exptime: float) -> list[Sample]:
    """Scenes of a simulator field type (ACS/WFC-like), cropped to multiples of 4."""
    scenes = []
    for seed in seeds:
        s = simulate(shape=tuple(shape), instrument="ACS-WFC", exptime=exptime, seed=seed, field=field)
        arrays = {name: crop_to_multiple(getattr(s, name), SIDE_MULTIPLE)
                  for name in ("image", "truth", "ignore", "clean", "noise_sigma", "charge")}
        scenes.append(replace(s, **arrays, name=f"{field}-s{seed}", field=field))
    return scenes


def pooled_probabilities(cleaner, scenes: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Cleaner's probabilities over ``scenes``, flattened and pooled: ``(probability, truth, ignore)``,
    each scene given the evaluation's inputs (:func:`~deepcr_dask.evaluate.methods.prepare_inputs`)."""
    from .methods import prepare_inputs

    probs, truths, ignores = [], [], []
    for scene in scenes:
        inputs = prepare_inputs(scene.image, scene.ignore)
        probs.append(cleaner.probability(inputs.image, inputs.ignore).ravel())
        truths.append(scene.truth.ravel())
        ignores.append(inputs.ignore.ravel())
    return tuple(np.concatenate(a) for a in (probs, truths, ignores))


def build_scenes(field_type: str, config: BenchmarkConfig) -> list[Sample]:
    """The scenes of one field type; empty (with a printed note) when its data is missing."""
    if field_type in SIM_FIELDS:
        return simulated_scenes(field_type, config.sim_shape, config.sim_seeds, config.sim_exptime)
    folder = real_data_dir(config.data_dir)
    if not (folder / FOOTPRINT_FILE).is_file():
        print(f"note: real data not found in {folder} (set DEEPCR_DASK_REAL_DATA); {field_type} skipped")
        return []
    chips = config.omegacen_chips if field_type == "omegacen" else config.wfpc2_chips
    frames = real_frames(field_type, folder, chips=chips, crop=config.crop, multiple=SIDE_MULTIPLE)
    catalogue = footprint_catalogue(folder / FOOTPRINT_FILE)
    return injected_scenes(field_type, frames, catalogue, config.realisations.get(field_type, 1), config.seed)
