# Switchboard: one short list of commands, run the same way locally and in CI.
#
# Dependencies: one lock, uv.lock (`make lock`), pins every dependency of the project and of
# each extra with the hash of every file; it is locked for, and tested on, Python 3.11 (CI and
# the images). `make setup` installs its dev subset, deploy/requirements/dev.txt (exported from
# the lock by `make generate`), with `pip --require-hashes`, then the project itself, editable,
# with --no-deps: nothing is resolved at install time. uv itself comes from the lock (dev extra).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --require-virtualenv
UV     := $(BIN)/python -m uv --no-config
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=
LOCK_ARGS ?=
# The suite runs in two passes. First everything but the tests marked `serial`, in parallel
# (pytest-xdist): the end-to-end tests mostly wait on real-time calls, so more workers than
# cores pays. With their simulators in the test processes, 6 workers keep 2 cores about 90 %
# busy (3:28 for this pass, against 3:57 with 4); one test at a time per worker is handed out
# (--maxschedchunk 1), the long ones first (tests/conftest.py). Then the `serial` tests, alone:
# the 20-call soak keeps 2 cores busy by itself, and the barge-in test's ±60 ms bound is a
# timing that a saturated machine stretches by scheduling alone. PYTEST_WORKERS=0
# runs the first pass serially too; PYTEST_ARGS adds options to both (exit status 5 of the
# second pass: it selected no test). `make test` runs lint, types and the generated-files check
# beside the suite (-j; each one's output kept together).
PYTEST_WORKERS ?= 6
# Bytecode is written even where the environment says not to (PYTHONDONTWRITEBYTECODE): pytest
# then keeps the test modules it rewrites for its assertions, and a later pytest process (the
# serial pass, the next run) loads them instead of rewriting 250 modules again (8 s → 4 s).
# WARM writes it all once, in one process, before the parallel pass of `make test`: on a clean
# clone each of the 6 workers, and every edge and worker they start at first, would otherwise
# compile the same modules side by side (the pass took 3:36 on a clean clone, 3:01 warm).
export PYTHONDONTWRITEBYTECODE :=
WARM := $(BIN)/python -m compileall -q services shared && $(BIN)/pytest --collect-only -q \
	>$(VENV)/collect.log || { tail -n 40 $(VENV)/collect.log; exit 1; }
PYTEST_ARGS ?=
PARALLEL := $(BIN)/pytest -n $(PYTEST_WORKERS) --maxschedchunk 1 $(PYTEST_ARGS)
SERIAL := $(BIN)/pytest -p no:xdist $(PYTEST_ARGS)
# Branch coverage of services/ and shared/, summed over both passes; `coverage report` then
# prints it and fails below the floor ([tool.coverage] in pyproject.toml).
COVERAGE := --cov --cov-report= --cov-fail-under=0

.PHONY: setup demo bench bench-transcode test pytest test-fast test-e2e lint typecheck format \
	check clean generate check-generated lock

setup: $(STAMP)  ## create .venv with the project and its test tools, from the lock

$(STAMP): deploy/requirements/dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; v = "%d.%d" % sys.version_info[:2]; v == "3.11" or \
	  print(f"warning: .venv runs Python {v}; the lock is tested on 3.11 (CI, the images)")'
	$(PIP) install --quiet --require-hashes -r deploy/requirements/dev.txt
	$(PIP) install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)  ## one simulated call end to end: Redis, edge, worker, simulators
	$(BIN)/python -m services.demo

# The bench extra (matplotlib, for the PNG) on top of dev.txt, from the same lock.
$(BENCH_STAMP): $(STAMP) uv.lock
	$(UV) export --quiet --frozen --format requirements.txt --no-emit-project --all-extras \
	  --output-file $(VENV)/bench-requirements.txt
	$(PIP) install --quiet --require-hashes -r $(VENV)/bench-requirements.txt
	@touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)  ## split vs a single-process peer vs a lean relay, echo and conversation loads; BENCH_ARGS="--calls 100 --duration 60"
	$(BIN)/python -m services.bench $(BENCH_ARGS)

bench-transcode: $(STAMP)  ## what REALTIME_AUDIO_FORMAT=pcm16 costs: quality, latency, CPU per resampler
	$(BIN)/python -m services.bench.transcode $(BENCH_ARGS)

test: $(STAMP)  ## everything CI runs: lint, types, generated files, the suite
	$(MAKE) --no-print-directory -j4 --output-sync=target lint typecheck check-generated pytest

pytest: $(STAMP)  ## the whole suite (parallel, then serial) with branch coverage and its floor
	$(WARM)
	$(PARALLEL) -m "not serial" $(COVERAGE)
	$(SERIAL) -m serial $(COVERAGE) --cov-append || [ $$? -eq 5 ]
	$(BIN)/coverage report

test-fast: $(STAMP)  ## unit and service tests: everything but the end-to-end tier
	$(PARALLEL) -m "not e2e"

test-e2e: $(STAMP)  ## the end-to-end tier alone: real processes, real Redis, real calls
	$(PARALLEL) -m "e2e and not serial"
	$(SERIAL) -m "e2e and serial" || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check services shared tests deploy
	$(BIN)/ruff format --check services shared tests deploy

# The deploy scripts are not a package: a second, strict run checks them as scripts.
# (render_panels.py imports matplotlib, which CI does not install: pyproject's override lets
# mypy skip its missing stubs.)
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict $(sort $(wildcard deploy/*.py deploy/*/*.py))

format: $(STAMP)
	$(BIN)/ruff format services shared tests deploy
	$(BIN)/ruff check --fix services shared tests deploy

check: test

# Generated files: the configuration table (docs/configuration.md) and .env.example (from
# shared/config.py), the Grafana dashboard, the Kubernetes PrometheusRule, and the requirement
# files exported from uv.lock. deploy/generate.py lists each with its source.
generate: $(STAMP)  ## rebuild every generated file from its source
	$(BIN)/python deploy/generate.py

check-generated: $(STAMP)  ## fail, naming the file and the command to run, if a generated file is stale (writes nothing)
	$(BIN)/python deploy/generate.py --check

lock: $(STAMP)  ## re-resolve uv.lock after editing pyproject.toml's dependencies (LOCK_ARGS=--upgrade: newest of everything), then export
	$(UV) lock $(LOCK_ARGS)
	$(BIN)/python deploy/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache demo-output .coverage .coverage.*
