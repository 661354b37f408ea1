# Threads Console. `make demo` and `make test` are all a newcomer needs (Python 3.11+).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: demo test lint format run worker bench conformance clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Demo: SQLite + the built-in emulator + seeded users + a local SSO provider, on http://127.0.0.1:8000
demo: $(STAMP)
	DJANGO_DEBUG=1 DATABASE_URL=sqlite:///demo.sqlite3 $(PY) manage.py demo --sso

## Lint (ruff, mypy), then the whole suite (browser tests included) on SQLite, then again on PostgreSQL;
## each pass runs in TEST_PROCESSES pytest-xdist workers (2: the machines' cores)
TEST_PROCESSES ?= 2
test: $(STAMP) lint
	$(PY) -m pytest -n $(TEST_PROCESSES)
	@if [ -n "$(TEST_POSTGRES_URL)" ]; then \
		echo "PostgreSQL pass: the whole suite again, on TEST_POSTGRES_URL"; \
		DATABASE_URL="$(TEST_POSTGRES_URL)" $(PY) -m pytest -n $(TEST_PROCESSES); \
	else \
		echo "PostgreSQL pass not run: set TEST_POSTGRES_URL=postgres://user:pass@host:5432/db" \
			"to run it (README, PostgreSQL tests)"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Production-style serving: settings from the environment (see README)
run: $(STAMP)
	$(PY) manage.py collectstatic --noinput
	$(PY) manage.py migrate --noinput
	$(PY) manage.py createcachetable
	$(VENV)/bin/gunicorn dashboard.wsgi --bind $${BIND:-127.0.0.1:8000} --workers $${WORKERS:-2}

## The background worker that runs queued tasks; production runs it beside `make run`
worker: $(STAMP)
	$(PY) manage.py db_worker --no-reload

bench: $(STAMP)
	for script in bench/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) staticfiles test-artifacts

# `make conformance` (schemathesis against the emulator) lives in its own fragment.
include Makefile.conformance
