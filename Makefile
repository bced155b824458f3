# The developer's front door: `make run` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SECRET_FILE := .autional-dev-secret
DEMO_DB ?= sqlite:///autional-sessions.db
DEMO_USER := usr_0000001
PORT ?= 8000

.PHONY: setup browser run test test-sqlite test-postgres lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

# Every test, on SQLite, then on PostgreSQL (skipped with a reason where none is reachable; a failure
# under CI=true).
test: setup browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	AUTIONAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest

test-sqlite: setup
	$(BIN)/python -m pytest

test-postgres: setup
	AUTIONAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Throughput against the hand-written yardstick in ../shared/bench (see bench/compare.py). Minutes long and
# noisy on a shared machine, so not part of `make test`. Options: make bench BENCH_ARGS='--cases sqlite-20'
bench: setup
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis reports
