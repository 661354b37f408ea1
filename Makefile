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

## Demo: SQLite + the built-in emulator + seeded users, on http://127.0.0.1:8000
demo: $(STAMP)
	DJANGO_DEBUG=1 DATABASE_URL=sqlite:///demo.sqlite3 $(PY) manage.py demo

## The database-sensitive tests, run a second time on PostgreSQL when TEST_POSTGRES_URL is set
POSTGRES_TESTS := tests/test_audit_chain.py tests/test_audit_page.py tests/test_admin.py \
	tests/test_keys.py tests/test_rotate_encryption_keys.py tests/test_teams.py \
	tests/test_threads_create.py tests/test_threads_detail.py tests/test_threads_edit_delete.py \
	tests/test_threads_import.py tests/test_threads_list.py tests/test_threads_search.py tests/test_reconcile.py \
	tests/test_transcripts.py tests/test_bulk_delete.py tests/test_tasks.py tests/test_operability.py \
	tests/test_deletion_idempotence.py tests/test_audit_checkpoints.py tests/test_audit_promise.py \
	tests/test_hardening.py tests/test_scale_out.py tests/test_bulk_crash.py

## Lint (ruff, mypy), then the whole suite (browser tests included) on SQLite, then POSTGRES_TESTS on PostgreSQL
test: $(STAMP) lint
	$(PY) -m pytest
	@if [ -n "$(TEST_POSTGRES_URL)" ]; then \
		echo "PostgreSQL pass: $(POSTGRES_TESTS)"; \
		DATABASE_URL="$(TEST_POSTGRES_URL)" $(PY) -m pytest $(POSTGRES_TESTS); \
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
