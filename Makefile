# parkfleet: every target bootstraps .venv idempotently, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck bench fuzz clean serve cluster soak

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
	$(BIN)/python -m tools.bench --write docs/benchmarks.md

# schemathesis, every check, from the service's OpenAPI document, on SQLite and PostgreSQL.
FUZZ_EXAMPLES ?= 100
fuzz: venv
	$(BIN)/python -m tools.fuzz --max-examples $(FUZZ_EXAMPLES)

# deploy/'s layout on this machine (own PostgreSQL, Mosquitto, 3 instances, HAProxy) until Ctrl-C.
cluster: venv
	$(BIN)/python -m tools.cluster

# 500 agents through HAProxy to 3 instances for 10 minutes, faults on a schedule (tools/soak.py).
SOAK_ARGS ?=
soak: venv
	$(BIN)/python -m tools.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
