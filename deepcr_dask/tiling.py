"""Window geometry for seam-free tiled inference.

A UNet with pooling stride ``A`` is translation-equivariant only under shifts that are multiples of
``A``, and each output pixel uses input pixels up to ``reach`` away (:func:`deepcr_dask.nn.reach`).
Whole-image inference pads the image with zeros at the top and left to a multiple of ``pad_multiple``
(deepCR's convention). Call that padded frame the *global* frame. A window whose edges lie on
multiples of ``A`` in the global frame (or on the frame's true edges) reproduces whole-image output
everywhere further than ``reach`` from its cut edges.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

__all__ = ["Frame", "Span", "aligned_window", "tiles"]


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
