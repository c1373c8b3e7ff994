"""Training API for mask and inpaint networks, on simulated data, user arrays or files.

Inputs are prepared exactly as the Cleaner prepares them at inference (ignored pixels replaced by a
local median, then divide by ``scale``, optionally standardise), and that normalisation is stored in the
saved model's metadata, so a trained model loads with ``Cleaner(mask=PATH)`` and gives what it was
validated on.

Checkpoints are safetensors (network, optimiser moments) plus JSON (epoch, history, RNG seeds): resuming
never unpickles anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._version import __version__
from ..errors import InputError
from ..models.thresholds import calibrate_thresholds, fpr_key
from ..nn import Architecture, UNet
from .data import Pairs

__all__ = ["TrainConfig", "TrainResult", "as_cleaner_input", "load_pairs", "simulated_pairs", "train_inpaint",
           "train_main", "train_mask", "train_real"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the model metadata)."""

    kind: str = "mask"  # "mask" | "inpaint"
    name: str = "my-model"
    hidden: int = 32
    depth: int = 2
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 5  # early stopping: epochs without validation improvement
    scale: float = 1.0
    normalize: str = "none"  # "none" | "standardize" | "sky" (mask: each patch's median moved to ``sky``)
    sky: float = 200.0  # electrons, for normalize="sky"
    units: str = "electrons"
    instrument: str = ""
    threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    init: str | None = None  # start from these weights (a model name or path)
    command: str = ""
    default_fpr: float | None = None  # set the default threshold to the validation threshold at this FPR
    data: dict = field(default_factory=dict)  # what the pairs were made of (frames, counts), for the record


@dataclass
class TrainResult:
    """Paths written and the per-epoch history."""

    model_path: Path
    metadata_path: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0


def simulated_pairs(kind: str, n: int, patch: int = 128, instrument: str = "ACS-WFC", seed: int = 0,
                    exptime: float = 500.0) -> Pairs:
    """``n`` simulated patches from :mod:`deepcr_dask.simulate`.

    Fields cycle sparse / globular / galaxy; ``instrument`` may list several presets ("ACS-WFC,WFPC2")
    to cycle through, for a model meant to serve several cameras.
    """
    from ..sim import simulate

    images, truths, ignores, cleans = [], [], [], []
    fields = ("sparse", "globular", "galaxy")
    instruments = [name.strip() for name in instrument.split(",")]
    for i in range(n):
        s = simulate((patch, patch), instrument=instruments[i % len(instruments)], exptime=exptime,
                     seed=seed * 100_003 + i, field=fields[i % 3])
        images.append(s.image)
        truths.append(s.truth)
        ignores.append(s.ignore)
        cleans.append(s.clean)
    images_a, truth_a = np.stack(images).astype(np.float32), np.stack(truths)
    ignore_a = np.stack(ignores)
    if kind == "mask":
        return Pairs(images_a, truth_a.astype(np.float32), ignore_a)
    return Pairs(images_a, np.stack(cleans).astype(np.float32), ignore_a, truth_a)


def load_pairs(kind: str, images: Sequence, labels: Sequence, ignore: Sequence | None = None, patch: int = 128,
               masks: Sequence | None = None) -> Pairs:
    """User data as arrays or ``.npy`` / FITS paths, cut into ``patch``-sized tiles.

    For masks, ``labels`` are cosmic-ray masks; for inpainting, ``labels`` are clean images and
    ``masks`` the pixels to fill.
    """
    def load(item) -> np.ndarray:
        if isinstance(item, (str, Path)):
            path = Path(item)
            if path.suffix == ".npy":
                return np.load(path, allow_pickle=False)
            from astropy.io import fits

            with fits.open(path) as hdul:
                hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2), None)
                if hdu is None:
                    raise InputError(f"{path}: no 2-D image")
                return np.asarray(hdu.data, dtype=np.float32)
        return np.asarray(item)

    tiles: dict[str, list[np.ndarray]] = {"images": [], "labels": [], "ignore": [], "masks": []}
    for i, (image, label) in enumerate(zip(images, labels)):
        arrays = {"images": load(image).astype(np.float32), "labels": load(label).astype(np.float32)}
        arrays["ignore"] = (load(ignore[i]).astype(bool) if ignore is not None
                            else np.zeros(arrays["images"].shape, bool))
        arrays["ignore"] |= ~np.isfinite(arrays["images"])
        if masks is not None:
            arrays["masks"] = load(masks[i]).astype(bool)
        shape = arrays["images"].shape
        if any(a.shape != shape for a in arrays.values()):
            raise InputError(f"training pair {i}: image, label, ignore and mask shapes differ")
        for y in range(0, shape[0] - patch + 1, patch):
            for x in range(0, shape[1] - patch + 1, patch):
                for key, a in arrays.items():
                    tiles[key].append(a[y:y + patch, x:x + patch])
    if not tiles["images"]:
        raise InputError(f"no {patch}x{patch} tiles could be cut from the training images")
    stack = {k: np.stack(v) for k, v in tiles.items() if v}
    return Pairs(np.nan_to_num(stack["images"]), stack["labels"], stack["ignore"], stack.get("masks"))


