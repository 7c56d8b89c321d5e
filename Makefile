# bert-lottery: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GLUE_DIR ?= $(abspath ../shared/data/glue)
export GLUE_DIR
ARGS ?=
SWEEP ?= smoke
DIR ?= outputs

.PHONY: help setup run test test-all bench sweep report lint clean slurm-up slurm-down

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project with its dev extras (idempotent)

run: $(STAMP) ## the main job: the structured lottery experiment on STS-B with the packaged MiniLM (ARGS=... to override)
	$(PY) -m lottery experiment=structured task=stsb model=minilm seed=1337 $(ARGS)

test: $(STAMP) ## the test suite (fast; tiny random BERT and small data)
	$(PY) -m pytest -q $(ARGS)

test-all: $(STAMP) ## the test suite including slow tests on the real MiniLM and GLUE
	$(PY) -m pytest -q -m "slow or not slow" $(ARGS)

bench: $(STAMP) ## speed benchmarks; writes bench/results/*.json and *.md
	$(PY) -m bench $(ARGS)

sweep: $(STAMP) ## a Hydra multirun sweep from conf/sweep/$(SWEEP).yaml (SWEEP=smoke|paper|protocol|protocol_keys)
	$(PY) -m lottery -m +sweep=$(SWEEP) $(ARGS)

report: $(STAMP) ## tables and figures of every results.json under DIR (default outputs/)
	$(PY) -m lottery.report $(DIR) $(ARGS)

slurm-up: ## a real one-node SLURM here (root; Debian's slurm-wlm), for tests/test_slurm.py and hydra/launcher=slurm
	bash .ci/slurm/start.sh

slurm-down: ## stop the SLURM that slurm-up started (by PID files)
	bash .ci/slurm/stop.sh

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check lottery lightning_modules callbacks pipeline hydra_plugins tests bench

clean: ## remove caches (not outputs/)
	rm -rf .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
