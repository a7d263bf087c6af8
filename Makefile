# The two commands of the README: `make demo` (the main job on the embedded default) and `make test`.
# Both bootstrap the virtualenv in .venv on a fresh machine.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: demo test lint bench bench-store venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,model]'
	touch $@

demo: venv
	$(BIN)/prewarm db upgrade
	$(BIN)/prewarm status

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: venv
	scripts/ensure-system.sh
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench-store: venv
	scripts/ensure-system.sh
	$(BIN)/python -m benchmarks.store_bench

bench: bench-store

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache prewarm.db prewarm.db-shm prewarm.db-wal
