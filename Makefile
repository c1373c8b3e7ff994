# Two commands do everything: `make demo` and `make test`. Each creates .venv and installs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-portability lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepcr-dask demo --output demo-output

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs

# The exactness, tiling and precision tests again: as on an AVX2-only CPU (AMD EPYC Zen 1-3, most laptops),
# by emulation, and on the portable path (oneDNN off: what CUDA and CPUs without oneDNN run).
NUMERIC_TESTS := tests/test_cleaner.py tests/test_nn.py tests/test_precision.py tests/test_probes.py
# On a CPU whose best ISA is AVX2 already (AMD EPYC Zen 3), the emulated run would repeat the native one
# instruction for instruction, so it is said and skipped there.
test-portability: $(STAMP)
	@if [ "$$($(PY) -c 'import torch; print(torch.backends.cpu.get_cpu_capability())')" = "AVX2" ]; then \
		echo "test-portability: this CPU's best ISA is AVX2: the native run was the AVX2 run; not repeated"; \
	else \
		ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -q -rs $(NUMERIC_TESTS) tests/test_engine.py; \
	fi
	DEEPCR_DASK_TEST_ONEDNN=0 $(PY) -m pytest -q -rs $(NUMERIC_TESTS)

bench: $(STAMP)
	$(PY) bench/inference.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
