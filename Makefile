# parkfleet: every target bootstraps .venv idempotently, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv node demo test lint typecheck bench fuzz clean serve cluster soak rollout-soak

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# node-oidc-provider for the external-issuer tests, from the npm registry at the version pinned
# in tools/harness/oidc/package-lock.json, into the ignored build/node/ (quick once installed).
# Without npm the tests that need it skip (and fail under PARK_REQUIRE_SERVICES=1).
NODE_DIR := build/node
NODE_STAMP := $(NODE_DIR)/.installed
OIDC_PKG := tools/harness/oidc

node: $(NODE_STAMP)

$(NODE_STAMP): $(OIDC_PKG)/package.json $(OIDC_PKG)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		mkdir -p $(NODE_DIR) && cp $(OIDC_PKG)/package.json $(OIDC_PKG)/package-lock.json $(NODE_DIR)/ && \
		npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the node-oidc-provider tests will skip"; fi

demo: venv
	$(BIN)/python -m tools.demo

test: venv node
	$(BIN)/ruff check provisioning tests tools device
	$(BIN)/ruff format --check provisioning tests tools device
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check provisioning tests tools device
	$(BIN)/ruff format --check provisioning tests tools device

typecheck: venv
	$(BIN)/mypy

bench: venv node
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

# A phased rollout (1,5%,25%,100%) to 500 agents counting through HAProxy (tools/rolloutsoak.py).
ROLLOUT_SOAK_ARGS ?=
rollout-soak: venv
	$(BIN)/python -m tools.rolloutsoak $(ROLLOUT_SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
