"""Local median filling: the inpainting fallback, and how ignored pixels are hidden from the networks.

Every operation here is local with a known support (``radius * passes`` pixels), so a tile that
carries that much margin fills exactly as the whole image does.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["fill_support", "median_fill"]

DEFAULT_RADIUS = 2  # 5x5 windows, as deepCR's median inpainting
DEFAULT_PASSES = 3


def fill_support(radius: int = DEFAULT_RADIUS, passes: int = DEFAULT_PASSES) -> int:
    """How far (px) a filled value can depend on its neighbours."""
    return radius * passes


def median_fill(
    image: np.ndarray,
    targets: np.ndarray,
    sources: np.ndarray | None = None,
    *,
    background: float = 0.0,
    radius: int = DEFAULT_RADIUS,
    passes: int = DEFAULT_PASSES,
) -> np.ndarray:
    """Replace ``targets`` pixels by the median of usable pixels in a ``(2 radius + 1)`` square.

    Each pass fills the targets that have at least one usable neighbour; filled pixels become usable
    for the next pass, so holes up to ``radius * passes`` pixels across are filled from their edges.
    Targets still empty after the last pass get ``background``.

    Parameters
    ----------
    image : 2-D float array
    targets : 2-D bool array
        Pixels to replace.
    sources : 2-D bool array, optional
        Pixels whose values may be used; by default every pixel that is not a target.
    background : float
        Value for targets with no usable pixel within reach.

    Returns
    -------
    numpy.ndarray
        A float32 copy of ``image`` with the targets replaced.
    """
    out = np.array(image, dtype=np.float32, copy=True)
    todo = np.array(targets, dtype=bool, copy=True)
    usable = ~todo if sources is None else (np.asarray(sources, dtype=bool) & ~todo)
    size = 2 * radius + 1
    for _ in range(passes):
        if not todo.any():
            break
        rows, cols = np.nonzero(todo)
        values = np.where(usable, out, np.float32(np.nan))
        padded = np.pad(values, radius, mode="constant", constant_values=np.nan)
        windows = sliding_window_view(padded, (size, size))[rows, cols].reshape(len(rows), -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: left for the next pass
            medians = np.nanmedian(windows, axis=1)
        found = ~np.isnan(medians)
        out[rows[found], cols[found]] = medians[found]
        todo[rows[found], cols[found]] = False
        usable[rows[found], cols[found]] = True
    out[todo] = background
    return out
