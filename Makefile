# One entry point for every task. `make test` and `make demo` set everything up
# on a fresh machine (a virtualenv with lockheed and its test tools; etcd and
# kube-apiserver are built from their Go modules on first use and cached).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

LINT   := src tests scripts $(wildcard bench)

.PHONY: setup test contend lint format typecheck check demo bench soak build-control-plane up docs docs-serve clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "Setting up $(VENV) with lockheed and its tools (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The suite runs on TEST_WORKERS pytest-xdist workers, each with a control plane
# of its own: most tests wait on leases rather than on a CPU. The tests that run
# a crowd of processes form one group (tests/support.py, CROWD), so they take
# turns on one worker. The binaries are built (or found) first, with progress.
TEST_WORKERS ?= 2

test: setup
	$(BIN)/python -m lockheed.testing build
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The multi-process contention runs at full size (32 processes, 10,240 acquisitions
# of a mutex; 16 processes, 5,120 of a shared lock and a semaphore, holders stopped and killed).
contend: setup
	LOCKHEED_SOAK=1 $(BIN)/python -m pytest tests/test_processes.py -k mutual_exclusion -s
	LOCKHEED_SOAK=1 $(BIN)/python -m pytest tests/test_shared_processes.py -k across_processes -s

lint: setup
	$(BIN)/ruff check $(LINT)
	$(BIN)/ruff format --check $(LINT)
	$(BIN)/python scripts/unasync.py --check

format: setup
	$(BIN)/ruff format $(LINT)
	$(BIN)/ruff check --fix $(LINT)

typecheck: setup
	$(BIN)/mypy

check: lint typecheck test

demo: setup
	$(BIN)/python -m lockheed demo

up: setup
	$(BIN)/python -m lockheed.testing up

# A long run under every fault at once, not part of `make test`; writes RELIABILITY.md.
# e.g. make soak SOAK_ARGS="--acquisitions 500"
SOAK_ARGS ?= --acquisitions 10000
soak: setup
	$(BIN)/python tests/soak.py $(SOAK_ARGS)

build-control-plane: setup
	$(BIN)/python -m lockheed.testing build

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

# The documentation site (mkdocs.yml, docs/), built with --strict into site/:
# a broken link, reference or nav entry fails. docs-serve previews it.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $@

docs: $(VENV)/.docs-installed
	$(DOCS_ENV) $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.docs-installed
	$(DOCS_ENV) $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .venv-* site build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
