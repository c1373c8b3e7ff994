"""The tile planner: cores, aligned windows and crops for seam-free tiled inference.

A UNet with pooling stride ``A`` is translation-equivariant only under shifts that are multiples of
``A``, and each output pixel uses input pixels up to ``reach`` away (:func:`deepcr_dask.nn.reach`).
Whole-image inference pads the image with zeros at the top and left to a multiple of ``pad_multiple``
(deepCR's convention). Call that padded frame the *global* frame. A window whose edges lie on
multiples of ``A`` in the global frame (or on the frame's true edges) reproduces whole-image output
everywhere further than ``reach`` from its cut edges.

For one tile core ``C`` (global coordinates) the planner gives two windows: ``inner``, the pixels the
cleaned core is computed from (the inpaint network's aligned window, or the core grown by the median's
support), and ``outer``, the mask network's aligned window around ``inner``. Every step is local with a
known reach, so :meth:`Geometry.margin` is all the margin a tile, or a Dask block, needs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .fill import fill_support

__all__ = [
    "DEEPCR_PAD_MULTIPLE",
    "Frame",
    "Geometry",
    "Span",
    "Tile",
    "TilePlan",
    "aligned_window",
    "crop",
    "image_part",
    "image_span",
    "tiles",
]

DEEPCR_PAD_MULTIPLE = 4  # deepCR zero-pads top/left to a multiple of 4 before whole-image inference


@dataclass(frozen=True)
class Span:
    """Half-open interval ``[start, stop)`` along one axis."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def grow(self, margin: int, limit: Span) -> Span:
        return Span(max(limit.start, self.start - margin), min(limit.stop, self.stop + margin))

    def shift(self, offset: int) -> Span:
        return Span(self.start + offset, self.stop + offset)


@dataclass(frozen=True)
class Frame:
    """One axis of an image of ``length`` pixels inside its zero-padded global frame."""

    length: int
    pad_multiple: int

    @property
    def pad(self) -> int:
        """Zero pixels added before the image (deepCR pads top/left)."""
        return -self.length % self.pad_multiple

    @property
    def padded(self) -> Span:
        return Span(0, self.length + self.pad)

    @property
    def image(self) -> Span:
        """The image's pixels in global coordinates."""
        return Span(self.pad, self.pad + self.length)


@dataclass(frozen=True)
class Geometry:
    """How much margin and which grid tiled inference needs for a mask (+ inpaint) model pair."""

    mask_reach: int  # margin the mask network needs on each side (nn.reach)
    inpaint_net_reach: int | None  # the inpaint network's; None: median inpainting
    alignment: int
    fill_reach: int

    @property
    def pad_multiple(self) -> int:
        return math.lcm(DEEPCR_PAD_MULTIPLE, self.alignment)

    @property
    def inpaint_reach(self) -> int:
        """Margin the inpainting step adds around a core (aligned window or median support)."""
        if self.inpaint_net_reach is None:
            return fill_support()
        return self.inpaint_net_reach + self.alignment - 1

    def margin(self, inpaint: bool = True) -> int:
        """Raw-pixel margin a core needs: fill reach + mask halo (+ inpaint reach), each aligned."""
        margin = self.fill_reach + self.mask_reach + self.alignment - 1
        return margin + self.inpaint_reach if inpaint else margin

    @classmethod
    def for_models(cls, mask: str, inpaint: str | None) -> Geometry:
        """Geometry from the architectures alone: no weights are read."""
        from ..models.zoo import network_geometry

        mask_reach, mask_align = network_geometry(mask, "mask")
        inpaint_reach, inpaint_align = network_geometry(inpaint, "inpaint") if inpaint else (None, 1)
        return cls(mask_reach, inpaint_reach, math.lcm(mask_align, inpaint_align), fill_support())


def aligned_window(core: Span, margin: int, alignment: int, frame: Frame) -> Span:
    """Grow ``core`` by ``margin`` and round outward to the pooling grid, within the padded frame."""
    grown = core.grow(margin, frame.padded)
    start = grown.start - grown.start % alignment
    stop = min(frame.padded.stop, grown.stop + (-grown.stop % alignment))
    return Span(start, stop)


def tiles(core: Span, tile: int) -> list[Span]:
    """Split ``core`` (global coordinates) at multiples of ``tile``, so tiles line up across blocks."""
    cuts = list(range((core.start // tile + 1) * tile, core.stop, tile))
    edges = [core.start, *cuts, core.stop]
    return [Span(a, b) for a, b in itertools.pairwise(edges) if b > a]


def image_span(window, frames) -> tuple[Span, Span]:
    """The part of a global window that lies on image pixels."""
    return tuple(Span(max(w.start, f.image.start), w.stop) for w, f in zip(window, frames))


def image_part(window, frames) -> tuple[slice, slice]:
    """Slices of a global window that hold image pixels (not top/left zero padding)."""
    return tuple(slice(f.image.start - w.start if w.start < f.image.start else 0, w.size)
                 for w, f in zip(window, frames))


def crop(inner, outer) -> tuple[slice, slice]:
    """Slices selecting global box ``inner`` from an array covering global box ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))


@dataclass(frozen=True)
class Tile:
    """One tile core (global coordinates) and the windows it is computed on."""

    core: tuple[Span, Span]
    inner: tuple[Span, Span]  # cleaned pixels come from here (inpaint window, or the median's support)
    outer: tuple[Span, Span] | None  # the mask network's aligned window; None when only inpainting


@dataclass(frozen=True)
class TilePlan:
    """The tiles of one region's core, in whole-image (global, padded) coordinates."""

    frames: tuple[Frame, Frame]
    core: tuple[Span, Span]  # global
    tiles: tuple[Tile, ...]

    @classmethod
    def make(cls, image_shape: tuple[int, int], core: tuple[Span, Span], geometry: Geometry, tile: int, *,
             want: str) -> TilePlan:
        """Plan ``core`` (image coordinates) of an image for ``want`` (``"probability"``, ``"mask"``,
        ``"clean"`` or ``"inpaint"``): cores cut at multiples of ``tile``, windows around them."""
        frames = (Frame(image_shape[0], geometry.pad_multiple), Frame(image_shape[1], geometry.pad_multiple))
        gcore = (core[0].shift(frames[0].pad), core[1].shift(frames[1].pad))
        cleaning = want in ("clean", "inpaint")
        planned = []
        for job in itertools.product(tiles(gcore[0], tile), tiles(gcore[1], tile)):
            if cleaning and geometry.inpaint_net_reach is not None:
                inner = tuple(aligned_window(s, geometry.inpaint_net_reach, geometry.alignment, f)
                              for s, f in zip(job, frames))
            elif cleaning:
                inner = tuple(s.grow(geometry.inpaint_reach, f.image) for s, f in zip(job, frames))
            else:
                inner = job
            outer = None if want == "inpaint" else tuple(
                aligned_window(s, geometry.mask_reach, geometry.alignment, f) for s, f in zip(inner, frames))
            planned.append(Tile(job, inner, outer))
        return cls(frames, gcore, tuple(planned))

    def local(self, region_rows: Span, region_cols: Span, window) -> tuple[slice, slice]:
        """Slices of a region's arrays (held at ``region_rows, region_cols``) for the image part of a window."""
        rows, cols = image_span(window, self.frames)
        return (slice(rows.start - self.frames[0].pad - region_rows.start,
                      rows.stop - self.frames[0].pad - region_rows.start),
                slice(cols.start - self.frames[1].pad - region_cols.start,
                      cols.stop - self.frames[1].pad - region_cols.start))
