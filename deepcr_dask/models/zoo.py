"""Model registry and safe loading.

A model is a network plus what it expects of its input: the scale it divides by, an optional
whole-image standardisation, the units of the data it was trained on and a default threshold.
Weights come from three places, none of which ever runs pickled code:

* the deepCR zoo, read from the installed ``deepcr`` package with ``torch.load(weights_only=True)``;
* our own models, ``deepcr_dask/weights/NAME.safetensors`` with ``NAME.json`` beside it;
* a user's path to a ``.pth`` (loaded with ``weights_only=True``) or ``.safetensors`` file;
* other packages, through the ``deepcr_dask.models`` entry points (:mod:`deepcr_dask.models.plugins`):
  safetensors with a model card.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ModelError
from ..nn import Architecture, UNet, fuse_for_inference, pooling_alignment, reach, receptive_field

__all__ = [
    "LoadedModel",
    "ModelSpec",
    "architecture_from_state_dict",
    "get_spec",
    "list_models",
    "load_model",
    "network_geometry",
]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # the package's data folder, beside the layers
KINDS = ("mask", "inpaint")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the Cleaner needs to know about a model, besides its weights."""

    name: str
    kind: str  # "mask" | "inpaint"
    architecture: Architecture
    source: str  # "deepcr" | "deepcr-dask" | "file"
    filename: str = ""  # inside the deepCR zoo, or a path
    scale: float = 1.0  # the input is divided by this
    # "none" | "standardize" (whole-image (x - mean) / std, as deepCR's WFC3-UVIS) | "sky" (the whole image's
    # background moved to ``sky`` electrons: indifferent to a constant sky)
    normalize: str = "none"
    sky: float = 0.0  # electrons: the reference background of the "sky" normalisation
    units: str = "electrons"
    instrument: str = ""
    threshold: float = 0.5
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


_MASK_BN = Architecture(1, 1, 32, 2, "batch", True)
_DEEPCR_SPECS = [
    ModelSpec("ACS-WFC", "mask", _MASK_BN, "deepcr", "mask/ACS-WFC.pth", instrument="HST ACS/WFC",
              description="deepCR ACS/WFC mask model (F435W, F606W, F814W)"),
    ModelSpec("WFC3-UVIS", "mask", Architecture(1, 1, 32, 2, "weight", True), "deepcr", "mask/WFC3-UVIS.pth",
              normalize="standardize", instrument="HST WFC3/UVIS", threshold=0.1,
              description="deepCR WFC3/UVIS mask model; deepCR recommends thresholds 0.1-0.2"),
    ModelSpec("decam", "mask", _MASK_BN, "deepcr", "mask/decam.pth", units="ADU", instrument="DECam",
              description="deepCR DECam mask model"),
    ModelSpec("ACS-WFC-F606W-2-32", "mask", _MASK_BN, "deepcr", "mask/ACS-WFC-F606W.pth", instrument="HST ACS/WFC",
              description="deepCR paper-era ACS/WFC F606W mask model"),
    ModelSpec("ACS-WFC-F435W-2-32", "mask", _MASK_BN, "deepcr", "mask/ACS-WFC-F435W.pth", instrument="HST ACS/WFC",
              description="deepCR paper-era ACS/WFC F435W mask model"),
    ModelSpec("ACS-WFC-F814W-2-32", "mask", _MASK_BN, "deepcr", "mask/ACS-WFC-F814W.pth", instrument="HST ACS/WFC",
              description="deepCR paper-era ACS/WFC F814W mask model"),
    # Trained on electrons / 100: deepCR 0.2's mask_dict lists it with scale 100 (0.3.1 ships the file but no
    # entry). At scale 1 it flags 42% of a real WFPC2 chip and finds nothing at FPR 1e-4; at 100 it flags
    # 0.04% of the real SAAO frame and finds 96% of the rays injected there (bench/results/zoo-scales.md).
    ModelSpec("ACS-WFC-F606W-2-4", "mask", Architecture(1, 1, 4, 2, "batch", True), "deepcr",
              "mask/ACS-WFC-F606W-2-4.pth", scale=100.0, instrument="HST ACS/WFC",
              description="deepCR paper-era ACS/WFC F606W mask model, 4 hidden channels (input: electrons / 100)"),
    ModelSpec("ACS-WFC-F606W-2-32", "inpaint", Architecture(2, 1, 32, 2, "batch", False), "deepcr",
              "inpaint/ACS-WFC-F606W-2-32.pth", instrument="HST ACS/WFC",
              description="deepCR ACS/WFC F606W inpainting model, depth 2"),
    ModelSpec("ACS-WFC-F606W-3-32", "inpaint", Architecture(2, 1, 32, 3, "batch", False), "deepcr",
              "inpaint/ACS-WFC-F606W-3-32.pth", instrument="HST ACS/WFC",
              description="deepCR ACS/WFC F606W inpainting model, depth 3"),
]


