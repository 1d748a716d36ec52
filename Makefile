# Two entry points: `make serve` and `make test`. Each creates .venv on first use
# and reinstalls when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test bench bench-memory bench-vectors bench-uploads schemas clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	$(BIN)/switchboard serve

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest

bench: bench-memory bench-vectors bench-uploads

bench-memory: $(VENV)/.test-installed
	$(BIN)/python benchmarks/memory_bench.py

bench-vectors: $(VENV)/.test-installed
	$(BIN)/python benchmarks/vector_bench.py

bench-uploads: $(VENV)/.test-installed
	$(BIN)/python benchmarks/upload_bench.py

schemas: $(VENV)/.serve-installed
	$(BIN)/switchboard schemas

clean:
	rm -rf $(VENV)
