"""The benchmark's scenes, independent truth first.

* **Pair fields** (:data:`PAIR_FIELDS`): each exposure of a real repeat pair (HST/STIS CR-SPLIT long-slit
  spectra, the WHT ISIS pair) with the pair difference as truth (:func:`~deepcr_dask.sim.pairs.pair_truth`);
  hot, saturated and ambiguous pixels ignored; the other exposure, scaled, is the inpainting truth.
* **HST-ray fields** (:data:`HSTRAY_FIELDS`): real HST rays harvested from the STIS pairs of one split
  (:func:`~deepcr_dask.sim.harvest.harvested_catalogue`) injected, as recorded, into real frames of other
  cameras.
* **Own-label fields** (:data:`REAL_FIELDS`): real frames with imSim lab-dark rays injected; their own rays
  are found by our heuristics and ignored: truth partly of our own making, never a ranking alone.
* **Simulated fields** (:data:`SIM_FIELDS`).

A scene is a :class:`~deepcr_dask.sim.Sample` with its ``name`` and ``field`` set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from ..data import real_data_dir
from ..sim import (
    CATALOGUE_NAME,
    REAL_FIELDS,
    FootprintCatalogue,
    RayFootprint,
    RealFrame,
    Sample,
    crop_to_multiple,
    footprint_catalogue,
    inject_catalogue_footprints,
    real_frames,
    simulate,
)
from .config import HSTRAY_FIELDS, INDEPENDENT_FIELDS, PAIR_FIELDS, SIM_FIELDS, BenchmarkConfig

__all__ = ["FOOTPRINT_FILE", "HSTRAY_FIELDS", "INDEPENDENT_FIELDS", "INJECTION_RATES", "PAIR_FIELDS", "REAL_FIELDS",
           "SIM_FIELDS", "build_scenes", "injected_scenes", "pair_scenes", "pooled_probabilities",
           "simulated_scenes"]

# The STIS associations whose pair-difference scenes each split scores (the harvest's splits: whole
# associations, so a split's scenes never hold a ray that was harvested for another split).
WHT_ROWS = slice(1536, 2560)  # 1024 of the 4096 rows (1 Mpix per exposure), the middle of the spectrum
FOOTPRINT_FILE = CATALOGUE_NAME
SIDE_MULTIPLE = 4  # deepCR's inpaint nets need sides that are multiples of 4; scenes are cropped to it
# Rays injected per real frame: the expected count at these rates (events / cm^2 / s) over the frame's
# area and exposure. HST cameras: 1.2, the low end of the 1.2-2 the instrument handbooks quote; ground
# cameras: the imSim ITL lab darks' rate (1764 events in 1500 s over 16.288 Mpix of 10 um pixels: sea-level
# muons plus the sensor package's radioactivity), which gives enough rays to score small frames.
INJECTION_RATES = {True: 1.2, False: 1764 / (1500.0 * 16.288e6 * (10e-4) ** 2)}


def expected_rays(frame: RealFrame, rate: float | None = None) -> int:
    """Rays to inject into ``frame``: the expected number at ``rate`` (events / cm^2 / s; default the
    camera's :data:`INJECTION_RATES`), at least 1."""
    area = frame.image.size * (frame.instrument.pixel_um * 1e-4) ** 2
    rate = INJECTION_RATES[frame.instrument.space] if rate is None else rate
    return max(1, round(rate * area * frame.exptime))


def injected_scenes(field: str, frames: Sequence[RealFrame], catalogue: FootprintCatalogue, realisations: int,
                    seed: int = 0, rate: float | None = None) -> list[Sample]:
    """Each frame ``realisations`` times, with a fresh draw of catalogue footprints (:func:`expected_rays`)."""
    scenes = []
    for i, frame in enumerate(frames):
        n = expected_rays(frame, rate)
        for r in range(realisations):
            injection = inject_catalogue_footprints(frame.image, catalogue, n, np.random.default_rng([seed, i, r]))
            noise = np.sqrt(np.clip(frame.image, 0, None) + frame.instrument.read_noise**2).astype(np.float32)
            scenes.append(Sample(injection.image, injection.truth, frame.ignore, frame.image, noise, injection.charge,
                                 injection.footprints, frame.instrument, frame.exptime, f"{frame.name}-r{r}", field))
    return scenes


def pair_scenes(field: str, folder=None, split: str = "test") -> list[Sample]:
    """Each exposure of the real pairs of ``field`` ("stis": the associations of ``split``), truth from the
    pair difference, cropped to multiples of 4."""
    from ..sim.pairs import pair_truth, split_pairs

    scenes = []
    for pair in split_pairs(field, split, folder):
        rows = WHT_ROWS if field == "wht" else slice(None)
        for k in (0, 1):
            truth, ambiguous = pair_truth(pair, k)
            image = pair.exposures[k].astype(np.float32)
            clean = pair.reference(k).astype(np.float32)
            noise = np.sqrt(np.clip(clean, 0, None) + pair.read_noise**2).astype(np.float32)
            arrays = [crop_to_multiple(a[rows], SIDE_MULTIPLE)
                      for a in (image, truth, pair.ignore | ambiguous, clean, noise)]
            image, truth, ignore, clean, noise = arrays
            charge = np.where(truth, image - clean, 0).astype(np.float32)
            scenes.append(Sample(np.ascontiguousarray(image), truth, ignore, clean, noise, charge,
                                 _pair_rays(truth, charge), pair.instrument, pair.exptimes[k],
                                 f"{pair.name}-e{k}", field))
    return scenes


def _pair_rays(truth: np.ndarray, charge: np.ndarray) -> list[RayFootprint]:
    """The truth's groups (8-connected) as the rays of a pair scene."""
    labels, n = ndimage.label(truth, np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    totals = np.bincount(labels.ravel(), charge.ravel().astype(np.float64), minlength=n + 1)
    rays = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        extent = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        rays.append(RayFootprint("pair", (box[0].start + box[0].stop) // 2, (box[1].start + box[1].stop) // 2,
                                 int(sizes[label]), float(extent), float(totals[label])))
    return rays


def _stis_available(folder) -> bool:
    return (real_data_dir(folder) / "stis_o56502050_raw.fits").is_file()


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
    if field_type in PAIR_FIELDS + HSTRAY_FIELDS and not _stis_available(folder):
        print(f"note: the STIS and WHT pairs were not found in {folder} (set DEEPCR_DASK_REAL_DATA); "
              f"{field_type} skipped")
        return []
    if field_type in PAIR_FIELDS:
        scenes = pair_scenes(field_type, folder, config.split)
        return [replace(s, **{name: crop_to_multiple(getattr(s, name), SIDE_MULTIPLE, config.crop)
                              for name in ("image", "truth", "ignore", "clean", "noise_sigma", "charge")})
                for s in scenes] if config.crop else scenes
    if field_type in HSTRAY_FIELDS:
        from ..sim.harvest import harvested_catalogue

        target = field_type.split("-", 1)[1]
        chips = config.wfpc2_chips if target == "wfpc2" else (0,)
        frames = real_frames(target, folder, chips=chips, crop=config.crop, multiple=SIDE_MULTIPLE)
        # HST rays at HST's rate, whatever the scene's camera: enough rays to score small ground frames
        return injected_scenes(field_type, frames, harvested_catalogue(config.split, folder),
                               config.realisations.get(field_type, config.realisations.get(target, 1)), config.seed,
                               rate=INJECTION_RATES[True])
    if not (folder / FOOTPRINT_FILE).is_file():
        print(f"note: real data not found in {folder} (set DEEPCR_DASK_REAL_DATA); {field_type} skipped")
        return []
    chips = config.omegacen_chips if field_type == "omegacen" else config.wfpc2_chips
    frames = real_frames(field_type, folder, chips=chips, crop=config.crop, multiple=SIDE_MULTIPLE)
    catalogue = footprint_catalogue(folder / FOOTPRINT_FILE)
    return injected_scenes(field_type, frames, catalogue, config.realisations.get(field_type, 1), config.seed)