def deepcr_zoo_dir() -> Path | None:
    """Folder of the deepCR weight files, found without importing ``learned_models``.

    deepCR 0.3.1 ships them in a top-level package ``learned_models`` whose import triggers a circular
    import of ``deepCR``; ``find_spec`` only locates it.
    """
    try:
        spec = importlib.util.find_spec("learned_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return folder if (folder / "mask").is_dir() else None


def _own_specs() -> list[ModelSpec]:
    specs = []
    for meta_path in sorted(WEIGHTS_DIR.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        specs.append(_spec_from_metadata(meta, "deepcr-dask", str(meta_path.with_suffix(".safetensors"))))
    return specs


def _spec_from_metadata(meta: dict, source: str, filename: str) -> ModelSpec:
    try:
        arch = Architecture(**meta["architecture"])
        known = {f for f in ModelSpec.__dataclass_fields__} - {"architecture", "source", "filename", "extra"}
        fields = {k: v for k, v in meta.items() if k in known}
        extra = {k: v for k, v in meta.items() if k not in known and k != "architecture"}
        return ModelSpec(architecture=arch, source=source, filename=filename, extra=extra, **fields)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{filename}: model metadata is incomplete or malformed ({exc})") from None


@lru_cache(maxsize=1)
def _registry() -> dict[tuple[str, str], ModelSpec]:
    registry: dict[tuple[str, str], ModelSpec] = {}
    for spec in _own_specs():
        registry[(spec.kind, spec.name)] = spec
    if deepcr_zoo_dir() is not None:
        for spec in _DEEPCR_SPECS:
            registry[(spec.kind, spec.name)] = spec
    from .plugins import plugin_cards

    for source, card in plugin_cards():  # other packages' models; never shadow ours or deepCR's
        try:
            spec = _spec_from_metadata(json.loads(card.read_text()), f"plugin:{source}",
                                       str(card.with_suffix(".safetensors")))
        except (OSError, ValueError, ModelError) as exc:
            warnings.warn(f"model card {card} of {source} skipped: {exc}", RuntimeWarning, stacklevel=2)
            continue
        registry.setdefault((spec.kind, spec.name), spec)
    return registry


def list_models(kind: str | None = None) -> list[str]:
    """Names of the registered models.

    Parameters
    ----------
    kind : {"mask", "inpaint"}, optional
        Only models of this kind; all by default.

    Returns
    -------
    list of str
        Our own models, plus the deepCR zoo when the ``deepcr`` package is installed.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return sorted({name for (k, name) in _registry() if kind in (None, k)})


def registered_specs() -> list[ModelSpec]:
    return sorted(_registry().values(), key=lambda s: (s.kind, s.name))


def get_spec(name: str, kind: str) -> ModelSpec:
    """The registered spec of ``name`` as a ``kind`` model; a path gets a spec from its file."""
    spec = _registry().get((kind, name))
    if spec is not None:
        return spec
    if Path(name).suffix in (".pth", ".pt", ".safetensors") or Path(name).exists():
        return _spec_for_path(Path(name), kind)
    hint = "" if deepcr_zoo_dir() else " (the deepCR zoo needs the `deepcr` package installed)"
    raise ModelError(f"unknown {kind} model {name!r}; known: {', '.join(list_models(kind)) or 'none'}{hint}")


def _spec_for_path(path: Path, kind: str) -> ModelSpec:
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    if path.suffix == ".safetensors":
        meta = _safetensors_metadata(path)
        if meta is not None:
            if meta.get("kind", kind) != kind:
                raise ModelError(f"{path}: is a {meta['kind']} model, not a {kind} model")
            return _spec_from_metadata({"name": str(path), "kind": kind, **meta}, "file", str(path))
    state = read_state_dict(path)
    return ModelSpec(str(path), kind, architecture_from_state_dict(state, kind, path), "file", str(path),
                     description="user weights; scale 1, no normalisation")


def _safetensors_metadata(path: Path) -> dict | None:
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    return json.loads(header["deepcr_dask"]) if "deepcr_dask" in header else None


def architecture_from_state_dict(state: dict[str, torch.Tensor], kind: str, path: Path | str = "") -> Architecture:
    """Infer depth, width, normalisation and channels from checkpoint keys and shapes."""
    try:
        first = state.get("inc.conv.conv.0.weight", state.get("inc.conv.conv.0.weight_v"))
        hidden, in_channels = int(first.shape[0]), int(first.shape[1])
        out_channels = int(state["outc.conv.weight"].shape[0])
    except (AttributeError, KeyError):
        raise ModelError(f"{path}: not a deepCR-style UNet checkpoint (no 'inc' / 'outc' layers)") from None
    depth = 1 + sum(1 for level in range(1, 8) if any(k.startswith(f"down{level}.") for k in state))
    norm = "weight" if any(k.endswith("weight_g") for k in state) else "batch"
    return Architecture(in_channels, out_channels, hidden, depth, norm, kind == "mask")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise ModelError(
                f"{path}: refused: this file needs full unpickling, which could run arbitrary code "
                f"({first_line}); convert it to safetensors from a trusted environment"
            ) from None
        except Exception as exc:
            raise ModelError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: expected a state_dict of tensors")
    # deepCR saved its networks inside DataParallel / a wrapper: strip the "module." prefix.
    return {k.removeprefix("module."): v for k, v in state.items()}


def weights_path(spec: ModelSpec) -> Path:
    if spec.source == "deepcr":
        zoo = deepcr_zoo_dir()
        if zoo is None:
            raise ModelError(f"model {spec.name!r} needs the `deepcr` package (pip install deepcr)")
        return zoo / spec.filename
    return Path(spec.filename)


def file_hash(path: Path) -> str:
    """Short SHA-256 of a weight file, recorded in outputs as provenance."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class LoadedModel:
    """A spec with its network, ready for inference."""

    spec: ModelSpec
    network: UNet  # normalisation folded, eval mode
    receptive_field: int  # width in pixels of the input region an output pixel depends on
    alignment: int  # windows start on multiples of this (product of pooling strides)
    weight_hash: str
    reach: int  # margin a window needs on each side: the farthest input an output pixel uses



def build_network(spec: ModelSpec, state: dict[str, torch.Tensor], path: Path | str) -> UNet:
    try:
        net = spec.architecture.build()
        net.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"{path}: weights do not fit a {spec.architecture}: {str(exc).splitlines()[0]}") from None
    return net.eval()


def network_geometry(name: str, kind: str) -> tuple[int, int]:
    """``(reach, pooling alignment)`` of a model, from its architecture alone (no weights read)."""
    net = get_spec(str(name), kind).architecture.build()
    return reach(net), pooling_alignment(net)


def load_model(name: str, kind: str = "mask", kernels: str = "reference") -> LoadedModel:
    """Load a registered model or a weight file for inference.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`, or a path to a ``.pth`` / ``.safetensors`` file.
    kind : {"mask", "inpaint"}
    kernels : {"reference", "fast"}
        Layer layout for inference (see :func:`deepcr_dask.nn.fuse_for_inference`).

    Returns
    -------
    LoadedModel
    """
    if isinstance(name, Path):
        name = str(name)
    spec = get_spec(name, kind)
    path = weights_path(spec)
    if not path.is_file():
        raise ModelError(f"{path}: weight file of model {spec.name!r} is missing")
    net = build_network(spec, read_state_dict(path), path)
    network = fuse_for_inference(net, kernels)
    return LoadedModel(spec, network, receptive_field(net), pooling_alignment(net), file_hash(path), reach(net))
