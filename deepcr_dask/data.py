"""Where the shared real frames live (never copied into the package or the repository)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["real_data_dir"]


def real_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder of real frames: ``path``, else ``$DEEPCR_DASK_REAL_DATA``, else ``../shared/data/real``.

    ``../shared`` is looked for beside the source checkout, then beside the working directory; the first
    candidate is returned when none exists, so messages can name where the data was expected.
    """
    if path is not None:
        return Path(path)
    env = os.environ.get("DEEPCR_DASK_REAL_DATA")
    if env:
        return Path(env)
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "real",
                  Path.cwd().parent / "shared" / "data" / "real"]
    return next((c for c in candidates if c.is_dir()), candidates[0])
