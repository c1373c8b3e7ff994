#!/usr/bin/env bash
# Wheels for the GPU run (bench/gpu.py) on a host with Python 3.12 and torch, numpy, scipy, matplotlib,
# xarray, fsspec, psutil, pyyaml, cloudpickle, toolz, msgpack, jinja2, click, sortedcontainers, pandas,
# numba and nvidia-ml-py already there, but no dask, distributed, dask-cuda, astropy or zarr.
#
#   bash bench/gpu_wheels.sh            # fills .whl/ (git-ignored); prints the total size
#
# Versions are this checkout's (.venv), so the GPU host runs what the tests ran. Everything here is
# py3.12 manylinux / pure-Python wheels, downloaded without dependencies: the list is complete for the
# packages the host lacks (checked with `unzip -p WHEEL '*/METADATA' | grep ^Requires-Dist`).
# On the host:  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT=.whl
mkdir -p "$OUT"
rm -f "$OUT"/*.whl

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

PACKAGES=(dask distributed dask-cuda astropy pyerfa astropy-iers-data zarr numcodecs donfig google-crc32c
          partd locket tblib zict tornado)
SPECS=()
for name in "${PACKAGES[@]}"; do
    if v="$(version "$name" 2>/dev/null)"; then SPECS+=("$name==$v"); else SPECS+=("$name"); fi
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$OUT" "${SPECS[@]}"
# This package itself, with its shipped weights.
"$PY" -m pip wheel -q --no-deps -w "$OUT" .
du -ch "$OUT"/*.whl | tail -1
ls "$OUT"