def as_cleaner_input(data: Pairs) -> Pairs:
    """``data`` with each image's ignored pixels replaced as the Cleaner replaces them before its networks.

    At inference the networks never see an ignored pixel's value (saturated cores, bad columns, a chip's
    flagged edge): :func:`deepcr_dask.inference.fill.median_fill` puts the local median of good pixels there (the
    patch's median of good pixels where none is in reach). Trained on the raw values instead, a network
    learns edges that it never meets and misses the ones it does, beside every filled saturated star.
    """
    from ..inference.fill import median_fill

    images = data.images.copy()
    for image, ignore in zip(images, data.ignore):
        if ignore.any() and not ignore.all():
            image[...] = median_fill(image, ignore, background=float(np.median(image[~ignore])))
    return Pairs(images, data.labels, data.ignore, data.masks)


def _normalize(images: np.ndarray, config: TrainConfig) -> np.ndarray:
    x = images / np.float32(config.scale)
    if config.normalize == "sky":  # as the Cleaner: the background (the patch's median) moved to ``sky``
        x = x - np.median(x, axis=(1, 2), keepdims=True) + np.float32(config.sky / config.scale)
    elif config.normalize == "standardize":
        mean = x.mean(axis=(1, 2), keepdims=True)
        std = x.std(axis=(1, 2), keepdims=True)
        x = (x - mean) / np.where(std > 0, std, 1)
    return x.astype(np.float32)


def _inputs(batch: Pairs, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(_normalize(batch.images, config))[:, None]
    valid = torch.from_numpy(~batch.ignore)[:, None].float()
    if config.kind == "mask":
        return x, torch.from_numpy(batch.labels)[:, None], valid
    m = torch.from_numpy(batch.masks)[:, None].float()
    target = torch.from_numpy(_normalize(batch.labels, config))[:, None]
    return torch.cat([x * (1 - m), m], dim=1), target, valid * m


def _loss(net: UNet, x, y, weight, config: TrainConfig) -> torch.Tensor:
    out = net(x)
    if config.kind == "mask":
        # BCE on valid pixels only: ignored pixels say nothing about cosmic rays.
        loss = nn.functional.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), y, weight=weight, reduction="sum")
    else:
        loss = (torch.abs(out - y) * weight).sum()  # masked L1: only the filled pixels count
    return loss / weight.sum().clamp(min=1.0)


