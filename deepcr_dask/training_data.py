"""Training pairs cut from real frames with injected cosmic rays, and mixes of real and simulated pairs.

Real frames (:func:`deepcr_dask.sim.real_frames`: their own rays found conservatively and ignored) give
the scenes; each patch gets a fresh draw of rays: footprints from the imSim catalogue rescaled to the
camera and the simulator's tracks and worms (:func:`~deepcr_dask.sim.inject_cosmic_rays`), or, for a share
of the patches, the catalogue's footprints as recorded (thick-sensor tracks and worms, as the evaluation
injects them). Frames are named ``FIELD[:CHIPS]`` (``omegacen:0,1,2``); training and validation take whole
frames, never pixels of one frame on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .train import Pairs

__all__ = ["frames_from_names", "mixed_pairs", "real_pairs"]


def frames_from_names(names: Sequence[str], folder=None) -> list:
    """Real frames from ``FIELD[:CHIPS]`` names (see :func:`deepcr_dask.sim.real_frames`)."""
    from .sim import REAL_FIELDS, real_frames

    frames = []
    for name in names:
        field, _, chips = name.partition(":")
        if field not in REAL_FIELDS:
            raise InputError(f"unknown real field {field!r} in {name!r}; known: {', '.join(REAL_FIELDS)}")
        options = {"chips": tuple(int(c) for c in chips.split(","))} if chips else {}
        frames.extend(real_frames(field, folder, **options))
    return frames


def real_pairs(frames: Sequence, n: int, patch: int = 128, seed: int = 0, *, ray_fraction: float = 0.015,
               raw_fraction: float = 0.3, kind: str = "mask"):
    """``n`` random ``patch``² crops of ``frames`` (cycled), each with freshly injected cosmic rays.

    Parameters
    ----------
    frames : sequence of RealFrame
    n, patch, seed
    ray_fraction : float
        Mean fraction of a patch's pixels the injected rays cover (about ten times an HST exposure's own,
        so that every patch teaches something; the rate does not change what a ray looks like).
    raw_fraction : float
        Share of patches whose rays are catalogue footprints as recorded, not rescaled to the camera.
    kind : {"mask", "inpaint"}

    Returns
    -------
    Pairs
    """
    from .sim import footprint_catalogue, inject_catalogue_footprints, inject_cosmic_rays, local_noise
    from .train import Pairs

    if not frames:
        raise InputError("no real frames to cut training patches from")
    catalogue = footprint_catalogue()
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
        if rng.random() < raw_fraction:
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
        images.append(injection.image)
        labels.append(injection.truth.astype(np.float32) if kind == "mask" else clean)
        truths.append(injection.truth)
        ignores.append(ignore)
    images_a, ignores_a = np.stack(images).astype(np.float32), np.stack(ignores)
    if kind == "mask":
        return Pairs(images_a, np.stack(labels), ignores_a)
    return Pairs(images_a, np.stack(labels).astype(np.float32), ignores_a, np.stack(truths))


def mixed_pairs(parts: Sequence) -> Pairs:
    """One :class:`~deepcr_dask.train.Pairs` from several (real and simulated), in order."""
    from .train import Pairs

    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        raise InputError("no training pairs")
    masks = None if any(p.masks is None for p in parts) else np.concatenate([p.masks for p in parts])
    return Pairs(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                 np.concatenate([p.ignore for p in parts]), masks)
