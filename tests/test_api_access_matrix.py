"""The API's access matrix: every operation, by every scope, by owner, member, viewer and
outsider of a team, each cell a real request with a token that has that one scope.

A token without the operation's scope is refused with 403 (`insufficient_scope`) whoever holds
it; with it, the holder's role in the team decides, as on the pages: 404 for what they may not
see, 403 for what they may see but not do. No answer may carry a secret, and none given to
the outsider may name the team's things. An operation added to the API fails
`test_every_operation_has_a_rule` until RULES says who may use it.
"""

import gzip
import itertools
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from tests.api_helpers import ApiClient
from tests.conftest import TEST_KEY
from threads_app.api.urls import api
from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint
from threads_app.models import (
    ApiKey,
    ApiToken,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    Selection,
    Team,
    TrackedThread,
)
from threads_app.selectors import ThreadFilters
from threads_app.services import exports, jobs, tokens

Role = Membership.Role
ACTORS = ("owner", "member", "viewer", "outsider")
SCOPES = list(ApiToken.Scope.values)
NEW_SECRET = "sk-api-matrix-new-secret-0123456789"
SECRETS = (TEST_KEY, NEW_SECRET)


@dataclass(frozen=True)
class Rule:
    """The scope an operation needs and what each actor gets with it."""

    scope: str
    statuses: dict[str, int]
    body: object = None  # (world) -> JSON body
    params: dict = field(default_factory=dict)


def everyone(status):
    return dict.fromkeys(ACTORS, status)


def writers(allowed, *, viewer=403, outsider=404):
    return {"owner": allowed, "member": allowed, "viewer": viewer, "outsider": outsider}


def owners(allowed, *, outsider=404):
    return {"owner": allowed, "member": 403, "viewer": 403, "outsider": outsider}


# Every operation of the API, by method and path (as the OpenAPI document names it).
RULES = {
    ("get", "/api/v1/threads"): Rule("threads:read", everyone(200)),
    ("post", "/api/v1/threads"): Rule(
        "threads:write", writers(201), body=lambda w: {"api_key": w.key.pk}
    ),
    ("post", "/api/v1/threads/import"): Rule(
        "threads:write",
        writers(200),
        body=lambda w: {"api_key": w.key.pk, "thread_ids": [w.thread.thread_id]},
    ),
    ("get", "/api/v1/threads/{pk}"): Rule("threads:read", writers(200, viewer=200)),
    ("patch", "/api/v1/threads/{pk}"): Rule(
        "threads:write", writers(200), body=lambda w: {"metadata": {"matrix": "yes"}}
    ),
    ("delete", "/api/v1/threads/{pk}"): Rule("threads:delete", writers(200)),
    # Filters naming the team: out of the outsider's sight (404), as for the list.
    ("post", "/api/v1/selections"): Rule(
        "threads:read", writers(201, viewer=201), body=lambda w: {"team": w.team.pk}
    ),
    # A selection is its creator's (the member's): anyone else is shown nothing.
    ("get", "/api/v1/selections/{pk}"): Rule(
        "threads:read", {"owner": 404, "member": 200, "viewer": 404, "outsider": 404}
    ),
    ("post", "/api/v1/selections/{pk}/jobs"): Rule(
        "threads:delete",
        {"owner": 404, "member": 202, "viewer": 404, "outsider": 404},
        body=lambda w: {"action": "delete", "typed_count": 1},
    ),
    ("get", "/api/v1/keys"): Rule("threads:read", everyone(200)),
    ("post", "/api/v1/keys"): Rule(
        "keys:manage",
        owners(201),
        body=lambda w: {"label": "matrix", "secret": NEW_SECRET, "team": w.team.pk},
    ),
    ("post", "/api/v1/keys/{pk}/rotate"): Rule(
        "keys:manage", owners(200), body=lambda w: {"secret": NEW_SECRET}
    ),
    ("post", "/api/v1/keys/{pk}/revoke"): Rule("keys:manage", owners(200)),
    # Ids in the body: threads the user may not delete are refused as on the pages (403).
    ("post", "/api/v1/jobs/delete"): Rule(
        "threads:delete",
        writers(202, outsider=403),
        body=lambda w: {"threads": [w.thread.pk]},
    ),
    # A job is its creator's (the member's): anyone else is shown nothing.
    ("get", "/api/v1/jobs/{pk}"): Rule(
        "threads:read", {"owner": 404, "member": 200, "viewer": 404, "outsider": 404}
    ),
    # Its creator may cancel it (a running job: it stops after the deletions in flight).
    ("post", "/api/v1/jobs/{pk}/cancel"): Rule(
        "threads:delete", {"owner": 404, "member": 200, "viewer": 404, "outsider": 404}
    ),
    # Its receipt, to whoever sees the job: the world's job is running, so not yet (409).
    ("get", "/api/v1/jobs/{pk}/receipt"): Rule(
        "audit:read", {"owner": 404, "member": 409, "viewer": 404, "outsider": 404}
    ),
    # Approving or refusing: its creator never may (403 self_approval); nobody else sees a
    # job that waits for no approval of theirs (tests/test_approvals.py has the rules).
    ("post", "/api/v1/jobs/{pk}/approve"): Rule(
        "threads:delete", {"owner": 404, "member": 403, "viewer": 404, "outsider": 404}
    ),
    ("post", "/api/v1/jobs/{pk}/refuse"): Rule(
        "threads:delete",
        {"owner": 404, "member": 403, "viewer": 404, "outsider": 404},
        body=lambda w: {"reason": ""},
    ),
    # An export's file (team A's, asked for by the member): the member and the team's owner.
    ("get", "/api/v1/jobs/{pk}/export"): Rule(
        "threads:read", {"owner": 200, "member": 200, "viewer": 404, "outsider": 404}
    ),
    ("get", "/api/v1/audit/events"): Rule("audit:read", everyone(200)),
    ("get", "/api/v1/audit/export"): Rule("audit:read", everyone(200)),
    ("get", "/api/v1/overview"): Rule("threads:read", everyone(200)),
}


