"""Database fixtures shared by the suite: users, stored keys, teams and tracked threads.

Imported by tests/conftest.py. Every upstream call goes over real HTTP to the emulator:
the autouse `upstream_at_emulator` points UMAMIAI_BASE_URL at it.
"""

import itertools
from datetime import UTC, datetime

import pytest

from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint
from threads_app.models import ApiKey, Membership, Team, TrackedThread

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def upstream_at_emulator(settings, emulator):
    settings.UMAMIAI_BASE_URL = emulator.base_url
    settings.UMAMIAI_READ_TIMEOUT = 2.0
    return emulator


@pytest.fixture
def make_user(django_user_model):
    def make(username=None, **extra):
        username = username or f"user{next(_counter)}"
        return django_user_model.objects.create_user(
            username=username, email=f"{username}@example.test", password="pw-" + username, **extra
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob")


@pytest.fixture
def make_key():
    """Store a key (personal when `owner` is given, else the team's) as the app would."""

    def make(owner=None, team=None, secret=None, label=None, created_by=None):
        from tests.conftest import TEST_KEY

        secret = secret or TEST_KEY
        return ApiKey.objects.create(
            owner=owner,
            team=team,
            label=label or f"key {next(_counter)}",
            secret_encrypted=encrypt_secret(secret),
            hint=secret_hint(secret),
            fingerprint=secret_fingerprint(secret),
            created_by=created_by or owner,
        )

    return make


@pytest.fixture
def api_key(make_key, user):
    return make_key(owner=user, label="alice's key")


@pytest.fixture
def make_team(make_user):
    """A team with the given {user: role} members."""

    def make(name=None, members=None):
        team = Team.objects.create(name=name or f"team {next(_counter)}")
        for member, role in (members or {}).items():
            Membership.objects.create(team=team, user=member, role=role)
        return team

    return make


@pytest.fixture
def make_thread(emulator):
    """Create a thread in the emulator under the key's secret and track it."""

    def make(api_key, label="", metadata=None, messages=None, secret=None, tracked_by=None):
        from tests.conftest import TEST_KEY

        upstream = emulator.seed_thread(secret or TEST_KEY, metadata=metadata, messages=messages)
        return TrackedThread.objects.create(
            thread_id=upstream["id"],
            api_key=api_key,
            label=label,
            tracked_by=tracked_by or api_key.owner,
            upstream_created_at=datetime.fromtimestamp(upstream["created_at"], tz=UTC),
            metadata=upstream.get("metadata") or {},
            tool_resources=upstream.get("tool_resources") or {},
        )

    return make


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client
