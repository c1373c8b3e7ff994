"""Provenance: what was done to a file, recorded the same way in FITS headers, Zarr attributes and manifests.

One :class:`Provenance` is built per cleaning (:func:`deepcr_dask.archive.pipeline.clean_file`) and rendered by
the writers: FITS keywords and a HISTORY line (:meth:`Provenance.fits_cards`, :meth:`Provenance.history`),
Zarr attributes and manifest columns (:meth:`Provenance.as_dict`). Like ccdproc's step log, the record is
made in one place, not by each writer.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field

from .._version import __version__

__all__ = ["Provenance"]


@dataclass(frozen=True)
class Provenance:
    """The settings and software a cleaning used."""

    model: str
    weight_hash: str
    threshold: float
    inpaint: str | None = None
    kernels: str = "reference"
    version: str = __version__
    date: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))

    @classmethod
    def of(cls, cleaner, model: str, threshold: float, inpaint: str | None) -> Provenance:
        """The provenance of a cleaning by ``cleaner`` (a :class:`~deepcr_dask.Cleaner`)."""
        return cls(model, cleaner.mask_model.weight_hash, float(threshold), inpaint, cleaner.kernels)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def fits_cards(self, cr_bit: int, flagged: int) -> dict[str, tuple[object, str]]:
        """Primary-header keywords: ``{KEYWORD: (value, comment)}``."""
        return {
            "CRMODEL": (self.model, "deepcr-dask mask model"),
            "CRINPNT": (self.inpaint or "median", "deepcr-dask inpainting"),
            "CRWHASH": (self.weight_hash, "SHA-256 (16 hex) of the mask weights"),
            "CRTHRESH": (self.threshold, "cosmic-ray probability threshold"),
            "CRBIT": (int(cr_bit), "DQ bit set on cosmic-ray pixels"),
            "CRNPIX": (int(flagged), "pixels flagged as cosmic rays"),
            "CRVERS": (self.version, "deepcr-dask version"),
            "CRDATE": (self.date, "UTC date of cleaning"),
        }

    def history(self, cr_bit: int, flagged: int) -> str:
        """One HISTORY line saying what was done."""
        return (f"deepcr-dask {self.version}: cosmic rays found with model {self.model} at threshold "
                f"{self.threshold}; {flagged} pixels flagged with DQ bit {cr_bit} and replaced by inpainting "
                f"({self.inpaint or 'median'})")
