# Two commands do the whole setup on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TS_DIR := clients/typescript

.PHONY: install dev test lint format bench clean openapi ts-install

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "llmflow needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: install
	$(BIN)/llmflow dev

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy core workflow_defs worker api activities bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The committed API description and the clients' types made from it; rerun after changing a route
# or a schema (tests/test_openapi_committed.py and tests/test_typescript_client.py say when).
openapi: install ts-install
	$(BIN)/llmflow openapi -o clients/openapi.json
	cd $(TS_DIR) && node node_modules/openapi-typescript/bin/cli.js ../openapi.json --output schema.d.ts

# npm ci of the TypeScript client's tools, only when its package-lock.json changed.
ts-install: install
	$(BIN)/python $(TS_DIR)/install.py

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf .llmflow .pytest_cache .ruff_cache .mypy_cache
