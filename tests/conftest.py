"""Shared pytest fixtures."""

import importlib
import time

import pytest
from allauth.account.internal.flows import login as login_flows
from django.core.cache import cache
from django.db import connection
from django.test import Client

from emulator import Emulator
from tests.django_fixtures import *  # noqa: F403  (users, keys, teams, threads)
from tests.oidc_fixtures import (  # noqa: F401
    oidc_provider,  # the test OpenID Connect provider (tests/oidc_provider/), behaving
    oidc_provider_server,  # its process, one for the session
)
from tests.webhook_fixtures import (  # noqa: F401
    webhook_ca,  # a CA made for the run (trustme)
    webhook_receiver,  # a real HTTPS receiver on 127.0.0.1 that the app trusts
)
from tests.worker_fixtures import (  # noqa: F401
    immediate_tasks,  # tasks run as they are queued, in the caller
    start_worker,  # a real db_worker subprocess
)

# PostgreSQL-only modules: not even collected on another database (a skip would be a defect).
# test_scale_out.py runs app instances and workers against one database; on SQLite every
# writer waits for the others, which is not the deployment it proves.
# test_overview_counters_postgres.py: the counters' shards, one per PostgreSQL connection.
# test_selection_crash_postgres.py: a worker's connections killed (pg_terminate_backend).
if connection.vendor != "postgresql":
    collect_ignore = [
        "test_scale_out.py",
        "test_overview_counters_postgres.py",
        "test_selection_crash_postgres.py",
    ]

# Two accepted keys: two "projects" of the emulated Threads API.
TEST_KEY = "sk-test-emulator-alpha-0123456789abcdef0"
OTHER_TEST_KEY = "sk-test-emulator-beta-fedcba9876543210fe"


@pytest.fixture(scope="session")
def emulator_server():
    """One emulated Threads API for the whole session (accepts TEST_KEY and OTHER_TEST_KEY)."""
    with Emulator(keys=[TEST_KEY, OTHER_TEST_KEY]) as emulator:
        yield emulator


@pytest.fixture
def emulator(emulator_server):
    """The session's emulator, reset: no threads, faults, latency, log or extra keys."""
    emulator_server.reset()
    return emulator_server


# Audit triggers vs. transactional tests. A transactional test (`transactional_db`,
# `live_server`, `django_db(transaction=True)`) ends with a flush of every table, which the
# append-only audit triggers (and the chain head's) reject. The triggers are lifted for that
# flush only: dropped after the test (the fixture below is torn down before pytest-django's
# flush) and re-installed once the item's teardown is over (the hook below).
_audit_triggers = [
    importlib.import_module(f"threads_app.migrations.{name}")
    for name in ("0002_audit_append_only_triggers", "0004_audit_head_forward_only_triggers")
]
_LIFTED_TRIGGERS = pytest.StashKey[object]()


def _flushes_database(item):
    marker = item.get_closest_marker("django_db")
    return bool(
        {"transactional_db", "live_server"} & set(item.fixturenames)
        or (marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences")))
    )


@pytest.fixture(autouse=True)
def _lift_audit_triggers_for_flush(request, django_db_blocker):
    if not _flushes_database(request.node):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    for triggers in _audit_triggers:
        triggers.remove_triggers(connection)
    request.node.stash[_LIFTED_TRIGGERS] = django_db_blocker


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        blocker = item.stash.get(_LIFTED_TRIGGERS, None)
        # After the last item the test database is already destroyed: nothing to restore.
        if blocker is not None and nextitem is not None:
            with blocker.unblock():
                for triggers in _audit_triggers:
                    triggers.install_triggers(connection)


@pytest.fixture(autouse=True)
def _empty_the_cache_before_a_flush(request):
    """The cache is a database table that no model owns (allauth's rate limits count in it), so
    a transactional test's flush leaves it full, and the next test would inherit its counts (5
    reset emails to one address, and the next test's reset is a 429). Emptied before the flush."""
    if not _flushes_database(request.node):
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def force_login_counts_as_a_password_log_in(monkeypatch):
    """`Client.force_login` (and the browser tests' `log_in`, which uses it) leaves the session
    as a log-in by password just now leaves it: recently authenticated (threads_app/accounts.py),
    so a key can be added without asking for the password again. `authenticated_at` moves that
    moment (tests of reauthentication)."""
    original = Client.force_login

    def force_login(self, user, backend=None):
        original(self, user, backend)
        authenticated_at(self.session, user, time.time())

    monkeypatch.setattr(Client, "force_login", force_login)


def authenticated_at(session, user, at):
    """Record in the session (a SessionStore) that `user` last entered their password at `at`."""
    session[login_flows.AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "password", "at": at, "username": user.get_username()}
    ]
    session[login_flows._AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
