# The two commands a fresh machine needs: `make serve` and `make test`.
# `make serve ARGS="--port 9000 --config entrepot.yaml"` passes options to `entrepot serve`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint typecheck imports install clean bench bench-perf bench-surfaces bench-fleet \
	bench-routing bench-console

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install -e '.[dev,postgres,datasets]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/entrepot serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

test: lint typecheck imports
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

bench: $(STAMP)
	$(BIN)/python benchmarks/gateway_overhead.py

# Needs wrk and nginx (Debian packages) and LiteLLM in its own virtualenv; installs what is missing.
LITELLM_VENV := $(VENV)/litellm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(LITELLM_VENV)/bin/litellm:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install 'litellm[proxy]'

bench-perf: $(STAMP) $(LITELLM_VENV)/bin/litellm
	command -v wrk >/dev/null && command -v nginx >/dev/null \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk nginx-light)
	$(BIN)/python -m benchmarks.perf

bench-surfaces: $(STAMP)
	command -v wrk >/dev/null && command -v nginx >/dev/null \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk nginx-light)
	$(BIN)/python -m benchmarks.perf.surfaces

bench-routing: $(STAMP)
	command -v wrk >/dev/null && command -v nginx >/dev/null \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk nginx-light)
	$(BIN)/python -m benchmarks.perf.routing

bench-console: $(STAMP)
	$(BIN)/python benchmarks/console.py

bench-fleet: $(STAMP)
	command -v wrk >/dev/null && command -v nginx >/dev/null \
		|| ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk nginx-light)
	$(BIN)/python -m benchmarks.perf.fleet
