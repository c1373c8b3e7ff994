"""Adapters that run each cosmic-ray method (our Cleaner, deepCR 0.3.1, astroscrappy, and the optional
Cosmic-CoNN, lacosmic and dfcosmic) on the same :class:`Inputs`, recording a checksum of the exact array
each one receives."""

from __future__ import annotations

import hashlib
import importlib
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..inference.fill import median_fill

__all__ = [
    "OBJLIM",
    "SIGCLIPS",
    "SWEEP_METHODS",
    "Detection",
    "Inputs",
    "Method",
    "build_method",
    "checksum",
    "prepare_inputs",
]

# astroscrappy's ROC sweeps sigclip at fixed objlim, as the deepCR paper did (objlim 2, sigfrac 0.3).
SIGCLIPS = (2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)
OBJLIM = 2.0


@dataclass(frozen=True)
class Inputs:
    """What every method receives: the same filled image and the same ignore mask.

    ``image`` is float32 electrons with ignored pixels already replaced by a local median
    (:func:`prepare_inputs`), because deepCR has no ignore input; methods that take a mask
    (Cleaner, astroscrappy) get ``ignore`` as well.
    """

    image: np.ndarray
    ignore: np.ndarray
    read_noise: float = 5.0  # e-, for astroscrappy's noise model (images are in electrons: gain 1)


def prepare_inputs(image, ignore=None, *, read_noise: float = 5.0) -> Inputs:
    """The inputs every method gets: ignored and non-finite pixels filled by a local median.

    Parameters
    ----------
    image : 2-D array
        Electrons.
    ignore : 2-D bool array, optional
        Pixels to leave out (bad, saturated, the frame's own cosmic rays).
    read_noise : float
        Electrons; for the L.A.Cosmic-type methods.

    Returns
    -------
    Inputs
        ``image``: the median of good pixels in a 5x5 window (3 passes, then the global median of good
        pixels) replaces each ignored one; read-only, C-ordered native float32, so no method can alter
        what the next one sees. ``ignore`` includes the non-finite pixels.
    """
    data = np.asarray(image, dtype=np.float32)
    bad = ~np.isfinite(data) if ignore is None else (np.asarray(ignore, bool) | ~np.isfinite(data))
    good = data[~bad]
    background = float(np.median(good)) if good.size else 0.0
    filled = median_fill(data, bad, background=background) if bad.any() else data.copy()
    filled = np.ascontiguousarray(filled, dtype=np.float32)
    filled.flags.writeable = False
    bad.flags.writeable = False
    return Inputs(filled, bad, float(read_noise))


def checksum(array: np.ndarray | None) -> str | None:
    """SHA-256 of an array's dtype, shape and bytes (None for None)."""
    if array is None:
        return None
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Detection:
    """A method's output on one image: a score map, or binary masks at several operating points."""

    score: np.ndarray | None = None
    masks: list[np.ndarray] | None = None
    params: np.ndarray | None = None  # operating point of each mask
    seconds: float = 0.0  # detection time per run
    runs: int = 1


class Method:
    """Base adapter: runs one cosmic-ray method and logs a checksum of each input it is given."""

    name = "method"
    description = ""

    def __init__(self) -> None:
        self.received: list[dict[str, str | None]] = []

    def _record(self, image: np.ndarray, ignore: np.ndarray | None) -> None:
        self.received.append({"image": checksum(image), "ignore": checksum(ignore)})

    def detect(self, inputs: Inputs) -> Detection:  # pragma: no cover - abstract
        raise NotImplementedError

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray | None:
        """Replace ``mask`` pixels; None if the method cannot inpaint a given mask."""
        return None


def _timed(fn: Callable, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


class CleanerMethod(Method):
    """deepcr-dask's :class:`~deepcr_dask.Cleaner` (any mask model; network or median inpainting)."""

    def __init__(self, model: str = "ACS-WFC", inpaint: str | None = None, device: str = "cpu"):
        super().__init__()
        from ..inference.cleaner import Cleaner

        self.cleaner = Cleaner(model, inpaint=inpaint, device=device)
        self.name = f"cleaner:{model}"
        self.description = f'deepcr-dask `Cleaner("{model}", inpaint={inpaint!r}).probability(img, ignore)`'
        self.cleaner.probability(np.zeros((64, 64), np.float32))  # warm-up, untimed

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, inputs.ignore)
        prob, seconds = _timed(self.cleaner.probability, inputs.image, ignore=inputs.ignore)
        return Detection(score=prob, seconds=seconds)

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray:
        return self.cleaner.inpaint(inputs.image, mask, ignore=inputs.ignore)


