# parkfleet: every target bootstraps .venv idempotently, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench fuzz clean serve

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: venv
	$(BIN)/python -m tools.demo

test: venv
	$(BIN)/ruff check provisioning tests tools device
	$(BIN)/ruff format --check provisioning tests tools device
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check provisioning tests tools device
	$(BIN)/ruff format --check provisioning tests tools device

typecheck: venv
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m tools.bench

# schemathesis, every check, from the service's OpenAPI document, on SQLite and PostgreSQL.
FUZZ_EXAMPLES ?= 100
fuzz: venv
	$(BIN)/python -m tools.fuzz --max-examples $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
