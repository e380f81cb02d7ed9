# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every Python package at an exact version, generated from pyproject.toml (+ its test extra) by `make lock`
LOCK := requirements.lock
# pip-compile runs from its own venv, so locking never adds to or changes the packages in .venv
TOOLS := .venv-tools
PIP := pip==26.3
PIP_TOOLS := pip-tools==7.6.2

.PHONY: demo test lint venv lock verify study clean-results

$(STAMP): pyproject.toml $(LOCK) scripts/check-lock.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP)
	# exactly the lock (pip's configuration on this project's machines takes torch==2.14.1 from their
	# disk), then the project itself with --no-deps, so nothing is resolved a second time
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	# the venv must hold the lock and nothing else, and the lock must still match pyproject.toml
	$(BIN)/python scripts/check-lock.py $(LOCK)
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

# Regenerate requirements.lock. Pins already in it are kept where pyproject.toml still allows them;
# `make lock LOCK_ARGS=--upgrade` moves every package to its newest allowed release,
# `make lock LOCK_ARGS='--upgrade-package NAME'` one package. No --generate-hashes: PyPI's JSON API is not
# reachable from this project's machines, and without it pip-compile downloads every file of every locked
# release to hash it (GBs of torch wheels for all platforms).
lock:
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q $(PIP) $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND='make lock' $(TOOLS)/bin/pip-compile -q --extra test --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) -o $(LOCK) pyproject.toml

demo: $(STAMP)
	$(BIN)/snakemake --cores all --resources gpu=1

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Do the committed results of a suite regenerate here? Reruns its runs into a scratch folder and compares
# (README: Reproducing our numbers). `make verify SUITE=demo SELECT='fmnist-synth/dfg/*'` for a subset.
SUITE ?= demo
verify: $(STAMP)
	$(BIN)/dfg --suite $(SUITE) verify $(if $(SELECT),--select '$(SELECT)')

# The study of docs/study.md from the committed runs of fmnist-full, fmnist-fixed-split and dfg-slope02
# (tables and figures into results/study/; seconds: it reads runs, trains nothing).
study: $(STAMP)
	$(BIN)/dfg study --results results --out-dir results/study

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/snakemake --lint
