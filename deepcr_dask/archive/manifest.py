"""The archive manifest: one SQLite row per file and chip, written by the driver as results land."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLUMNS", "MANIFEST_NAME", "Manifest", "default_manifest_path"]

MANIFEST_NAME = "manifest.sqlite"

COLUMNS = (
    "path", "chip", "status", "seconds", "cr_fraction", "cr_pixels", "pixels", "model", "weight_hash", "threshold",
    "options", "size", "mtime", "error", "fits_output", "zarr_group", "finished", "version", "instrument", "notes",
    "group_name", "product", "worker",
)
STATUSES = ("done", "suspect", "skipped", "failed")  # suspect: flagged, not inpainted, reasons in `error`
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chips (
    path TEXT NOT NULL, chip TEXT NOT NULL, status TEXT NOT NULL, seconds REAL, cr_fraction REAL,
    cr_pixels INTEGER, pixels INTEGER, model TEXT, weight_hash TEXT, threshold REAL, options TEXT,
    size INTEGER, mtime REAL, error TEXT, fits_output TEXT, zarr_group TEXT, finished TEXT,
    version TEXT, instrument TEXT, notes TEXT, group_name TEXT, product TEXT, worker TEXT,
    PRIMARY KEY (path, chip)
)
"""
# Columns added since the first layout: an older manifest gains them when opened.
_ADDED = {"version": "TEXT", "instrument": "TEXT", "notes": "TEXT", "group_name": "TEXT", "product": "TEXT",
          "worker": "TEXT"}  # worker: the Dask worker address that cleaned the file (its node)


@dataclass
class Manifest:
    """SQLite manifest in the output directory (``manifest.sqlite``)."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL + a commit per file: a SIGKILL of the driver loses at most the file in hand.
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(chips)")}
        for column, kind in _ADDED.items():  # a manifest from an earlier version gains the new columns
            if column not in present:
                self._db.execute(f"ALTER TABLE chips ADD COLUMN {column} {kind}")
        self._db.commit()

    def record(self, rows: list[dict]) -> None:
        """Replace the rows of the files these rows describe (all chips of a file at once)."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._db:
            for path in {row["path"] for row in rows}:
                self._db.execute("DELETE FROM chips WHERE path = ?", (path,))
            for row in rows:
                values = [row.get(c) for c in COLUMNS]
                values[COLUMNS.index("finished")] = now
                self._db.execute(f"INSERT INTO chips ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                 values)

    def rows(self, path: str | None = None) -> list[dict]:
        query = f"SELECT {', '.join(COLUMNS)} FROM chips" + (" WHERE path = ?" if path else "") + " ORDER BY path, chip"
        return [dict(zip(COLUMNS, r)) for r in self._db.execute(query, (path,) if path else ())]

    def completed(self, path: str, size: int, mtime: float, options: str, *, version: str,
                  weight_hash=None) -> list[dict] | None:
        """The rows of ``path`` if its last run finished for this exact input, these options, this package
        version and, for cleaned chips, the weights their model has now (``weight_hash(model) -> hash``)."""
        rows = self.rows(path)
        if not rows:
            return None
        for row in rows:
            if row["status"] not in ("done", "suspect", "skipped") or row["size"] != size or row["options"] != options:
                return None
            if row["mtime"] is None or abs(row["mtime"] - mtime) > 1e-6 or row["version"] != version:
                return None
            stale = weight_hash is not None and row["weight_hash"] != weight_hash(row["model"])
            if row["status"] != "skipped" and stale:
                return None
        return rows

    def close(self) -> None:
        self._db.close()


def default_manifest_path(output: Path | str) -> Path:
    """``OUT/manifest.sqlite`` for a local output folder; for a URL, a local file named after it."""
    if isinstance(output, Path):
        return output / MANIFEST_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepcr-dask" / "manifests"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", output)[-80:].strip("_")
    return cache / f"{label}-{hashlib.sha256(output.encode()).hexdigest()[:10]}.sqlite"
