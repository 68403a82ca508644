# Two commands for a newcomer: `make demo` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench fuzz clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned: 2.13.0 is the CPU build on this machine's disk; anything looser downloads CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[torch,tf,recipes,dev]'
	# keras-hub's full dependency set would replace pinned packages (tensorflow-text, ...): its code only
	$(PY) -m pip install -q --no-deps keras-hub==0.32.0
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check wmap tests bench
	$(VENV)/bin/mypy wmap

test: $(STAMP) lint
	$(PY) -m pytest -n 2 tests

demo: $(STAMP)
	$(PY) -m wmap.demo

bench: $(STAMP)
	$(PY) -m bench.bench_plan
	$(PY) -m bench.bench_moe
	$(PY) -m bench.bench_torch
	$(PY) -m bench.bench_keras --repeat 3
	$(PY) -m bench.bench_cold
	$(PY) -m bench.bench_keras_hub

fuzz: $(STAMP)
	$(PY) tests/fuzz/fuzz_parsers.py --seconds $${FUZZ_SECONDS:-120}

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
