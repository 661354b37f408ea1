"""Every status code the OpenAPI document gives an operation is one it really answers: for each
documented (operation, status), a request that gets it. An operation documenting a status
nothing here makes fails `test_every_documented_status_has_a_witness` (trim its `errors(...)`,
or add the request that makes it happen); a witness of a status the document does not name
fails too. Schemathesis (tests/test_api_conformance.py) checks the other way: that no answer
has a status the document does not give.

Four problems any operation may answer (`threads_app.api.base.ALWAYS`) are made the same way
for all: an unknown query parameter (400), no token (401), a token without the operation's
scope (403), the rate limit (429). The others are each operation's own.
"""

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.api_helpers import ApiClient, make_token
from threads_app.api.urls import AREAS, api
from threads_app.models import (
    ApiToken,
    BulkDeleteItem,
    BulkDeleteJob,
    JobApproval,
    Membership,
    TrackedThread,
)
from threads_app.selectors import ThreadFilters
from threads_app.services import exports, jobs

NEW_SECRET = "sk-api-statuses-new-secret-0123456789"
NOWHERE = 2**40  # an id nothing has
Job = BulkDeleteJob.State


@dataclass
class World:
    """alice owns team Blue (its key, a thread there, a queued job of it, a selection of the
    team); bob has a key of his own. `api` sends alice's token with every scope."""

    api: ApiClient
    user: Any
    team: Any
    key: Any
    theirs_key: Any
    thread: TrackedThread
    job: BulkDeleteJob
    emulator: Any
    settings: Any


@dataclass(frozen=True)
class Ask:
    """A request of an operation: each part a value or a function of the world."""

    pk: Any = None
    params: Any = field(default_factory=dict)
    body: Any = None
    setup: Callable[[World], None] | None = None


def _value(part: Any, world: World) -> Any:
    return part(world) if callable(part) else part


def failing_upstream(world: World) -> None:
    world.emulator.add_fault(status=500, times=50)


def deleting(world: World) -> None:
    TrackedThread.objects.filter(pk=world.thread.pk).update(
        state=TrackedThread.State.DELETING, state_before_deletion=TrackedThread.State.ACTIVE
    )


def selection_pk(world: World) -> int:
    filters = ThreadFilters(team_id=world.team.pk)
    return jobs.create_selection(user=world.user, filters=filters).pk


def busy_selection_pk(world: World) -> int:
    pk = selection_pk(world)
    BulkDeleteJob.objects.create(created_by=world.user, selection_id=pk, state=Job.QUEUED)
    return pk


def finished_job_pk(world: World) -> int:
    return BulkDeleteJob.objects.create(created_by=world.user, state=Job.FINISHED).pk


def unwritable_checkpoints(world: World) -> None:
    world.settings.AUDIT_CHECKPOINT_FILE = str(world.settings.BASE_DIR)  # a directory: no append


def awaiting_approval_pk(world: World, *, expires_in: timedelta = timedelta(hours=1)) -> int:
    """A deletion of the team's thread that another user asked for, waiting for its owner."""
    requester = User.objects.create_user("requester")
    Membership.objects.create(team=world.team, user=requester, role=Membership.Role.MEMBER)
    job = BulkDeleteJob.objects.create(
        created_by=requester,
        team=world.team,
        state=Job.AWAITING_APPROVAL,
        approval_expires_at=timezone.now() + expires_in,
        total=1,
    )
    BulkDeleteItem.objects.create(job=job, tracked_thread=world.thread, thread_id="thread_x")
    JobApproval.objects.create(
        job=job, team=world.team, team_name=world.team.name, threads=1, threshold=0
    )
    return job.pk


def expired_approval_pk(world: World) -> int:
    return awaiting_approval_pk(world, expires_in=-timedelta(minutes=1))


def export_pk(world: World, *, state: str = Job.FINISHED) -> int:
    """An export of the team's threads that its owner asked for, written (when finished)."""
    job = BulkDeleteJob.objects.create(
        created_by=world.user,
        kind=BulkDeleteJob.Kind.EXPORT,
        team=world.team,
        state=state,
        finished_at=timezone.now(),
    )
    if state == Job.FINISHED:
        job.export_file = exports.export_storage().save(
            f"job-{job.pk}-threads.jsonl.gz", ContentFile(gzip.compress(b'{"thread": {}}\n'))
        )
        job.save(update_fields=["export_file"])
    return job.pk


def running_export_pk(world: World) -> int:
    return export_pk(world, state=Job.RUNNING)


def cancelled_export_pk(world: World) -> int:
    return export_pk(world, state=Job.CANCELLED)


