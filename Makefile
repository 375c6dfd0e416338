# SamPlan: the front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export SAMPLAN_DATABASE_URL ?= sqlite+aiosqlite:///var/samplan.db

.DEFAULT_GOAL := help
.PHONY: help install run migrate demo test test-fast lint typecheck bench all clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the `samplan` command and the dev tools

migrate: install ## Bring the database (SAMPLAN_DATABASE_URL) to the newest schema
	$(BIN)/samplan migrate

demo: migrate ## Load the demo agreement (idempotent)
	$(BIN)/samplan load-demo

run: demo ## Set up, migrate, load demo data and serve on http://127.0.0.1:8080/fhir (SQLite)
	SAMPLAN_AUTH_ENABLED=$${SAMPLAN_AUTH_ENABLED:-false} \
	SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS=true \
	$(BIN)/samplan serve --host $${SAMPLAN_HOST:-127.0.0.1} --port $${SAMPLAN_PORT:-8080}

test: install ## Run the whole test suite (SQLite and a temporary PostgreSQL)
	$(BIN)/pytest -q -p no:cacheprovider

test-fast: install ## Tests on SQLite only, no server processes
	SAMPLAN_TEST_SKIP_POSTGRES=1 $(BIN)/pytest -q -m "not e2e"

lint: install ## ruff and mypy
	$(BIN)/ruff check services tests
	$(BIN)/mypy

typecheck: install ## mypy strict on services/
	$(BIN)/mypy

all: lint test ## What CI checks

clean: ## Remove the virtualenv, caches and local databases
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
