# The developer's front door: `make run` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The spec linters (Spectral with the OWASP ruleset, Redocly CLI), pinned in package.json and
# package-lock.json; `npm ci` runs again only when the lock file changes.
NODE_STAMP := node_modules/.installed
# No telemetry, update notices or install-time analytics from the linters.
NODE_LINT_ENV := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true SCARF_ANALYTICS=false
SECRET_FILE := .autional-dev-secret
DEMO_DB ?= sqlite:///autional-sessions.db
DEMO_USER := usr_0000001
PORT ?= 8000

.PHONY: setup constraints setup-node browser run test test-fast test-sqlite test-postgres lint lint-spec format bench clean \
	i18n-extract i18n-update i18n-compile i18n-init

setup: $(STAMP)

# Everything (server, contract suite, dev tools), at the exact versions of constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# After a change of pyproject.toml's dependencies: resolve them afresh in a scratch venv and pin the result.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --quiet -e '.[dev,bench]'
	{ sed -n '1,3p' constraints.txt; .venv-constraints/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .venv-constraints

setup-node: $(NODE_STAMP)

$(NODE_STAMP): package.json package-lock.json
	$(NODE_LINT_ENV) npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# The contract, linted: Spectral (spectral:oas and the OWASP API Security ruleset, as .spectral.yaml sets
# them up) fails on any error or warning; Redocly's `recommended` rules (redocly.yaml) fail on any error.
lint-spec: $(NODE_STAMP)
	$(NODE_LINT_ENV) node_modules/.bin/spectral lint --fail-severity=warn openapi.yaml
	$(NODE_LINT_ENV) node_modules/.bin/redocly lint openapi.yaml

# Chromium, for the browser test of the published docs (tests/e2e/test_docs_in_browser.py), from the
# distribution when it is missing; through sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser:
	command -v chromium >/dev/null || \
	{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

# A random HS256 key for local use only, made once and kept out of git.
$(SECRET_FILE):
	$(PYTHON) -c 'import secrets; print(secrets.token_hex(32))' > $(SECRET_FILE)

run: setup $(SECRET_FILE)
	@export AUTIONAL_DATABASE_URL='$(DEMO_DB)' AUTIONAL_JWT_SECRET="$$(cat $(SECRET_FILE))" AUTIONAL_LOG_FORMAT=text; \
	$(BIN)/autional-sessions migrate && \
	$(BIN)/autional-sessions seed --users 10 --sessions-per-user 25 && \
	token="$$($(BIN)/autional-sessions token --sub $(DEMO_USER) --ttl 86400)" && \
	echo && echo "A token for $(DEMO_USER), valid for 24 hours:" && echo "$$token" && echo && \
	echo "Try:" && \
	echo "curl -s -H \"Authorization: Bearer $$token\" 'http://127.0.0.1:$(PORT)/sessions/user/$(DEMO_USER)/sessions?page=1&page_size=5'" && \
	echo && echo "API docs: http://127.0.0.1:$(PORT)/ui/" && echo && \
	exec $(BIN)/autional-sessions serve --port $(PORT)

# Every test on SQLite, then again on PostgreSQL those that depend on the engine (marked `engine` by
# conftest.py; skipped with a reason where no PostgreSQL is reachable, a failure under CI=true).
test: setup browser lint-spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.import_contracts
	$(BIN)/python -m pytest
	AUTIONAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest -m engine

# The edit-run loop: unit and in-process integration tests on SQLite, nothing marked slow (servers,
# processes, the wheel), on every core, stopping at the first failure.
test-fast: setup
	$(BIN)/python -m pytest tests/unit tests/integration -m "not slow" -x -q -n auto

test-sqlite: setup
	$(BIN)/python -m pytest

test-postgres: setup
	AUTIONAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest -m engine

lint: setup lint-spec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.import_contracts

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Throughput of the production configuration (and of configurations without one feature each) against the
# hand-written yardstick in ../shared/bench and a raw ASGI floor (bench/floor_server.py); see bench/compare.py.
# Minutes long and noisy on a shared machine, so not part of `make test`. Options:
# make bench BENCH_ARGS='--cases sqlite-20'. Profile a configuration: .venv/bin/python bench/profile.py
bench: setup
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

# Problem texts in other languages (README, "Languages"): gettext catalogues, managed with Babel. Extract
# the English texts (the code's N_() and Nn_() calls, the spec's problem titles; babel.cfg) into the
# template, merge it into each language's messages.po, translate, then compile the .mo files the server
# reads (committed, so that they ship in the wheel). A new language: make i18n-init LOCALE=ja
LOCALE_DIR := autional_sessions/problems/locale
i18n-extract: setup
	$(BIN)/pybabel extract -F babel.cfg --no-default-keywords -k N_:1c,2 -k Nn_:1c,2,3 --add-comments=Translators: \
		--add-location=file --sort-by-file --project=autional-sessions --copyright-holder=Autional \
		--msgid-bugs-address=https://autional.com \
		-o $(LOCALE_DIR)/messages.pot autional_sessions handlers db openapi.yaml

i18n-update: i18n-extract
	$(BIN)/pybabel update -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) --no-fuzzy-matching --ignore-obsolete

i18n-compile: setup
	$(BIN)/pybabel compile -d $(LOCALE_DIR) --statistics

i18n-init: i18n-extract
	$(BIN)/pybabel init -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) -l $(LOCALE)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis reports
