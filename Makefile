# SamPlan: the front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export SAMPLAN_DATABASE_URL ?= sqlite+aiosqlite:///var/samplan.db

.DEFAULT_GOAL := help
.PHONY: help install run migrate demo test test-cluster openapi test-fast lint typecheck bench bench-quick all clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

# pip at its normal verbosity, one line per package, so a first install (about a
# minute) shows its progress instead of a silent terminal; what is already there
# is not listed again. bash for pipefail: pip's failure is the recipe's.
$(STAMP): SHELL := /bin/bash
$(STAMP): .SHELLFLAGS := -o pipefail -c
$(STAMP): pyproject.toml
	@echo "Installing samplan and its dev tools into $(VENV) (about a minute the first time)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]' \
		| { grep -v '^Requirement already satisfied' || true; }
	rm -f $(VENV)/.installed-*
	touch $(STAMP)
	@echo "$(VENV) is ready: $(BIN)/samplan"

install: $(STAMP) ## Create .venv with the `samplan` command and the dev tools

migrate: install ## Bring the database (SAMPLAN_DATABASE_URL) to the newest schema
	$(BIN)/samplan migrate

demo: migrate ## Load the demo agreement (idempotent)
	$(BIN)/samplan load-demo

run: demo ## Set up, migrate, load demo data, print curl lines with demo tokens, serve on http://127.0.0.1:8080/fhir (SQLite)
	@base=http://$${SAMPLAN_HOST:-127.0.0.1}:$${SAMPLAN_PORT:-8080}/fhir; \
	tok() { $(BIN)/samplan token "$$@" | tail -n1; }; \
	echo "Ready-to-paste requests (development tokens, valid 1 h):"; \
	echo "curl $$base/metadata"; \
	echo "# patient Greta Holm (portal): her plan, and who looked at it"; \
	echo "curl -H 'Authorization: Bearer $$(tok --scope 'patient/*.rs patient/AuditEvent.rs' --patient 194501011235)' '$$base/CarePlan'"; \
	echo "curl -H 'Authorization: Bearer $$(tok --scope 'patient/*.rs patient/AuditEvent.rs' --patient 194501011235)' '$$base/AuditEvent'"; \
	echo "# GP at the care unit in Greta's care team: read and write"; \
	echo "curl -H 'Authorization: Bearer $$(tok --scope 'user/*.cruds' --user SE2321000073-1001 --care-unit SE2321000073-2001)' '$$base/CarePlan?_include=CarePlan:subject'"; \
	echo "# staff at another unit, not in the care team: an empty Bundle"; \
	echo "curl -H 'Authorization: Bearer $$(tok --scope 'user/*.rs' --user SE2321000073-1999 --care-unit SE2321000073-9001)' '$$base/CarePlan'"; \
	echo "# the unit's log administrator: who accessed what"; \
	echo "curl -H 'Authorization: Bearer $$(tok --scope 'user/AuditEvent.rs' --user SE2321000073-0001 --care-unit SE2321000073-2001)' '$$base/AuditEvent?agent=SE2321000073-1001'"; \
	echo "# your own system: README.md, 'Your first agreement' (samplan token --scope 'system/*.cruds' --org HSA-ID)"
	SAMPLAN_AUTH_ENABLED=$${SAMPLAN_AUTH_ENABLED:-true} \
	SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS=true \
	$(BIN)/samplan serve --with-worker --host $${SAMPLAN_HOST:-127.0.0.1} --port $${SAMPLAN_PORT:-8080}

test: install ## Run the whole test suite (SQLite, a temporary PostgreSQL, the cluster test)
	SAMPLAN_TEST_CLUSTER=1 $(BIN)/pytest -q -p no:cacheprovider

test-cluster: install ## Deployment test: PostgreSQL, 2 serve + 2 worker behind nginx, with kills and a database restart
	$(BIN)/pytest -q -p no:cacheprovider -m cluster tests/deploy/test_cluster.py

openapi: install ## Export openapi/openapi.json and regenerate docs/configuration.md
	$(BIN)/samplan openapi
	$(BIN)/samplan config-docs

test-fast: install ## Tests on SQLite only, no server processes
	SAMPLAN_TEST_SKIP_POSTGRES=1 $(BIN)/pytest -q -m "not e2e"

bench: install ## Benchmark against a same-run ceiling (SQLite and PostgreSQL); prints the table
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install ## A quick benchmark run (1,000 patients, 3 s per scenario)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

lint: install ## ruff, mypy and the layer contracts (import-linter: the gate)
	$(BIN)/ruff check services tests
	$(BIN)/mypy
	$(BIN)/lint-imports

typecheck: install ## mypy strict on services/
	$(BIN)/mypy

all: lint test ## What CI checks

clean: ## Remove the virtualenv, caches and local databases
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
