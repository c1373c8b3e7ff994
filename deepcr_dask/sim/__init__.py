"""The simulator: realistic CCD scenes and cosmic-ray injection, seeded and reproducible.

Scenes (:func:`simulate_scene`) hold sky with a gradient, stars with a sampled PSF (Moffat or a Gaussian
mixture, sub-pixel centres, pixel-integrated), Sersic galaxies, saturation with bleed trails, hot pixels and bad
columns (both in the ``ignore`` mask), Poisson and read noise and the gain's digitisation. Images are in
electrons.

Cosmic rays (:func:`inject_cosmic_rays`) mix real footprints from the imSim ITL catalogue (lab darks of a
100 um thick sensor with 10 um pixels) with synthetic straight tracks and curly "worms". Real footprints are
rotated by a random angle, mirrored, and rescaled to the target detector:

* charge scales with the silicon path length, so with thickness: ``amp = t / 100 um``;
* the diffusion width is a physical size, so in pixels it scales with ``10 um / pixel``;
* the *track* part of a footprint (its elongation beyond its width) is ``t * tan(theta) / pixel`` long, so it
  scales with ``(t / pixel) / (100 um / 10 um)``: a 15 um thick HST CCD with 15 um pixels gets tracks ten
  times shorter than the lab sensor, while the diffusion blob only shrinks by 2/3.

Only the count depends on the exposure: ``Poisson(rate * exptime * area)``, with the rate per cm^2 per second
from the instrument preset. The truth mask marks pixels whose injected charge exceeds ``truth_sigma`` times
the local noise sigma (default :data:`TRUTH_SIGMA` = 1: the ray changes that pixel by more than its noise).

Everything draws from ``numpy.random.default_rng(seed)``: the same seed gives identical arrays (as long as the
footprint catalogue is equally present or absent).

Modules: :mod:`.instruments` (presets), :mod:`.catalogue` (real footprints), :mod:`.rays` (synthetic rays,
injection), :mod:`.scenes` (simulated frames), :mod:`.samples` (frames with rays and truth), :mod:`.own_rays`
(a real frame's own cosmic rays), :mod:`.sharpness` (peaks too sharp for a star), :mod:`.real` (the real
frames of ``../shared/data/real``), :mod:`.pairs` (real repeat exposures: rays with a truth from their
difference), :mod:`.harvest` (real HST rays cut from the STIS pairs into catalogues, by whole association).
"""

from __future__ import annotations

from .catalogue import CATALOGUE_NAME, FootprintCatalogue, footprint_catalogue
from .harvest import HARVEST_SPLITS, harvested_catalogue
from .instruments import INSTRUMENTS, Instrument, get_instrument
from .own_rays import find_own_cosmic_rays, local_noise, source_pixels
from .pairs import RealPair, pair_truth
from .rays import (
    TRUTH_SIGMA,
    Injection,
    RayFootprint,
    expected_ray_count,
    inject_catalogue_footprints,
    inject_cosmic_rays,
)
from .real import REAL_FIELDS, RealFrame, crop_to_multiple, real_frames
from .samples import Sample, simulate, simulate_group, training_pair_from_real
from .scenes import Scene, simulate_scene

__all__ = [
    "CATALOGUE_NAME",
    "HARVEST_SPLITS",
    "INSTRUMENTS",
    "REAL_FIELDS",
    "TRUTH_SIGMA",
    "FootprintCatalogue",
    "Injection",
    "Instrument",
    "RayFootprint",
    "RealFrame",
    "RealPair",
    "Sample",
    "Scene",
    "crop_to_multiple",
    "expected_ray_count",
    "find_own_cosmic_rays",
    "footprint_catalogue",
    "get_instrument",
    "harvested_catalogue",
    "inject_catalogue_footprints",
    "inject_cosmic_rays",
    "local_noise",
    "pair_truth",
    "real_frames",
    "simulate",
    "simulate_group",
    "simulate_scene",
    "source_pixels",
    "training_pair_from_real",
]
