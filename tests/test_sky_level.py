"""Every model of ours must be indifferent to a constant sky: what is a cosmic ray does not depend on it.

Measured on a real HST pair (STIS CR-SPLIT, validation association, sky ~18 e-), its truth the pair
difference: TPR at FPR 1e-4 and 5e-4 with the frame as it is and with 200 e- added everywhere. A model that
learned the sky level of its few training frames gains or loses several percent there (the previous
generic-HST 0.172 -> 0.348 on this pair at FPR 1e-4; deepCR's ACS-WFC 0.508 -> 0.590, its F606W-2-32
0.539 -> 0.581). Ours are normalised to a reference sky ("sky"), so they see the same input either way.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import real_file

from deepcr_dask.evaluate.metrics import default_thresholds, tally_scores

SKY_E = 200.0
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def scene():
    real_file("stis_o56502040_raw.fits")
    from deepcr_dask.evaluate import prepare_inputs
    from deepcr_dask.evaluate.scenes import pair_scenes

    first = pair_scenes("stis", split="validation")[0]
    return first, prepare_inputs(first.image, first.ignore)


def _tprs(cleaner, image, ignore, truth) -> np.ndarray:
    tally = tally_scores(cleaner.probability(image, ignore), truth, ignore, default_thresholds(641))
    return tally.curve().at_fpr([1e-4, 5e-4], "tpr")


def _our_mask_models() -> list[str]:
    from deepcr_dask.models.zoo import get_spec, list_models

    return [m for m in list_models("mask") if get_spec(m, "mask").source == "deepcr-dask"]


@pytest.mark.parametrize("model", _our_mask_models())
def test_our_models_ignore_a_constant_sky(scene, model):
    from deepcr_dask import Cleaner

    sample, inputs = scene
    cleaner = Cleaner(model, device="cpu")
    as_is = _tprs(cleaner, inputs.image, inputs.ignore, sample.truth)
    raised = _tprs(cleaner, inputs.image + np.float32(SKY_E), inputs.ignore, sample.truth)
    assert as_is[0] > 0.5, f"{model} finds {as_is[0]:.3f} of the pair's rays at FPR 1e-4"
    assert np.all(np.abs(raised - as_is) <= TOLERANCE), f"{model}: TPR {as_is} as is, {raised} with +{SKY_E} e-"


@pytest.fixture(scope="module")
def sky_model(tmp_path_factory):
    """A "sky"-normalised mask model (the shipped generic-HST weights with a card saying so), and beside it
    the same weights without the normalisation ("plain")."""
    import json
    import shutil

    from deepcr_dask.models.zoo import WEIGHTS_DIR

    folder = tmp_path_factory.mktemp("sky-model")
    card = json.loads((WEIGHTS_DIR / "generic-HST-mask.json").read_text())
    for name, normalize in (("sky", "sky"), ("plain", "none")):
        shutil.copy(WEIGHTS_DIR / "generic-HST-mask.safetensors", folder / f"{name}.safetensors")
        (folder / f"{name}.json").write_text(json.dumps({**card, "normalize": normalize, "sky": 200.0}))
    return str(folder / "sky.safetensors")


def test_sky_normalisation_is_indifferent_to_a_constant(sky_model):
    """x - background + sky: a constant added to the image changes nothing the network sees."""
    from conftest import synthetic_frame

    from deepcr_dask import Cleaner

    image, _ = synthetic_frame((192, 160), seed=4, sky=20.0)
    cleaner = Cleaner(sky_model, device="cpu")
    base = cleaner.probability(image)
    for constant in (-15.0, 180.0, 1500.0):
        np.testing.assert_allclose(cleaner.probability(image + np.float32(constant)), base, rtol=0, atol=2e-5)
    plain = Cleaner(sky_model.replace("sky.safetensors", "plain.safetensors"), device="cpu")  # weights alone
    assert np.abs(plain.probability(image + np.float32(1500.0)) - plain.probability(image)).max() > 0.05


def test_sky_normalisation_tiles_and_dask_exactly(sky_model):
    """The background is a whole-image statistic: tiles and Dask blocks get the same one as the whole."""
    import dask.array as da
    from conftest import synthetic_frame

    from deepcr_dask import Cleaner, clean_dask

    image, _ = synthetic_frame((257, 301), seed=5, sky=35.0)
    whole = Cleaner(sky_model, device="cpu").probability(image)
    tiled = Cleaner(sky_model, device="cpu", tile=64).probability(image)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    _, _, prob = clean_dask(da.from_array(image, chunks=(100, 120)), mask=sky_model, return_probability=True,
                            device="cpu")
    np.testing.assert_allclose(prob.compute(scheduler="sync"), whole, rtol=0, atol=1e-6)


def test_the_inpaint_network_sees_the_image_unshifted(sky_model):
    """The sky shift is the mask model's: an inpaint network gets the image as it was trained on it."""
    from conftest import synthetic_frame

    from deepcr_dask import Cleaner

    image, truth = synthetic_frame((128, 160), seed=6, sky=30.0)
    plain = sky_model.replace("sky.safetensors", "plain.safetensors")
    shifted = Cleaner(sky_model, inpaint="generic-HST", device="cpu").inpaint(image, truth)
    as_is = Cleaner(plain, inpaint="generic-HST", device="cpu").inpaint(image, truth)
    np.testing.assert_array_equal(shifted, as_is)
