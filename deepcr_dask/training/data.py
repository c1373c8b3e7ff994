"""Training pairs cut from real frames with injected cosmic rays, and mixes of real and simulated pairs.

Real frames (:func:`deepcr_dask.sim.real_frames`: their own rays found conservatively and ignored) give
the scenes; each patch gets a fresh draw of rays. HST cameras get real HST rays: footprints harvested from
the STIS CR-SPLIT pairs of the training split (:func:`~deepcr_dask.sim.harvest.harvested_catalogue`),
rescaled to the camera, with imSim's thick-sensor footprints and the simulator's tracks and worms kept as a
minority (:data:`IMSIM_SHARE`, for the long muon tracks); ground cameras get imSim footprints rescaled, or,
for a share of the patches, as recorded. Each patch's sky is moved by a random constant
(:data:`SKY_OFFSET_E`): what is a ray does not depend on the sky level, and a model must not learn the sky of
its few training frames.

:func:`pair_patches` cuts patches from the exposures of real repeat pairs with the pair difference as the
label: real rays on real HST CCDs, labelled by no algorithm of ours. Frames are named ``FIELD[:CHIPS]``
(``omegacen:0,1,2``); training and validation take whole frames (whole STIS associations), never pixels of
one frame on both sides.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["IMSIM_SHARE", "SKY_OFFSET_E", "Pairs", "frames_from_names", "mixed_pairs", "pair_patches", "real_pairs"]

IMSIM_SHARE = 0.25  # of an HST patch's rays: imSim footprints, tracks and worms (long tracks are rarer on HST)
SKY_OFFSET_E = (-0.9, 250.0)  # a patch's constant sky offset: from -90% of its median up to +250 e-


@dataclass
class Pairs:
    """Training data: images (N, H, W), labels (mask: truth; inpaint: the clean image), ignore masks."""

    images: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    masks: np.ndarray | None = None  # inpaint training: the pixels to fill

    def __len__(self) -> int:
        return len(self.images)

    def split(self, fraction: float, seed: int) -> tuple[Pairs, Pairs]:
        order = np.random.default_rng(seed).permutation(len(self))
        n_val = max(1, round(len(self) * fraction))
        return self._take(order[n_val:]), self._take(order[:n_val])

    def _take(self, idx) -> Pairs:
        return Pairs(self.images[idx], self.labels[idx], self.ignore[idx],
                     None if self.masks is None else self.masks[idx])


def _sky_offset(clean: np.ndarray, ignore: np.ndarray, rng: np.random.Generator) -> float:
    """A random constant for a patch: from -90% of its sky (its median) up to +250 e-."""
    good = clean[~ignore]
    sky = max(float(np.median(good)) if good.size else 0.0, 0.0)
    return float(rng.uniform(SKY_OFFSET_E[0] * sky, SKY_OFFSET_E[1]))


def frames_from_names(names: Sequence[str], folder=None) -> list:
    """Real frames from ``FIELD[:CHIPS]`` names (see :func:`deepcr_dask.sim.real_frames`)."""
    from ..sim import REAL_FIELDS, real_frames

    frames = []
    for name in names:
        field, _, chips = name.partition(":")
        if field not in REAL_FIELDS:
            raise InputError(f"unknown real field {field!r} in {name!r}; known: {', '.join(REAL_FIELDS)}")
        options = {"chips": tuple(int(c) for c in chips.split(","))} if chips else {}
        frames.extend(real_frames(field, folder, **options))
    return frames


@functools.lru_cache(maxsize=16)
def _pixels_per_ray(catalogue, instrument) -> float:
    """Mean pixel count of the catalogue's footprints rescaled to ``instrument`` (once per camera)."""
    n_pixels, _, _ = catalogue.properties(instrument)
    return max(float(np.mean(n_pixels)), 1.0)


