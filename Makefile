# Two entry points: `make serve` and `make test`. Each creates .venv on first use
# and reinstalls when pyproject.toml changes. Set-up output goes to stderr, so that
# `make serve` keeps stdout clean for the stdio protocol.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: serve test bench bench-memory bench-vectors bench-uploads bench-stdio bench-spawn bench-control bench-approvals bench-workspaces bench-resume schemas clean

$(BIN)/python:
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/python -m pip install -q --upgrade pip >&2

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	@echo "installing switchboard into $(VENV)" >&2
	@$(BIN)/python -m pip install -q -e . >&2
	@touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	@echo "installing switchboard with test extras into $(VENV)" >&2
	@$(BIN)/python -m pip install -q -e '.[test]' >&2
	@touch $@ $(VENV)/.serve-installed

serve: $(VENV)/.serve-installed
	@$(BIN)/switchboard serve

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: bench-memory bench-vectors bench-uploads bench-stdio bench-spawn bench-control bench-approvals bench-workspaces bench-resume

bench-memory: $(VENV)/.test-installed
	$(BIN)/python benchmarks/memory_bench.py

bench-vectors: $(VENV)/.test-installed
	$(BIN)/python benchmarks/vector_bench.py

bench-uploads: $(VENV)/.test-installed
	$(BIN)/python benchmarks/upload_bench.py

bench-stdio: $(VENV)/.test-installed
	$(BIN)/python benchmarks/stdio_bench.py

bench-spawn: $(VENV)/.test-installed
	$(BIN)/python benchmarks/spawn_bench.py

bench-control: $(VENV)/.test-installed
	$(BIN)/python benchmarks/control_bench.py

bench-approvals: $(VENV)/.test-installed
	$(BIN)/python benchmarks/approval_bench.py

bench-workspaces: $(VENV)/.test-installed
	$(BIN)/python benchmarks/workspace_bench.py

bench-resume: $(VENV)/.test-installed
	$(BIN)/python benchmarks/resume_bench.py

schemas: $(VENV)/.serve-installed
	$(BIN)/switchboard schemas

clean:
	rm -rf $(VENV)