def revoked_key_pk(world: World) -> int:
    world.key.revoked_at = world.key.created_at
    world.key.save(update_fields=["revoked_at"])
    return world.key.pk


def thread_pk(world: World) -> int:
    return world.thread.pk


def key_pk(world: World) -> int:
    return world.key.pk


def job_pk(world: World) -> int:
    return world.job.pk


# The statuses each operation answers besides ALWAYS (its success included), and how.
OWN: dict[tuple[str, str], dict[int, Ask]] = {
    ("get", "/api/v1/threads"): {
        200: Ask(params={"q": "status"}),
        404: Ask(params=lambda w: {"key": w.theirs_key.pk}),
        422: Ask(params={"date_from": "2026-02-30"}),
    },
    ("post", "/api/v1/threads"): {
        201: Ask(body=lambda w: {"api_key": w.key.pk}),
        404: Ask(body=lambda w: {"api_key": w.theirs_key.pk}),
        422: Ask(body={"label": "no key"}),
        502: Ask(body=lambda w: {"api_key": w.key.pk}, setup=failing_upstream),
    },
    ("post", "/api/v1/threads/import"): {
        200: Ask(body=lambda w: {"api_key": w.key.pk, "thread_ids": [w.thread.thread_id]}),
        404: Ask(body=lambda w: {"api_key": NOWHERE, "thread_ids": ["thread_x"]}),
        422: Ask(body=lambda w: {"api_key": w.key.pk, "thread_ids": []}),
    },
    ("get", "/api/v1/threads/{pk}"): {
        200: Ask(pk=thread_pk),
        404: Ask(pk=NOWHERE),
        422: Ask(pk=0),
        502: Ask(pk=thread_pk, setup=failing_upstream),
    },
    ("patch", "/api/v1/threads/{pk}"): {
        200: Ask(pk=thread_pk, body={"metadata": {"a": "b"}}),
        404: Ask(pk=NOWHERE, body={"metadata": {}}),
        409: Ask(pk=thread_pk, body={"metadata": {}}, setup=deleting),
        422: Ask(pk=thread_pk, body={"metadata": "none"}),
        502: Ask(pk=thread_pk, body={"metadata": {}}, setup=failing_upstream),
    },
    ("delete", "/api/v1/threads/{pk}"): {
        200: Ask(pk=thread_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=thread_pk, setup=deleting),
        422: Ask(pk=0),
        502: Ask(pk=thread_pk, setup=failing_upstream),
    },
    ("post", "/api/v1/selections"): {
        201: Ask(body={"q": "status"}),
        404: Ask(body=lambda w: {"key": w.theirs_key.pk}),
        422: Ask(body={"state": "lost"}),
    },
    ("get", "/api/v1/selections/{pk}"): {
        200: Ask(pk=selection_pk),
        404: Ask(pk=NOWHERE),
        422: Ask(pk=0),
    },
    ("post", "/api/v1/selections/{pk}/jobs"): {
        202: Ask(pk=selection_pk, body={"action": "delete", "typed_count": 1}),
        404: Ask(pk=NOWHERE, body={"action": "delete", "typed_count": 1}),
        409: Ask(pk=busy_selection_pk, body={"action": "delete", "typed_count": 1}),
        422: Ask(pk=selection_pk, body={"action": "delete"}),
    },
    ("get", "/api/v1/keys"): {200: Ask()},
    ("post", "/api/v1/keys"): {
        201: Ask(body={"label": "new", "secret": NEW_SECRET}),
        404: Ask(body={"label": "new", "secret": NEW_SECRET, "team": NOWHERE}),
        422: Ask(body={"label": "new", "secret": "short"}),
        502: Ask(body={"label": "new", "secret": NEW_SECRET}, setup=failing_upstream),
    },
    ("post", "/api/v1/keys/{pk}/rotate"): {
        200: Ask(pk=key_pk, body={"secret": NEW_SECRET}),
        404: Ask(pk=NOWHERE, body={"secret": NEW_SECRET}),
        409: Ask(pk=revoked_key_pk, body={"secret": NEW_SECRET}),
        422: Ask(pk=key_pk, body={}),
        502: Ask(pk=key_pk, body={"secret": NEW_SECRET}, setup=failing_upstream),
    },
    ("post", "/api/v1/keys/{pk}/revoke"): {
        200: Ask(pk=key_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=revoked_key_pk),
        422: Ask(pk=0),
    },
    ("post", "/api/v1/jobs/delete"): {
        202: Ask(body=lambda w: {"threads": [w.thread.pk]}),
        422: Ask(body={"threads": []}),
    },
    ("get", "/api/v1/jobs/{pk}"): {200: Ask(pk=job_pk), 404: Ask(pk=NOWHERE), 422: Ask(pk=0)},
    ("post", "/api/v1/jobs/{pk}/cancel"): {
        200: Ask(pk=job_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=finished_job_pk),
        422: Ask(pk=0),
    },
    ("post", "/api/v1/jobs/{pk}/approve"): {
        200: Ask(pk=awaiting_approval_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=expired_approval_pk),
        422: Ask(pk=0),
    },
    ("post", "/api/v1/jobs/{pk}/refuse"): {
        200: Ask(pk=awaiting_approval_pk, body={"reason": "not now"}),
        404: Ask(pk=NOWHERE, body={"reason": ""}),
        409: Ask(pk=expired_approval_pk, body={"reason": ""}),
        422: Ask(pk=awaiting_approval_pk, body={"reason": "x" * 501}),
    },
    ("get", "/api/v1/jobs/{pk}/export"): {
        200: Ask(pk=export_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=running_export_pk),
        410: Ask(pk=cancelled_export_pk),
        422: Ask(pk=0),
    },
    ("get", "/api/v1/jobs/{pk}/receipt"): {
        200: Ask(pk=finished_job_pk),
        404: Ask(pk=NOWHERE),
        409: Ask(pk=job_pk),
        422: Ask(pk=finished_job_pk, params={"format": "xml"}),
        503: Ask(pk=finished_job_pk, setup=unwritable_checkpoints),
    },
    ("get", "/api/v1/audit/events"): {
        200: Ask(),
        404: Ask(params=lambda w: {"key": w.theirs_key.pk}),
        422: Ask(params={"outcome": "maybe"}),
    },
    ("get", "/api/v1/audit/export"): {
        200: Ask(),
        404: Ask(params=lambda w: {"key": w.theirs_key.pk}),
        422: Ask(params={"outcome": "maybe"}),
    },
    ("get", "/api/v1/overview"): {200: Ask()},
}
ALWAYS = (400, 401, 403, 429)