def real_pairs(frames: Sequence, n: int, patch: int = 128, seed: int = 0, *, ray_fraction: float = 0.015,
               raw_fraction: float = 0.3, kind: str = "mask", sky_offset: bool = True,
               used_ids: set[int] | None = None):
    """``n`` random ``patch``² crops of ``frames`` (cycled), each with freshly injected cosmic rays.

    Parameters
    ----------
    frames : sequence of RealFrame
    n, patch, seed
    ray_fraction : float
        Mean fraction of a patch's pixels the injected rays cover (about ten times an HST exposure's own,
        so that every patch teaches something; the rate does not change what a ray looks like).
    raw_fraction : float
        Share of ground patches whose rays are imSim footprints as recorded, not rescaled to the camera.
    kind : {"mask", "inpaint"}
    sky_offset : bool
        Move each patch's sky by a random constant (:data:`SKY_OFFSET_E`).
    used_ids : set, optional
        Collects the catalogue ids of the real footprints injected (to check splits).

    Returns
    -------
    Pairs
    """
    from ..sim import footprint_catalogue, inject_catalogue_footprints, inject_cosmic_rays, local_noise
    from ..sim.harvest import harvested_catalogue

    if not frames:
        raise InputError("no real frames to cut training patches from")
    catalogue = footprint_catalogue()
    hst_rays = harvested_catalogue("train") if any(f.instrument.space for f in frames) else None
    mean_pixels = float(np.mean(catalogue.n_pixels))  # of an unrescaled footprint
    rng = np.random.default_rng(seed)
    images, labels, ignores, truths = [], [], [], []
    for i in range(n):
        frame = frames[i % len(frames)]
        h, w = frame.image.shape
        if h < patch or w < patch:
            raise InputError(f"real frame {frame.name} ({h}x{w}) is smaller than a {patch}² patch")
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        clean = np.ascontiguousarray(frame.image[y:y + patch, x:x + patch], np.float32)
        ignore = frame.ignore[y:y + patch, x:x + patch].copy()
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))  # the sky has no preferred orientation
        clean, ignore = np.rot90(clean, turns), np.rot90(ignore, turns)
        if flip:
            clean, ignore = clean[:, ::-1], ignore[:, ::-1]
        clean, ignore = np.ascontiguousarray(clean), np.ascontiguousarray(ignore)
        if sky_offset:
            clean = (clean + np.float32(_sky_offset(clean, ignore, rng))).astype(np.float32)
        if frame.instrument.space and rng.random() >= IMSIM_SHARE:
            sigma = local_noise(clean, frame.instrument.read_noise)
            count = max(1, int(rng.poisson(ray_fraction * patch * patch / _pixels_per_ray(hst_rays, frame.instrument))))
            injection = inject_cosmic_rays(clean, sigma, frame.instrument, frame.exptime, rng, catalogue=hst_rays,
                                           real_fraction=1.0, n_rays=count)
        elif rng.random() < raw_fraction:
            count = max(1, int(rng.poisson(ray_fraction * patch * patch / mean_pixels)))
            injection = inject_catalogue_footprints(clean, catalogue, count, rng)
        else:
            sigma = local_noise(clean, frame.instrument.read_noise)
            # the simulator draws Poisson(rate x exptime x area): scale its rate to the wanted coverage
            probe = inject_cosmic_rays(clean, sigma, frame.instrument, frame.exptime, rng, catalogue=catalogue,
                                       n_rays=64)
            per_ray = max(float(probe.truth.sum()) / 64.0, 1.0)
            count = max(1, int(rng.poisson(ray_fraction * patch * patch / per_ray)))
            injection = inject_cosmic_rays(clean, sigma, frame.instrument, frame.exptime, rng, catalogue=catalogue,
                                           n_rays=count)
        if used_ids is not None:
            used_ids.update(f.source_id for f in injection.footprints if f.real)
        images.append(injection.image)
        labels.append(injection.truth.astype(np.float32) if kind == "mask" else clean)
        truths.append(injection.truth)
        ignores.append(ignore)
    images_a, ignores_a = np.stack(images).astype(np.float32), np.stack(ignores)
    if kind == "mask":
        return Pairs(images_a, np.stack(labels), ignores_a)
    return Pairs(images_a, np.stack(labels).astype(np.float32), ignores_a, np.stack(truths))


def pair_patches(split: str, n: int, patch: int = 128, seed: int = 0, *, sky_offset: bool = True):
    """``n`` random ``patch``² crops of the STIS CR-SPLIT exposures of ``split`` (whole associations,
    :data:`~deepcr_dask.sim.harvest.HARVEST_SPLITS`), labelled by the pair difference; hot, saturated and
    ambiguous pixels ignored. Mask training only.

    Returns
    -------
    Pairs
    """
    from ..sim.harvest import HARVEST_SPLITS
    from ..sim.pairs import pair_truth
    from ..sim.pairs import real_pairs as repeat_pairs

    exposures = []
    for pair in repeat_pairs("stis", associations=HARVEST_SPLITS[split]):
        for k in (0, 1):
            truth, ambiguous = pair_truth(pair, k)
            exposures.append((pair.exposures[k], truth, pair.ignore | ambiguous))
    rng = np.random.default_rng(seed)
    images, labels, ignores = [], [], []
    for i in range(n):
        image, truth, ignore = exposures[i % len(exposures)]
        h, w = image.shape
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        crops = [a[y:y + patch, x:x + patch] for a in (image, truth, ignore)]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        crops = [np.rot90(a, turns) for a in crops]
        crops = [np.ascontiguousarray(a[:, ::-1] if flip else a) for a in crops]
        img = crops[0].astype(np.float32)
        if sky_offset:
            img = img + np.float32(_sky_offset(img, crops[2], rng))
        images.append(img)
        labels.append(crops[1].astype(np.float32))
        ignores.append(crops[2])
    return Pairs(np.stack(images).astype(np.float32), np.stack(labels), np.stack(ignores))


def mixed_pairs(parts: Sequence) -> Pairs:
    """One :class:`~deepcr_dask.training.train.Pairs` from several (real and simulated), in order."""

    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise InputError("no training pairs")
    masks = None if any(p.masks is None for p in parts) else np.concatenate([p.masks for p in parts])
    return Pairs(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                 np.concatenate([p.ignore for p in parts]), masks)
