"""Archive runs: files in, cleaned files, Zarr groups and a manifest out.

Where inputs are found and outputs go (:mod:`.layout`), the SQLite manifest (:mod:`.manifest`), repeat
exposures (:mod:`.groups`), the quality gates (:mod:`.gates`), one file or group from headers to outputs
(:mod:`.pipeline`), object-store staging (:mod:`.staging`), the run itself (:mod:`.run`:
:func:`process_archive`) and its QA page (:mod:`.report`)."""

from __future__ import annotations

from .pipeline import CleanOptions, FileResult, clean_file, clean_group
from .run import ArchiveOptions, ArchiveSummary, discover, process_archive, process_file, process_group

__all__ = ["ArchiveOptions", "ArchiveSummary", "CleanOptions", "FileResult", "clean_file", "clean_group", "discover",
           "process_archive", "process_file", "process_group"]