def _scopes() -> dict[tuple[str, str], set[str]]:
    """The scopes each operation's token may have (its authentication's)."""
    scopes = {}
    for area in AREAS:
        for route, path_view in area.router.path_operations.items():
            path = "/api/v1" + route.replace("{int:pk}", "{pk}")
            for operation in path_view.operations:
                for method in operation.methods:
                    (auth,) = operation.auth_callbacks
                    scopes[method.lower(), path] = set(auth.scopes)
    return scopes


def documented() -> set[tuple[str, str, int]]:
    document = api.get_openapi_schema()
    return {
        (method, path, int(status))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
    }


WITNESSED = sorted(
    {
        *((method, path, status) for (method, path), asks in OWN.items() for status in asks),
        *((method, path, status) for method, path in OWN for status in ALWAYS),
    }
)


def test_every_documented_status_has_a_witness():
    assert documented() == set(WITNESSED)


@pytest.fixture
def world(user, other_user, make_team, make_key, make_thread, emulator, settings, tmp_path):
    settings.API_RATE_LIMIT = 1000
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.log")
    emulator.add_key(NEW_SECRET)
    team = make_team("Blue", {user: Membership.Role.OWNER})
    key = make_key(team=team, created_by=user)
    thread = make_thread(key, label="status thread")
    job = BulkDeleteJob.objects.create(created_by=user, team=team, state=Job.QUEUED)
    BulkDeleteItem.objects.create(job=job, tracked_thread=thread, thread_id=thread.thread_id)
    theirs = make_key(owner=other_user, label="bob's")
    return World(
        ApiClient(make_token(user)), user, team, key, theirs, thread, job, emulator, settings
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "status"), WITNESSED, ids=str)
def test_the_documented_status_happens(method, path, status, world, user, settings):
    ask = OWN[method, path].get(status) or Ask(pk=1)
    client = world.api
    params = _value(ask.params, world)
    if status == 400:
        params = {**params, "nosuch": "1"}
    elif status == 401:
        client = ApiClient()
    elif status == 403:
        other = sorted(set(ApiToken.Scope.values) - _scopes()[method, path])
        client = ApiClient(make_token(user, scopes=other))
    elif status == 429:
        settings.API_RATE_LIMIT = 0
    if ask.setup:
        ask.setup(world)
    target = path if ask.pk is None else path.replace("{pk}", str(_value(ask.pk, world)))
    body = _value(ask.body, world)
    response = client.send(method, target, params, "" if body is None else json.dumps(body))
    assert response.status_code == status, response.content
    if status >= 400:
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["status"] == status
