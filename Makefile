# faaspub: two commands for newcomers (make run, make test), a few more for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup system lint typecheck unit bench clean

## make run: start the service on embedded defaults and publish the examples.
run: $(STAMP)
	$(BIN)/python scripts/run.py

## make test: everything CI checks (lint, types, the whole suite with real components).
test: setup lint typecheck unit

setup: system $(STAMP)
	@scripts/install-gitlab-ci-local.sh >/dev/null
	@scripts/setup-rucio-server.sh

system:
	@scripts/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy publisher webhooks runtime-images/python/faaspub_runtime

# Three workers, one test file each at a time: most tests wait on containers, servers and disks,
# so three share two cores well; each worker gets its own registry, podman and servers.
unit: $(STAMP)
	$(BIN)/pytest -q -n 3 --dist loadfile

## make bench: every benchmark (quick mode unless BENCH_FULL=1); writes bench/results.json and RESULTS.md.
bench: setup
	$(BIN)/python bench/run.py $(if $(BENCH_FULL),--full,)

## make clean: stop faaspub's private podman (releasing its storage mounts) and remove local state.
clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -c 'from publisher.config import load_settings; \
		from publisher.podman import stop_private_service; stop_private_service(load_settings())'; fi
	rm -rf .faaspub data .pytest_cache .mypy_cache .ruff_cache .gitlab-ci-local .venv-rucio
