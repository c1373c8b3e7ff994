"""Models from other packages: a tiny model package, built as a wheel and installed by the test."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO

from deepcr_dask.inference.card_check import check_model_card
from deepcr_dask.models.zoo import WEIGHTS_DIR


def _card(folder: Path, name: str) -> Path:
    """A model card for a copy of our WFPC2 weights under another name, as a third party would ship it."""
    meta = json.loads((WEIGHTS_DIR / "WFPC2-mask.json").read_text())
    meta.update(name=name, instrument="Example camera", licence="BSD-3-Clause",
                held_out={"frames": ["wfpc2-chip3"], "tpr@0.0001": 0.57})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-mask.json").write_text(json.dumps(meta))
    shutil.copyfile(WEIGHTS_DIR / "WFPC2-mask.safetensors", folder / f"{name}-mask.safetensors")
    return folder / f"{name}-mask.json"


def _wheel(tmp: Path) -> Path:
    """tiny_models 0.1: a package whose MODELS folder holds one card, registered in deepcr_dask.models."""
    files = {"tiny_models/__init__.py": b"from pathlib import Path\nMODELS = Path(__file__).parent / 'models'\n"}
    card = _card(tmp / "src" / "tiny_models" / "models", "tiny-cam")
    for path in card.parent.iterdir():
        files[f"tiny_models/models/{path.name}"] = path.read_bytes()
    info = "tiny_models-0.1.dist-info"
    files[f"{info}/METADATA"] = b"Metadata-Version: 2.1\nName: tiny-models\nVersion: 0.1\n"
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = b"[deepcr_dask.models]\ntiny = tiny_models:MODELS\n"
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = tmp / "tiny_models-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def test_a_model_from_an_installed_package_loads_by_name(tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                              str(target), str(_wheel(tmp_path))], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)])}
    script = ("import numpy as np, deepcr_dask as dcr\n"
              "c = dcr.Cleaner(mask='tiny-cam', device='cpu')\n"
              "w = dcr.Cleaner(mask='WFPC2', device='cpu')\n"
              "img = np.random.default_rng(0).normal(100, 10, (96, 96)).astype('float32'); img[40, 30:36] += 900\n"
              "assert c.mask_model.spec.source == 'plugin:tiny-models', c.mask_model.spec.source\n"
              "assert np.array_equal(c.probability(img), w.probability(img))\n"
              "assert c.fpr_thresholds[1e-4] == w.fpr_thresholds[1e-4]\n"
              "print('loaded', c.mask_model.spec.name)\n")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "loaded tiny-cam" in run.stdout, run.stderr
    listing = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "models"], env=env, capture_output=True,
                             text=True, timeout=300)
    row = next(line for line in listing.stdout.splitlines() if line.startswith("tiny-cam "))
    assert row.split()[-1] == "plugin:tiny-models"


def test_models_check_validates_a_card_and_its_weights(tmp_path):
    card = _card(tmp_path / "good", "good-cam")
    assert check_model_card(card) == []
    cli = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "models", "check", str(card)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and cli.stdout.strip().endswith(": ok")
    meta = json.loads(card.read_text())
    del meta["licence"], meta["fpr_thresholds"]["0.005"]
    card.write_text(json.dumps(meta))
    problems = check_model_card(card)
    assert problems == ["missing fields: licence", "fpr_thresholds lacks FPR 0.005"]
    meta.update(licence="MIT", fpr_thresholds={"0.0001": 0.9, "0.0005": 0.5, "0.005": 0.1})
    meta["architecture"]["hidden"] = 16  # weights no longer fit
    card.write_text(json.dumps(meta))
    assert any("do not fit" in p for p in check_model_card(card))
    card.with_suffix(".safetensors").write_bytes(b"\x80\x04not safetensors")
    assert any("not a readable safetensors file" in p for p in check_model_card(card))
    bad = subprocess.run([sys.executable, "-m", "deepcr_dask.cli", "models", "check", str(card)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "not a readable safetensors" in bad.stderr
