"""The device-resident region path: the whole per-tile pipeline in torch, on the Cleaner's device.

On a GPU the host path (:mod:`deepcr_dask.inference.preprocess` in numpy, one host-device round trip per window)
leaves the device waiting on the CPU. Here a region (a whole frame, or a Dask block with its halo) is
copied to the device once (from pinned memory on CUDA); the fill of ignored pixels, the scaling or
standardisation, the zero padding of each window, the mask network, the threshold, the inpainting (network
or median) and the compositing of each tile's core all run there, and the outputs come back in one copy.

It computes what the host path computes, operation for operation, so on a CPU it gives identical results
(tests/test_device_path.py) and on CUDA it differs only by the device's float32 arithmetic:

- the ignored-pixel fill is done once over the region instead of once per window. Both give the same values
  on every window: a filled value depends on pixels at most ``fill_support`` away, and every window's
  fill box is its window grown by that much (the region carries the margin);
- medians follow numpy's ``nanmedian`` (the mean of the two middle values for an even count), not torch's
  (the lower one).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fill import DEFAULT_PASSES, DEFAULT_RADIUS
from .preprocess import ImageStats, Region, denormalize, normalize
from .tiling import Span, Tile, TilePlan, crop, image_part, image_span

__all__ = ["DevicePath", "median_fill_torch", "nanmedian_rows"]


def nanmedian_rows(windows: torch.Tensor) -> torch.Tensor:
    """Median of the non-NaN values of each row (NaN for a row without any), as ``numpy.nanmedian``."""
    missing = torch.isnan(windows)
    count = (~missing).sum(dim=1)
    ordered = torch.sort(torch.where(missing, torch.full_like(windows, float("inf")), windows), dim=1).values
    last = windows.shape[1] - 1
    low = ordered.gather(1, ((count - 1).clamp(min=0) // 2)[:, None])[:, 0]
    high = ordered.gather(1, (count // 2).clamp(max=last)[:, None])[:, 0]
    return torch.where(count > 0, (low + high) / 2, torch.full_like(low, float("nan")))


def median_fill_torch(
    image: torch.Tensor,
    targets: torch.Tensor,
    sources: torch.Tensor | None = None,
    *,
    background: float = 0.0,
    radius: int = DEFAULT_RADIUS,
    passes: int = DEFAULT_PASSES,
) -> torch.Tensor:
    """:func:`~deepcr_dask.inference.fill.median_fill` on a tensor: the same passes, medians and result."""
    out = image.to(torch.float32).clone()
    todo = targets.clone()
    usable = ~todo if sources is None else (sources & ~todo)
    size = 2 * radius + 1
    offsets = torch.arange(size, device=image.device)
    dy = offsets.repeat_interleave(size)
    dx = offsets.repeat(size)
    for _ in range(passes):
        rows, cols = torch.nonzero(todo, as_tuple=True)
        if rows.numel() == 0:
            break
        values = torch.where(usable, out, torch.full_like(out, float("nan")))
        padded = F.pad(values[None, None], (radius, radius, radius, radius), value=float("nan"))[0, 0]
        windows = padded[rows[:, None] + dy, cols[:, None] + dx]
        medians = nanmedian_rows(windows)
        found = ~torch.isnan(medians)
        rows, cols = rows[found], cols[found]
        out[rows, cols] = medians[found]
        todo[rows, cols] = False
        usable[rows, cols] = True
    out[todo] = background
    return out


class DevicePath:
    """Runs :meth:`deepcr_dask.Cleaner.run_region` with every step on the Cleaner's device.

    Parameters
    ----------
    cleaner : Cleaner
        Its networks, geometry, tile size, runner (device, precision, batching) and model scaling.
    """

    def __init__(self, cleaner):
        self.cleaner = cleaner
        self.device = cleaner.runner.device

    def upload(self, array: np.ndarray) -> torch.Tensor:
        """One host-to-device copy (from pinned memory on CUDA, so it can overlap other work)."""
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def run_region(self, region: Region, image_shape: tuple[int, int], stats: ImageStats, *, want: str = "clean",
                   threshold: float, core: tuple[Span, Span] | None = None,
                   given: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Outputs for ``core`` of ``region``, as :meth:`Cleaner.run_region` returns them."""
        c = self.cleaner
        plan = TilePlan.make(image_shape, core or (region.rows, region.cols), c.geometry, c.tile, want=want)
        data, ignored = self.upload(region.data), self.upload(region.ignored)
        held = _Held(data, ignored, region, plan)
        x, x_inpaint = (None, None) if want == "inpaint" and c.inpaint_model is None \
            else self._network_units(held, stats)
        given_t = self.upload(np.asarray(given, bool)) if given is not None else None
        shape = (plan.core[0].size, plan.core[1].size)
        out: dict[str, torch.Tensor] = {}
        if want != "inpaint":
            out["probability"] = torch.zeros(shape, dtype=torch.float32, device=self.device)
            out["mask"] = torch.zeros(shape, dtype=torch.bool, device=self.device)
        if want in ("clean", "inpaint"):
            out["cleaned"] = torch.empty(shape, dtype=torch.float32, device=self.device)
        with torch.inference_mode(), c.runner.region_turn():
            if want == "mask":
                out["cleaned"] = held.raw(plan.core)[0].clone()
            batch_size = c.runner.batch_size
            for start in range(0, len(plan.tiles), batch_size):
                batch = plan.tiles[start:start + batch_size]
                if want == "inpaint":
                    masks = [held.window(given_t, t.inner) for t in batch]
                else:
                    masks = self._detect(held, x, batch, out, threshold)
                if want in ("clean", "inpaint"):
                    self._inpaint(held, x_inpaint, stats, batch, masks, out)
        return {name: tensor.cpu().numpy() for name, tensor in out.items()}

    def _network_units(self, held: _Held, stats: ImageStats) -> tuple[torch.Tensor, torch.Tensor]:
        """The region with ignored pixels filled and scaled to the mask network's and the inpaint network's
        units (once, for every window; the same tensor unless the mask model is "sky"-normalised)."""
        c = self.cleaner
        filled = held.data
        if bool(held.ignored.any()):
            filled = median_fill_torch(held.data, held.ignored, background=stats.background)
        x = normalize(filled, c.scale, c._standardize, stats)  # the host path's arithmetic, on tensors
        if c._inpaint_standardize == c._standardize or c.inpaint_model is None:
            return x, x
        return x, normalize(filled, c.scale, c._inpaint_standardize, stats)

    def _detect(self, held: _Held, x: torch.Tensor, batch: tuple[Tile, ...], out, threshold: float):
        c = self.cleaner
        inputs = [held.window(x, t.outer) for t in batch]
        ignored = [held.window(held.ignored, t.outer) for t in batch]
        probs = c.runner.forward_tensors(c.mask_model.network, [w[None] for w in inputs])
        masks = []
        for prob, ign, t in zip(probs, ignored, batch):
            prob = prob.masked_fill(ign, 0.0)[crop(t.inner, t.outer)]
            mask = prob > threshold
            masks.append(mask)
            dst = crop(t.core, held.plan.core)
            out["probability"][dst] = prob[crop(t.core, t.inner)]
            out["mask"][dst] = mask[crop(t.core, t.inner)]
        return masks

    def _inpaint(self, held: _Held, x, stats: ImageStats, batch: tuple[Tile, ...], masks, out) -> None:
        c = self.cleaner
        plan = held.plan
        if c.inpaint_model is not None:
            stacks = []
            for t, mask in zip(batch, masks):
                m = mask.to(torch.float32)
                stacks.append(torch.stack([held.window(x, t.inner) * (1 - m), m]))
            predictions = c.runner.forward_tensors(c.inpaint_model.network, stacks)
        for i, (t, mask) in enumerate(zip(batch, masks)):
            raw, ignored = held.raw(t.inner)
            mask = mask[image_part(t.inner, plan.frames)] & ~ignored
            if c.inpaint_model is not None:
                pred = predictions[i][image_part(t.inner, plan.frames)]
                cleaned = torch.where(mask, denormalize(pred, c.scale, c._inpaint_standardize, stats), raw)
            else:
                cleaned = median_fill_torch(raw, mask, ~(mask | ignored), background=stats.background)
            out["cleaned"][crop(t.core, plan.core)] = cleaned[crop(t.core, image_span(t.inner, plan.frames))]


class _Held:
    """A region's tensors on the device, and windows of them in global (padded) coordinates."""

    def __init__(self, data: torch.Tensor, ignored: torch.Tensor, region: Region, plan: TilePlan):
        self.data, self.ignored, self.region, self.plan = data, ignored, region, plan

    def raw(self, window) -> tuple[torch.Tensor, torch.Tensor]:
        """Image pixels and ignored flags of a global window (its image part), as views."""
        sl = self.plan.local(self.region.rows, self.region.cols, window)
        return self.data[sl], self.ignored[sl]

    def window(self, tensor: torch.Tensor, window) -> torch.Tensor:
        """``tensor`` (covering the region) on a global window, zero (False) on the top/left padding."""
        sl = self.plan.local(self.region.rows, self.region.cols, window)
        part = image_part(window, self.plan.frames)
        shape = (window[0].size, window[1].size)
        if tensor[sl].shape == shape:
            return tensor[sl]
        out = torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)
        out[part] = tensor[sl]
        return out
