# The two commands of the README: `make demo` (the main job on the embedded default) and `make test`.
# Both bootstrap the virtualenv in .venv on a fresh machine.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test test-containers images lint readme-results bench bench-store bench-fleet bench-replica bench-grpc bench-gateway bench-forecast bench-simulate bench-startup bench-capacity bench-zero bench-zero-sweep bench-zero-live bench-cost venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,model]'
	touch $@

demo: venv
	$(BIN)/prewarm db upgrade
	$(BIN)/prewarm demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Every test runs, in two passes: the in-process ones (neither slow nor containers) spread over $(TEST_WORKERS)
# workers (pytest-xdist, a test module's tests on one worker), then the slow ones (real processes, timed replays,
# Docker) one at a time as before, so that no timed assertion shares the machine with another test, together with
# those marked one_process (schemathesis' tests, one per operation, share an id that pytest-xdist cannot tell apart;
# sub-second lease timings on the real clock). Each pass prints its slowest tests. Whatever an interrupted run left of
# the container tests (stacks, services, containers, networks, volumes) is removed afterwards, pass or fail. Images
# stay cached. The images the container tests need are built in the background while the linters and the first pass
# run (on a fresh machine that is minutes of debootstrap and pip, mostly waiting on the network); the second pass
# starts once the build is done, and its first container test finds them built (or reports the build's failure).
TEST_WORKERS ?= 2
test: venv
	scripts/ensure-system.sh
	log=$$(mktemp); scripts/build-images.sh --content-tag >/dev/null 2>"$$log" & build=$$!; \
	$(BIN)/ruff check . && $(BIN)/mypy; lint=$$?; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not containers and not one_process" --durations=10; fast=$$?; \
	wait $$build || { echo "image build failed (the container tests build again and report it):"; tail -5 "$$log"; }; \
	rm -f "$$log"; \
	$(BIN)/pytest -m "slow or containers or one_process" --durations=25; slow=$$?; \
	scripts/ensure-docker.sh --clean; \
	[ $$lint = 0 ] || exit $$lint; [ $$fast = 0 ] && exit $$slow; exit $$fast

test-containers: venv
	scripts/ensure-system.sh
	$(BIN)/pytest -m containers; status=$$?; scripts/ensure-docker.sh --clean; exit $$status

# The images compose.yaml needs, built here from Debian's packages (seconds when nothing changed).
images:
	scripts/ensure-docker.sh
	scripts/build-images.sh

bench-store: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.store_bench

# Learned capacity on the live stack: the true capacity measured, then five replays of NASA day 12 (configured right
# and 2x too high, learned from a right, a low and a high start).
bench-capacity: venv
	$(BIN)/python -m benchmarks.capacity_bench --day 12

bench-fleet: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.fleet_bench --deployments 1000 --controllers 1 2 --sweep 2000,3000,4000,5000

# KServe pins its own FastAPI, uvicorn and protobuf: its baseline server runs from a virtualenv of its own.
.venv-kserve/.installed:
	test -x .venv-kserve/bin/python || $(PYTHON) -m venv .venv-kserve
	.venv-kserve/bin/pip install -q kserve==0.21.0 onnxruntime numpy
	touch $@

bench-replica: venv .venv-kserve/.installed
	scripts/ensure-system.sh
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	$(BIN)/python -m benchmarks.replica_bench

# gRPC against HTTP on one replica, both shipped models (the compute-bound one from rapidocr's package).
bench-grpc: venv
	scripts/ensure-system.sh
	$(BIN)/pip install -q --no-deps rapidocr-onnxruntime==1.4.4
	$(BIN)/python -m benchmarks.grpc_bench

bench-gateway: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.gateway_bench

bench-forecast: venv
	for trace in nasa_http_jul1995_1min; do \
	  $(BIN)/prewarm forecast backtest --trace data/traces/$$trace.csv --horizon-s 600 --every-s 3600 --eval-s 604800; \
	done
	for trace in azure_llm_conv_2023_1s azure_llm_code_2023_1s; do \
	  $(BIN)/prewarm forecast backtest --trace data/traces/$$trace.csv --horizon-s 60 --every-s 60 --eval-s 1800; \
	done
	$(BIN)/python -m benchmarks.forecast_bounds

bench-startup: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.replica_startup

# Scale to zero, live: first-request latency after idle periods at zero (cold, warm pool, predictive; docs/zero.md).
bench-zero-live: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.zero_bench

# Capacity pools (reserved, spot, on-demand) with spot interruptions on the shared traces: docs/cost.md.
bench-cost: venv
	$(BIN)/python -m benchmarks.cost_bench

bench-simulate: venv
	$(BIN)/python -m benchmarks.simulate_bench
	$(BIN)/python -m benchmarks.simulate_bounds
	$(BIN)/python -m benchmarks.simulate_tuning

bench-zero: venv
	$(BIN)/python -m benchmarks.zero_sim --days 7

# The same at sparser thinnings, with the rate oracle's check (docs/zero.md, "The sparsity sweep").
bench-zero-sweep: venv
	$(BIN)/python -m benchmarks.zero_sim --days 7 --traces nasa --per-minute 0.1,0.3 --jobs 4

bench: bench-store bench-fleet bench-replica bench-grpc bench-gateway bench-forecast bench-simulate bench-zero bench-startup bench-capacity bench-zero-live bench-cost

# Re-run the commands named by the result blocks of README.md and docs/ and put their output in place (~15 min).
readme-results: venv
	$(BIN)/python scripts/readme_results.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var prewarm.db prewarm.db-shm prewarm.db-wal