def _import_deepcr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("deepCR")


class DeepCRMethod(Method):
    """deepCR 0.3.1 through its own API: whole-image ``clean(binary=False, segment=False)``, no grad.

    deepCR takes no ignore mask; it sees the same median-filled image as every other method.
    """

    def __init__(self, model: str = "ACS-WFC", inpaint: str | None = None):
        super().__init__()
        import torch

        self._torch = torch
        self.model = _import_deepcr().deepCR(mask=model, inpaint=inpaint, device="CPU")
        self.name = f"deepcr:{model}"
        self.description = f'deepCR 0.3.1 `deepCR(mask="{model}", inpaint={inpaint!r}).clean(img, binary=False, ' \
                           "segment=False)` under `torch.no_grad()`"
        self._probability(np.zeros((64, 64), np.float32))  # warm-up, untimed

    def _probability(self, image: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return np.asarray(self.model.clean(image, binary=False, segment=False), np.float32)

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, None)
        prob, seconds = _timed(self._probability, inputs.image)
        return Detection(score=prob, seconds=seconds)

    def inpaint(self, inputs: Inputs, mask: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return np.asarray(self.model.inpaint(inputs.image, mask), np.float32)


class CosmicConnMethod(Method):
    """Cosmic-CoNN 0.6.1 (Xu et al. 2023) through its own ``detect_cr``, with the weights its package ships.

    It takes no ignore mask: it sees the same median-filled image as deepCR. Its normalisation depends on
    the tile: each 1024² stamp (``opt.crop``, its default) has its own median subtracted, and tiles do not
    overlap, so a frame's score can change at stamp borders and with the frame's size; it is run as its
    authors ship it. Its weights are plain state dicts, read by torch's default ``weights_only`` loader.
    """

    MODELS = ("ground_imaging", "NRES", "HST_ACS_WFC")

    def __init__(self, model: str = "ground_imaging"):
        super().__init__()
        if model not in self.MODELS:
            raise ValueError(f"unknown Cosmic-CoNN model {model!r}; known: {', '.join(self.MODELS)}")
        import torch

        self._torch = torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module("cosmic_conn")
        self.model = module.init_model(model)
        self.name = f"cosmic-conn:{model}"
        self.description = f'Cosmic-CoNN 0.6.1 `init_model("{model}").detect_cr(img)` (1024² stamps, each ' \
                           "minus its median)"
        self._probability(np.zeros((64, 64), np.float32))  # warm-up, untimed

    def _probability(self, image: np.ndarray) -> np.ndarray:
        with self._torch.no_grad():
            return np.asarray(self.model.detect_cr(np.array(image, np.float32), ret_numpy=True), np.float32)

    def _record(self, image: np.ndarray, ignore: np.ndarray | None) -> None:
        super()._record(image, None)  # no ignore input

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, None)
        prob, seconds = _timed(self._probability, inputs.image)
        return Detection(score=prob, seconds=seconds)


class AstroscrappyMethod(Method):
    """astroscrappy ``detect_cosmics`` swept over ``sigclip`` at fixed ``objlim`` (the deepCR paper's ROC).

    Settings follow the deepCR paper's comparison: ``sigfrac=0.3``, ``sepmed=False``,
    ``cleantype="medmask"``, ``niter=4``, ``satlevel=inf`` (saturated pixels are in ``inmask``), with
    ``gain=1`` because images are in electrons and the instrument's read noise. Subclasses change
    :meth:`run` only.
    """

    name = "astroscrappy"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        super().__init__()
        self._detect = importlib.import_module("astroscrappy").detect_cosmics
        self.sigclips = tuple(float(s) for s in sigclips)
        self.objlim = float(objlim)
        self.description = (f"astroscrappy `detect_cosmics(img, inmask=ignore, sigclip in {list(self.sigclips)}, "
                            f"objlim={self.objlim:g}, sigfrac=0.3, gain=1, readnoise=instrument)`")

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        """Binary mask at one ``sigclip``."""
        mask, _ = self._detect(inputs.image, inmask=inputs.ignore, sigclip=sigclip, sigfrac=0.3, objlim=self.objlim,
                               gain=1.0, readnoise=inputs.read_noise, satlevel=np.inf, niter=4, sepmed=False,
                               cleantype="medmask")
        return np.asarray(mask, bool)

    def detect(self, inputs: Inputs) -> Detection:
        self._record(inputs.image, inputs.ignore)
        start = time.perf_counter()
        masks = [self.run(inputs, s) for s in self.sigclips]
        seconds = (time.perf_counter() - start) / len(masks)
        return Detection(masks=masks, params=np.array(self.sigclips), seconds=seconds, runs=len(masks))