@dataclass(frozen=True)
class Cell:
    method: str
    path: str
    scope: str
    actor: str

    @property
    def rule(self):
        return RULES[self.method, self.path]

    @property
    def expected(self):
        if self.scope != self.rule.scope:
            return 403
        return self.rule.statuses[self.actor]


CELLS = [
    Cell(method, path, scope, actor)
    for (method, path), scope, actor in itertools.product(RULES, SCOPES, ACTORS)
]


@dataclass
class World:
    team: Team
    key: ApiKey
    thread: TrackedThread
    job: BulkDeleteJob
    selection: Selection
    export: BulkDeleteJob
    tokens: dict  # (actor, scope) -> token
    markers: list  # what the outsider must never be shown

    def path(self, cell):
        objects = {
            "threads": self.thread,
            "keys": self.key,
            "jobs": self.job,
            "selections": self.selection,
        }
        if cell.path.endswith("/export"):
            objects["jobs"] = self.export
        path = cell.path.removeprefix("/api/v1/")
        if "{pk}" not in path:
            return path
        return path.replace("{pk}", str(objects[path.split("/")[0]].pk))


def _build_world():
    from django.contrib.auth import get_user_model

    User = get_user_model()
    users = {actor: User.objects.create_user(f"{actor}-amx") for actor in ACTORS}
    team = Team.objects.create(name="Matrix-team-amx")
    for actor, role in (("owner", Role.OWNER), ("member", Role.MEMBER), ("viewer", Role.VIEWER)):
        Membership.objects.create(team=team, user=users[actor], role=role)
    key = ApiKey.objects.create(
        team=team,
        label="Matrix-key-amx",
        secret_encrypted=encrypt_secret(TEST_KEY),
        hint=secret_hint(TEST_KEY),
        fingerprint=secret_fingerprint(TEST_KEY),
        created_by=users["owner"],
    )
    thread = TrackedThread.objects.create(
        thread_id="thread_amx", api_key=key, label="Matrix-thread-amx", tracked_by=users["member"]
    )
    job = BulkDeleteJob.objects.create(created_by=users["member"])
    BulkDeleteItem.objects.create(job=job, tracked_thread=thread, thread_id="thread_job_amx")
    selection = jobs.create_selection(user=users["member"], filters=ThreadFilters(team_id=team.pk))
    export = BulkDeleteJob.objects.create(
        created_by=users["member"],
        kind=BulkDeleteJob.Kind.EXPORT,
        team=team,
        state=BulkDeleteJob.State.FINISHED,
        finished_at=timezone.now(),
    )
    export.export_file = exports.export_storage().save(
        f"job-{export.pk}-threads.jsonl.gz", ContentFile(gzip.compress(b'{"exported": true}\n'))
    )
    export.save()
    made = {}
    for actor, scope in itertools.product(ACTORS, SCOPES):
        _row, made[actor, scope] = tokens.create_token(
            actor=users[actor], label=f"{actor} {scope}", scopes=[scope]
        )
    ApiToken.objects.update(expires_at=timezone.now() + timedelta(days=1))
    return World(
        team, key, thread, job, selection, export, made, [team.name, key.label, thread.label]
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), transaction.atomic():
        yield _build_world()
        transaction.set_rollback(True)


@pytest.fixture
def live_world(world, emulator):
    """The emulator is reset for every test: the thread is made there again, and the new
    secret a key may be given is one it accepts."""
    world.thread.thread_id = emulator.seed_thread(TEST_KEY)["id"]
    TrackedThread.objects.filter(pk=world.thread.pk).update(thread_id=world.thread.thread_id)
    emulator.add_key(NEW_SECRET)
    return world


def test_every_operation_has_a_rule():
    document = api.get_openapi_schema()
    operations = {
        (method, path) for path, methods in document["paths"].items() for method in methods
    }
    assert operations == set(RULES)
    for (method, path), rule in RULES.items():
        operation = document["paths"][path][method]
        assert operation["security"], (method, path)  # no operation without a token
        assert set(rule.statuses) == set(ACTORS)


def test_the_table_expects_every_outcome():
    """Guards against a table that allows or refuses everything."""
    assert {cell.expected for cell in CELLS} >= {200, 201, 202, 403, 404}
    for actor in ACTORS:
        assert {200, 403} <= {cell.expected for cell in CELLS if cell.actor == actor}


@pytest.mark.django_db
@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c.method}-{c.path}-{c.scope}-{c.actor}")
def test_api_access(cell, live_world):
    world = live_world
    client = ApiClient(world.tokens[cell.actor, cell.scope])
    path = world.path(cell)
    body = cell.rule.body(world) if cell.rule.body else None
    if cell.method == "get":
        response = client.get(path)
    elif cell.method == "post":
        response = client.post(path, body)
    elif cell.method == "patch":
        response = client.patch(path, body)
    else:
        response = client.delete(path)
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if response.get("Content-Type") == "application/gzip":  # an export: its lines are searched
        content = gzip.decompress(content)
    content = content.decode()
    assert response.status_code == cell.expected, content
    if cell.expected >= 400:
        assert response["Content-Type"] == "application/problem+json"
    if cell.scope != cell.rule.scope:
        assert response.json()["type"].endswith("/insufficient_scope")
    for secret in SECRETS:
        assert secret not in content
    if cell.actor == "outsider":
        for marker in world.markers:
            assert marker not in content
