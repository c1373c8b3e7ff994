"""Zarr v3 output: one group per exposure and chip, written whole under a temporary name, then renamed.

Layout::

    store.zarr/
      <exposure>/<chip>/mask         uint8 (1 = cosmic ray)
      <exposure>/<chip>/cleaned      float32 electrons
      <exposure>/<chip>/probability  float32 (optional)

Each chip group's attributes hold the provenance and, written last, ``"complete": true``. The group is
built in ``store.zarr/.tmp/`` and moved into place with one ``rename``, so a reader (or a rerun after a
crash) never sees a half-written chip under its final name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.storage import LocalStore

__all__ = ["chip_group_path", "is_complete", "read_chip_group", "write_chip_group"]

CHUNK = 1024


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "x"


def chip_group_path(exposure: str, chip: str) -> str:
    """Group path of one chip inside the store, e.g. ``"visit1/j8xi01abq_flc/SCI_1"`` (``/`` separates the
    folders an archive run mirrors)."""
    return "/".join(_safe(part) for part in [*exposure.split("/"), chip] if part)


def _require_group(root: Path, path: str) -> None:
    """Create the group at ``path`` (and the root group) through the zarr API if missing.

    Workers writing chips of one exposure race to create its group; one of them wins, and the others
    find it made.
    """
    for attempt in range(3):
        try:
            group = zarr.open_group(store=LocalStore(str(root)), mode="a", zarr_format=3)
            if path:
                group.require_group(path)
            return
        except (zarr.errors.ContainsGroupError, zarr.errors.ContainsArrayError, FileExistsError):
            if attempt == 2:
                raise


def write_chip_group(
    store: str | os.PathLike,
    exposure: str,
    chip: str,
    arrays: dict[str, np.ndarray],
    attributes: dict,
) -> str:
    """Write one chip's arrays and attributes; returns the group path. Replaces an existing group."""
    root = Path(store)
    group_path = chip_group_path(exposure, chip)
    _require_group(root, group_path.rpartition("/")[0])
    final = root / group_path
    tmp = root / ".tmp" / uuid.uuid4().hex
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        group = zarr.open_group(store=LocalStore(str(tmp)), mode="w", zarr_format=3)
        for name, data in arrays.items():
            chunks = tuple(min(CHUNK, n) for n in data.shape)
            array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks)
            array[...] = data
        group.attrs.update({**attributes, "complete": False})
        group.attrs["complete"] = True  # the completion marker, last
        if final.exists():
            trash = root / ".tmp" / f"old-{uuid.uuid4().hex}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return group_path


def is_complete(store: str | os.PathLike, group_path: str) -> bool:
    """True when the chip group exists and carries its completion marker."""
    meta = Path(store) / group_path / "zarr.json"
    try:
        return bool(json.loads(meta.read_text()).get("attributes", {}).get("complete"))
    except (OSError, ValueError):
        return False


def read_chip_group(store: str | os.PathLike, group_path: str) -> dict[str, np.ndarray]:
    """All arrays of a chip group, plus its attributes under ``"attrs"``."""
    group = zarr.open_group(store=LocalStore(str(store), read_only=True), mode="r", path=group_path)
    out: dict = {name: array[...] for name, array in group.arrays()}
    out["attrs"] = dict(group.attrs)
    return out


def clear_temporary(store: str | os.PathLike) -> None:
    """Remove leftovers of interrupted writes (called before a run starts)."""
    shutil.rmtree(Path(store) / ".tmp", ignore_errors=True)