class LacosmicMethod(AstroscrappyMethod):
    """The ``lacosmic`` package (``remove_cosmics``), swept like astroscrappy: ``cr_threshold`` = sigclip,
    ``contrast`` = objlim, ``neighbor_threshold`` = 0.3 sigclip, ``mask`` = ignore, ``effective_gain=1``.
    Optional: used only when ``lacosmic`` is installed.
    """

    name = "lacosmic"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        Method.__init__(self)
        self._remove = importlib.import_module("lacosmic").remove_cosmics
        self.sigclips, self.objlim = tuple(float(x) for x in sigclips), float(objlim)
        self.description = (f"lacosmic `remove_cosmics(img, contrast={self.objlim:g}, cr_threshold in "
                            f"{list(self.sigclips)}, neighbor_threshold=0.3 cr_threshold, mask=ignore, "
                            "effective_gain=1, readnoise=instrument)`")

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        from astropy import log

        level = log.level
        log.setLevel("WARNING")  # it logs every iteration at INFO
        try:
            _, mask = self._remove(inputs.image, contrast=self.objlim, cr_threshold=sigclip,
                                   neighbor_threshold=0.3 * sigclip, mask=inputs.ignore, effective_gain=1.0,
                                   readnoise=inputs.read_noise, maxiter=4)
        finally:
            log.setLevel(level)
        return np.asarray(mask, bool)


class DfcosmicMethod(AstroscrappyMethod):
    """The ``dfcosmic`` package (torch L.A.Cosmic), swept like astroscrappy. It takes no ignore mask: it
    sees the same median-filled image as deepCR. Optional: used only when ``dfcosmic`` is installed.
    """

    name = "dfcosmic"

    def __init__(self, sigclips: Sequence[float] = SIGCLIPS, objlim: float = OBJLIM):
        Method.__init__(self)
        self._lacosmic = importlib.import_module("dfcosmic").lacosmic
        self.sigclips, self.objlim = tuple(float(x) for x in sigclips), float(objlim)
        self.description = (f"dfcosmic `lacosmic(img, sigclip in {list(self.sigclips)}, sigfrac=0.3, "
                            f"objlim={self.objlim:g}, niter=4, gain=1, readnoise=instrument)`")

    def _record(self, image: np.ndarray, ignore: np.ndarray | None) -> None:
        super()._record(image, None)  # no ignore input

    def run(self, inputs: Inputs, sigclip: float) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch on our read-only array; dfcosmic never writes
            _, mask = self._lacosmic(inputs.image, sigclip=sigclip, sigfrac=0.3, objlim=self.objlim, niter=4,
                                     gain=1.0, readnoise=inputs.read_noise, device="cpu")
        return np.asarray(mask, bool)


SWEEP_METHODS = {"astroscrappy": AstroscrappyMethod, "lacosmic": LacosmicMethod, "dfcosmic": DfcosmicMethod}


def build_method(spec: str, *, inpaint: str | None = None, device: str = "cpu", sigclips: Sequence[float] = SIGCLIPS,
                 objlim: float = OBJLIM) -> Method:
    """A method from ``"cleaner:MODEL"``, ``"deepcr:MODEL"``, ``"cosmic-conn:MODEL"``, ``"astroscrappy"``,
    ``"lacosmic"`` or ``"dfcosmic"``.

    Raises ImportError when the method's package is missing and ValueError for an unknown spec.
    """
    kind, _, model = spec.partition(":")
    model = model or "ACS-WFC"
    if kind == "cleaner":
        return CleanerMethod(model, inpaint, device)
    if kind == "deepcr":
        return DeepCRMethod(model, inpaint)
    if kind == "cosmic-conn":
        return CosmicConnMethod(model if model != "ACS-WFC" else "ground_imaging")
    if kind in SWEEP_METHODS:
        return SWEEP_METHODS[kind](sigclips, objlim)
    raise ValueError(f"unknown method {spec!r} (cleaner:MODEL, deepcr:MODEL, cosmic-conn:MODEL, "
                     f"{', '.join(SWEEP_METHODS)})")
