# Switchboard: one short list of commands, run the same way locally and in CI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

.PHONY: setup demo bench bench-transcode test pytest lint typecheck format check clean config-table

setup: $(STAMP)  ## create .venv with the project and its test tools installed

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## one simulated call end to end: Redis, edge, worker, simulators
	$(BIN)/python -m services.demo

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[sim,dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)  ## split bridge vs direct relay under load; BENCH_ARGS="--calls 100 --duration 60"
	$(BIN)/python -m services.bench $(BENCH_ARGS)

bench-transcode: $(STAMP)  ## what REALTIME_AUDIO_FORMAT=pcm16 costs: quality, latency, CPU per resampler
	$(BIN)/python -m services.bench.transcode $(BENCH_ARGS)

test: lint typecheck pytest  ## the whole suite: lint, types, unit, service and end-to-end tests

pytest: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check services shared tests
	$(BIN)/ruff format --check services shared tests

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format services shared tests
	$(BIN)/ruff check --fix services shared tests

check: test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-output

config-table: $(STAMP)  ## regenerate the README's configuration table from shared/config.py
	$(BIN)/python -c 'import re, pathlib; from shared.config import reference_table as t; p = pathlib.Path("README.md"); p.write_text(re.sub(r"(<!-- config:begin -->\n).*(\n<!-- config:end -->)", lambda m: m.group(1) + t() + m.group(2), p.read_text(), flags=re.S))'
