# faaspub: two commands for newcomers (make run, make test), a few more for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What make run needs; the test and lint tools come on top for everything else.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# -qq: one line per step; pip still prints errors. (Its cache makes a second install quick.)
PIP := $(BIN)/python -m pip install -qq --disable-pip-version-check

.PHONY: run test setup system lint typecheck unit bench clean

## make run: start the service on embedded defaults and publish the examples (Ctrl-C stops all).
## Its clock starts here, before the install, so "ready in N s" is what the user waited.
run:
	@export FAASPUB_RUN_STARTED=$$(date +%s.%N); \
		$(MAKE) -s --no-print-directory $(STAMP) && exec $(BIN)/python scripts/run.py

## make test: everything CI checks (lint, types, the whole suite with real components).
test: setup lint typecheck unit

setup: system $(DEV_STAMP)
	@scripts/install-gitlab-ci-local.sh >/dev/null
	@scripts/setup-rucio-server.sh

system:
	@scripts/setup-system.sh

$(STAMP): pyproject.toml
	@echo "==> installing faaspub into $(VENV) (first run, or pyproject.toml changed)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	@echo "==> installing the test and lint tools into $(VENV)"
	@$(PIP) -e '.[dev]'
	@touch $(DEV_STAMP)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy publisher webhooks runtime-images/python/faaspub_runtime

# Three workers, one test file each at a time: most tests wait on containers, servers and disks,
# so three share two cores well; each worker gets its own registry, podman and servers.
unit: $(DEV_STAMP)
	$(BIN)/pytest -q -n 3 --dist loadfile

## make bench: every benchmark (quick mode unless BENCH_FULL=1); writes bench/results.json and RESULTS.md.
bench: setup
	$(BIN)/python bench/run.py $(if $(BENCH_FULL),--full,)

## make clean: stop what make run started (faaspub serve's private podman, its containers and storage
## mounts) and remove its state (FAASPUB_HOME, default ~/.local/share/faaspub) and local caches.
clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/run.py --clean; fi
	rm -rf .faaspub data .pytest_cache .mypy_cache .ruff_cache .gitlab-ci-local .venv-rucio