def _roc_summary(prob: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """TPR at fixed false-positive rates on valid pixels (thresholds from the negatives' quantiles)."""
    p, t = prob[valid], truth[valid].astype(bool)
    negatives, positives = p[~t], p[t]
    out = {}
    for fpr in (1e-4, 5e-4, 5e-3):
        if negatives.size == 0 or positives.size == 0:
            out[f"tpr@{fpr:g}"] = float("nan")
            continue
        threshold = np.quantile(negatives, 1 - fpr)
        out[f"tpr@{fpr:g}"] = float((positives > threshold).mean())
    return out


def _probabilities(net: UNet, data: Pairs, config: TrainConfig, device) -> np.ndarray:
    net.eval()
    probs = []
    with torch.inference_mode():
        for start in range(0, len(data), config.batch_size):
            batch = data._take(np.arange(start, min(len(data), start + config.batch_size)))
            x, _, _ = (t.to(device) for t in _inputs(batch, config))
            probs.append(net(x)[:, 0].cpu().numpy())
    return np.concatenate(probs)


def _evaluate(net: UNet, data: Pairs, config: TrainConfig, device) -> dict[str, float]:
    net.eval()
    losses, probs = [], []
    with torch.inference_mode():
        for start in range(0, len(data), config.batch_size):
            batch = data._take(np.arange(start, min(len(data), start + config.batch_size)))
            x, y, w = (t.to(device) for t in _inputs(batch, config))
            losses.append(float(_loss(net, x, y, w, config)) * len(batch))
            if config.kind == "mask":
                probs.append(net(x)[:, 0].cpu().numpy())
    metrics = {"val_loss": sum(losses) / len(data)}
    if config.kind == "mask":
        metrics.update(_roc_summary(np.concatenate(probs), data.labels > 0.5, ~data.ignore))
    return metrics


def _init_weights(net: UNet, config: TrainConfig) -> None:
    if not config.init:
        return
    from ..models.zoo import get_spec, read_state_dict, weights_path

    spec = get_spec(config.init, config.kind)
    net.load_state_dict(read_state_dict(weights_path(spec)))


def _save_checkpoint(folder: Path, net, optimizer, scheduler_state: dict, epoch: int, history, best) -> None:
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.{index}.{key}"] = value.detach().cpu().contiguous().reshape(value.shape)
    save_file(tensors, str(folder / "checkpoint.safetensors.tmp"))
    meta = {"epoch": epoch, "history": history, "best": best, "scheduler": scheduler_state,
            "param_groups": opt_state["param_groups"]}
    (folder / "checkpoint.json.tmp").write_text(json.dumps(meta))
    (folder / "checkpoint.safetensors.tmp").replace(folder / "checkpoint.safetensors")
    (folder / "checkpoint.json.tmp").replace(folder / "checkpoint.json")


def _load_checkpoint(folder: Path, net, optimizer) -> dict:
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    meta = json.loads((folder / "checkpoint.json").read_text())
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def _save_model(net: UNet, config: TrainConfig, arch: Architecture, folder: Path, history, best_epoch,
                by_fpr: dict[str, float] | None = None, default_fpr: float | None = None) -> TrainResult:
    model_path = folder / f"{config.name}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(model_path))
    threshold = config.threshold
    if by_fpr and config.default_fpr is not None:
        threshold = by_fpr[fpr_key(config.default_fpr)]
    meta = {"name": config.name, "kind": config.kind, "architecture": asdict(arch), "scale": config.scale,
            "normalize": config.normalize, "sky": config.sky if config.normalize == "sky" else 0.0,
            "units": config.units, "instrument": config.instrument,
            "threshold": threshold, "description": f"trained with deepcr-dask {__version__}",
            "training": {"command": config.command, "config": asdict(config), "best_epoch": best_epoch,
                         "final": history[best_epoch - 1] if history else {}}}
    if by_fpr:
        meta["fpr_thresholds"] = by_fpr  # measured on the validation frames
        meta["default_fpr"] = config.default_fpr if config.default_fpr is not None else default_fpr
    meta_path = model_path.with_suffix(".json")
    meta_path.write_text(json.dumps(meta, indent=2))
    return TrainResult(model_path, meta_path, history, best_epoch)


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].plot(epochs, [h["train_loss"] for h in history], label="train")
    axes[0].plot(epochs, [h["val_loss"] for h in history], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", yscale="log")
    axes[0].legend()
    for key in (k for k in history[0] if k.startswith("tpr@")):
        axes[1].plot(epochs, [h[key] for h in history], label=f"TPR at FPR {key[4:]}")
    axes[1].set(xlabel="epoch", ylabel="validation TPR", ylim=(0, 1))
    if any(k.startswith("tpr@") for k in history[0]):
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(train_data: Pairs, val_data: Pairs, config: TrainConfig, output: str | Path, *,
          resume: bool = False, log=print, calibration: Pairs | None = None) -> TrainResult:
    """Train a network of ``config.kind`` and save its best epoch.

    Best means the highest validation TPR at FPR 5e-4 for masks and the lowest validation loss for
    inpainting; early stopping and the learning-rate schedule follow the same number. A mask model's
    thresholds by false-positive rate are measured on ``calibration`` (default: the validation pairs).
    """
    from ..inference.devices import resolve_device

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    train_data, val_data = as_cleaner_input(train_data), as_cleaner_input(val_data)
    calibration = None if calibration is None else as_cleaner_input(calibration)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    arch = Architecture(1 if config.kind == "mask" else 2, 1, config.hidden, config.depth, "batch",
                        config.kind == "mask")
    net = arch.build().to(device)
    _init_weights(net, config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # Masks are chosen by validation TPR at FPR 5e-4 (what users threshold for), not by BCE: fine-tuning
    # often lowers the loss on the many easy negatives while recall at a fixed false-positive rate drops.
    monitor, sign = ("tpr@0.0005", -1.0) if config.kind == "mask" else ("val_loss", 1.0)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    history: list[dict] = []
    best = {"score": math.inf, "epoch": 0}
    start_epoch = 1
    if resume and (folder / "checkpoint.safetensors").exists():
        meta = _load_checkpoint(folder, net, optimizer)
        scheduler.load_state_dict(meta["scheduler"])
        history, best, start_epoch = meta["history"], meta["best"], meta["epoch"] + 1
        log(f"resumed from epoch {meta['epoch']}")
    rng = np.random.default_rng(config.seed)
    for _ in range(start_epoch - 1):
        rng.permutation(len(train_data))  # keep the same shuffles as an uninterrupted run
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if best["epoch"] and (folder / "best.safetensors").exists():
        best_state = load_file(str(folder / "best.safetensors"))
    for epoch in range(start_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        _train_mode(net, freeze_batchnorm=bool(config.init))
        order = rng.permutation(len(train_data))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = train_data._take(order[start:start + config.batch_size])
            x, y, w = (t.to(device) for t in _inputs(batch, config))
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(net, x, y, w, config)
            loss.backward()
            optimizer.step()
            total += loss.detach().item() * len(batch)
        metrics = _evaluate(net, val_data, config, device)
        score = sign * metrics[monitor]
        scheduler.step(score)
        row = {"epoch": epoch, "train_loss": total / len(train_data), **metrics,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if score < best["score"]:
            best = {"score": score, "epoch": epoch, "monitor": monitor}
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, str(folder / "best.safetensors"))
        _save_checkpoint(folder, net, optimizer, scheduler.state_dict(), epoch, history, best)
        _write_log(history, folder / "log.csv")
        if epoch - best["epoch"] >= config.patience:
            log(f"early stop: no improvement for {config.patience} epochs")
            break
    net.load_state_dict(best_state)
    if history:
        _plot(history, folder / "curves.png")
    by_fpr = None
    default_fpr = None
    if config.kind == "mask":  # thresholds by false-positive rate on the validation frames
        frames = calibration if calibration is not None else val_data
        prob = _probabilities(net, frames, config, device)
        negatives = prob[(frames.labels < 0.5) & ~frames.ignore]
        by_fpr = calibrate_thresholds(prob, frames.labels > 0.5, frames.ignore)
        default_fpr = float((negatives > config.threshold).mean()) if negatives.size else None
        log("thresholds by FPR on the validation frames: " + ", ".join(f"{k}: {v:.4g}" for k, v in by_fpr.items()))
    return _save_model(net.cpu().eval(), config, arch, folder, history, best["epoch"], by_fpr, default_fpr)


def _train_mode(net: UNet, *, freeze_batchnorm: bool) -> None:
    """Training mode; when fine-tuning, BatchNorm keeps its pretrained statistics.

    deepCR's BatchNorm momentum is 0.005: over a short fine-tuning run the running statistics barely move
    while the weights adapt to per-batch statistics, so the network trains well and validates badly
    (measured: validation L1 of an inpaint fine-tune 2-4x its training L1). Freezing the statistics
    makes training and inference compute the same function.
    """
    net.train()
    if freeze_batchnorm:
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()


def _write_log(history: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train_mask(data: Pairs | None = None, output: str | Path = "trained", *, n_train: int = 256, patch: int = 128,
               instrument: str = "ACS-WFC", val_fraction: float = 0.2, resume: bool = False, **options) -> TrainResult:
    """Train a cosmic-ray mask network (simulated data unless ``data`` is given).

    Parameters
    ----------
    data : Pairs, optional
        From :func:`load_pairs`; default: ``n_train`` simulated ``patch``-sized patches of ``instrument``.
    output : path
        Folder for checkpoints, ``log.csv``, ``curves.png`` and the final ``NAME.safetensors`` + ``NAME.json``.
    **options
        :class:`TrainConfig` fields (epochs, lr, hidden, depth, name, seed, device, init, ...).
    """
    config = TrainConfig(kind="mask", instrument=instrument, **options)
    data = data if data is not None else simulated_pairs("mask", n_train, patch, instrument, config.seed)
    train_data, val_data = data.split(val_fraction, config.seed)
    return train(train_data, val_data, config, output, resume=resume)


def train_inpaint(data: Pairs | None = None, output: str | Path = "trained", *, n_train: int = 256, patch: int = 128,
                  instrument: str = "ACS-WFC", val_fraction: float = 0.2, resume: bool = False,
                  **options) -> TrainResult:
    """Train an inpainting network on (image with rays, clean image, ray mask) triples; see :func:`train_mask`."""
    config = TrainConfig(kind="inpaint", instrument=instrument, **options)
    data = data if data is not None else simulated_pairs("inpaint", n_train, patch, instrument, config.seed)
    train_data, val_data = data.split(val_fraction, config.seed)
    return train(train_data, val_data, config, output, resume=resume)


def train_real(kind: str, output: str | Path, *, real: Sequence[str], val_real: Sequence[str], n_real: int = 256,
               n_sim: int = 0, n_val: int = 64, patch: int = 128, instrument: str = "ACS-WFC",
               raw_fraction: float = 0.3, n_pairs: int = 0, resume: bool = False, **options) -> TrainResult:
    """Train on real frames with injected rays (plus ``n_sim`` simulated patches), validated on other frames.

    Parameters
    ----------
    kind : {"mask", "inpaint"}
    output : path
    real, val_real : sequences of ``FIELD[:CHIPS]``
        Training and validation frames (:func:`deepcr_dask.training.data.frames_from_names`); no frame may
        be in both.
    n_real, n_sim, n_val : int
        Patches cut from the training frames, simulated (``instrument``), and cut from the validation frames.
    n_pairs : int
        Patches of the STIS CR-SPLIT pairs labelled by their difference, from the training associations
        (:func:`deepcr_dask.training.data.pair_patches`); as many again from the validation association join
        the validation set (half as many when ``n_pairs`` exceeds ``n_val``).
    **options
        :class:`TrainConfig` fields.
    """
    from .data import frames_from_names, mixed_pairs, pair_patches, real_pairs

    train_frames, val_frames = frames_from_names(real), frames_from_names(val_real)
    shared = {f.name for f in train_frames} & {f.name for f in val_frames}
    if shared:
        raise InputError(f"frames in both training and validation: {', '.join(sorted(shared))}")
    seed = int(options.get("seed", 0))
    parts = [real_pairs(train_frames, n_real, patch, seed, raw_fraction=raw_fraction, kind=kind)]
    if n_sim:
        parts.append(simulated_pairs(kind, n_sim, patch, instrument, seed))
    val = real_pairs(val_frames, n_val, patch, seed + 1_000_003, raw_fraction=raw_fraction, kind=kind)
    if n_pairs:
        if kind != "mask":
            raise InputError("--n-pairs labels rays, not clean pixels: mask training only")
        parts.append(pair_patches("train", n_pairs, patch, seed))
        val = mixed_pairs([val, pair_patches("validation", min(n_pairs, max(n_val // 2, 1)), patch,
                                             seed + 1_000_003)])
    # Thresholds by FPR come from the validation frames whose own rays are found (not crowded fields, where
    # they stay unlabelled and would count as false positives).
    from ..sim.real import CROWDED_FIELDS

    sparse = [f for f in val_frames if f.name.split("-")[0] not in CROWDED_FIELDS]
    calibration = real_pairs(sparse, n_val, patch, seed + 2_000_003, raw_fraction=raw_fraction, kind=kind) \
        if sparse and len(sparse) < len(val_frames) else None
    data = {"real": list(real), "val_real": list(val_real), "n_real": n_real, "n_sim": n_sim, "n_val": n_val,
            "patch": patch, "raw_fraction": raw_fraction, "n_pairs": n_pairs,
            "frames": {"train": [f.name for f in train_frames], "validation": [f.name for f in val_frames],
                       "thresholds": [f.name for f in (sparse if calibration is not None else val_frames)]}}
    config = TrainConfig(kind=kind, instrument=instrument, data=data, **options)
    return train(mixed_pairs(parts), val, config, output, resume=resume, calibration=calibration)


def train_main(argv: list[str] | None = None) -> int:
    """``deepcr-dask train {mask,inpaint} ...``"""
    parser = argparse.ArgumentParser(prog="deepcr-dask train", description="Train a mask or inpaint network.")
    parser.add_argument("kind", choices=["mask", "inpaint"])
    parser.add_argument("-o", "--output", required=True, help="folder for checkpoints, logs and the model")
    parser.add_argument("--name", default=None, help="model name (default: <instrument>-<kind>)")
    parser.add_argument("--instrument", default="ACS-WFC", help="simulator preset (ACS-WFC, WFC3-UVIS, WFPC2, ...)")
    parser.add_argument("--n-train", type=int, default=256, help="simulated patches (0 with --real: none)")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--images", nargs="*", help=".npy/FITS images instead of simulated data")
    parser.add_argument("--real", action="append", default=[], metavar="FIELD[:CHIPS]",
                        help="real frames to train on (injected rays), e.g. omegacen:0,1,2; repeatable")
    parser.add_argument("--val-real", action="append", default=[], metavar="FIELD[:CHIPS]",
                        help="whole real frames held out for validation; repeatable")
    parser.add_argument("--n-real", type=int, default=256, help="training patches cut from the --real frames")
    parser.add_argument("--n-val", type=int, default=64, help="validation patches cut from the --val-real frames")
    parser.add_argument("--raw-fraction", type=float, default=0.3,
                        help="share of real patches injected with unrescaled catalogue footprints")
    parser.add_argument("--n-pairs", type=int, default=0,
                        help="patches of the STIS CR-SPLIT training pairs, labelled by their difference (mask)")
    parser.add_argument("--default-fpr", type=float, default=None,
                        help="set the model's default threshold to its validation threshold at this FPR")
    parser.add_argument("--labels", nargs="*", help="masks (mask) or clean images (inpaint), one per image")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sky", type=float, default=None,
                        help="normalise each image's background to this many electrons (mask models: "
                             "indifferent to a constant sky)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="start from these weights (model name or path)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    args = parser.parse_args(argv)
    options = dict(name=args.name or f"{args.instrument}-{args.kind}", epochs=args.epochs, batch_size=args.batch_size,
                   lr=args.lr, hidden=args.hidden, depth=args.depth, patience=args.patience, seed=args.seed,
                   init=args.init, device=args.device, default_fpr=args.default_fpr,
                   **({"normalize": "sky", "sky": args.sky} if args.sky is not None else {}),
                   command="deepcr-dask train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[2:])))
    if args.real:
        if not args.val_real:
            parser.error("--real needs --val-real: validation takes whole frames held out from training")
        result = train_real(args.kind, args.output, real=args.real, val_real=args.val_real, n_real=args.n_real,
                            n_sim=args.n_train, n_val=args.n_val, patch=args.patch, instrument=args.instrument,
                            raw_fraction=args.raw_fraction, n_pairs=args.n_pairs, resume=args.resume, **options)
        print(f"saved {result.model_path} and {result.metadata_path} (best epoch {result.best_epoch})")
        return 0
    data = None
    if args.images:
        if not args.labels or len(args.labels) != len(args.images):
            parser.error("--labels must give one file per --images file")
        data = load_pairs(args.kind, args.images, args.labels, patch=args.patch)
    fn = train_mask if args.kind == "mask" else train_inpaint
    result = fn(data, args.output, n_train=args.n_train, patch=args.patch, instrument=args.instrument,
                resume=args.resume, **options)
    print(f"saved {result.model_path} and {result.metadata_path} (best epoch {result.best_epoch})")
    return 0
