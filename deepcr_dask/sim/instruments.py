"""Detector presets: geometry, noise, cosmic-ray rate and typical scene parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["INSTRUMENTS", "Instrument", "SeedLike", "get_instrument"]

ITL_PIXEL_UM = 10.0  # LSST ITL sensor the imSim footprints come from
ITL_THICKNESS_UM = 100.0
SeedLike = int | np.random.SeedSequence | np.random.Generator | None


@dataclass(frozen=True)
class Instrument:
    """Detector preset: geometry, noise, cosmic-ray rate and typical scene parameters.

    Attributes
    ----------
    name : str
    pixel_um : float
        Pixel pitch in micrometres (sets the detector area, hence the ray count, and footprint scaling).
    pixel_scale_arcsec : float
        Sky size of a pixel (sets galaxy sizes).
    gain : float
        Electrons per DN; images are in electrons, the gain sets the digitisation step.
    read_noise : float
        Electrons RMS.
    saturation : float
        Full well / ADC limit in electrons.
    cr_rate_per_cm2_s : float
        Cosmic-ray events per cm^2 per second.
    fwhm_px : tuple of float
        PSF FWHM range in pixels (seeing range for ground instruments).
    sky_e_per_s : tuple of float
        Sky level range in electrons per second per pixel.
    thickness_um : float
        Sensitive silicon thickness: sets track lengths and the charge per ray.
    space : bool
        Isotropic particle flux (orbit) rather than the zenith-peaked muon flux on the ground.
    diffusion_um : float
        Lateral charge-diffusion sigma in micrometres.
    hot_pixel_fraction : float
    bad_columns_per_kpx : float
        Mean number of bad columns per 1000 columns.
    """

    name: str
    pixel_um: float
    pixel_scale_arcsec: float
    gain: float
    read_noise: float
    saturation: float
    cr_rate_per_cm2_s: float
    fwhm_px: tuple[float, float]
    sky_e_per_s: tuple[float, float]
    thickness_um: float
    space: bool = True
    diffusion_um: float = 4.0
    hot_pixel_fraction: float = 3e-4
    bad_columns_per_kpx: float = 1.0


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in (
        # HST rates: about 1.2-2 events / cm^2 / s in orbit, the same particle flux for every camera.
        Instrument("ACS-WFC", 15.0, 0.05, 1.0, 4.5, 80_000.0, 1.5, (1.9, 2.3), (0.03, 0.15), 15.0),
        # ACS/HRC (the real 47 Tuc frame's header: gain 2.216, read noise 4.71 e-; 21 um pixels of 0.025").
        Instrument("ACS-HRC", 21.0, 0.025, 2.216, 4.71, 140_000.0, 1.5, (2.0, 2.6), (0.01, 0.05), 15.0),
        Instrument("WFC3-UVIS", 15.0, 0.04, 1.0, 3.1, 63_000.0, 1.5, (1.8, 2.0), (0.02, 0.10), 15.0),
        # STIS CCD (SITe 1024x1024, 21 um pixels of 0.05"), CCDGAIN 1: the ADC saturates near 33,000 e-.
        Instrument("STIS-CCD", 21.0, 0.05, 1.0, 4.4, 33_000.0, 1.5, (1.5, 2.5), (0.001, 0.05), 15.0),
        # WFPC2 at gain 7 saturates in the 12-bit ADC (4095 DN).
        Instrument("WFPC2", 15.0, 0.1, 7.0, 5.3, 28_000.0, 1.5, (1.3, 1.5), (0.03, 0.20), 15.0),
        # Ground: secondary muons at sea level, about 1 / cm^2 / minute.
        Instrument("ground", 15.0, 0.2, 2.0, 5.0, 60_000.0, 0.015, (2.5, 5.0), (5.0, 50.0), 40.0, space=False),
        Instrument(
            "DECam", 15.0, 0.263, 4.0, 7.0, 150_000.0, 0.015, (3.0, 5.0), (20.0, 150.0), 250.0,
            space=False, diffusion_um=7.0,
        ),
        # The real ground frames of ../shared/data/real (their headers and README): SAAO 1.0 m STE3 (24 um
        # pixels, GAIN 1.9, RDNOISE 5.0) and Gemini GMOS-S (Hamamatsu, 15 um pixels, gain 1.933, read noise 4.24).
        Instrument("SAAO-STE3", 24.0, 0.31, 1.9, 5.0, 65_535 * 1.9, 0.015, (2.0, 4.0), (5.0, 50.0), 40.0,
                   space=False),
        Instrument("GMOS-S", 15.0, 0.08, 1.933, 4.24, 100_000.0, 0.015, (5.0, 10.0), (5.0, 50.0), 250.0,
                   space=False, diffusion_um=7.0),
        # The catalogue's own sensor (identity rescaling); the rate is the catalogue's lab-dark rate.
        Instrument(
            "LSST-ITL", ITL_PIXEL_UM, 0.2, 1.5, 6.0, 100_000.0, 0.0722, (2.5, 4.5), (10.0, 60.0), ITL_THICKNESS_UM,
            space=False,
        ),
    )
}


def get_instrument(instrument: str | Instrument) -> Instrument:
    """Resolve a preset name (case-insensitive) or pass an :class:`Instrument` through.

    Parameters
    ----------
    instrument : str or Instrument

    Returns
    -------
    Instrument
    """
    if isinstance(instrument, Instrument):
        return instrument
    for name, preset in INSTRUMENTS.items():
        if name.lower() == str(instrument).lower():
            return preset
    raise KeyError(f"unknown instrument {instrument!r}; presets: {', '.join(INSTRUMENTS)}")
