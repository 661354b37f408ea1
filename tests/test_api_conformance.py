"""Schemathesis against the served OpenAPI document, with a token for each role: every
operation, with valid and invalid data it generates (hypothesis), answers without a server
error and as the document says (status, media type, body, headers). The document itself
validates as OpenAPI 3.1.

The requests go through the WSGI application in this process (the test's database), and the
upstream calls over real HTTP to the emulator. Path ids are generated, and also pinned to the
team's real thread, key and job, so the operations' successful answers are checked too.
"""

import jsonschema_rs
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from dashboard.wsgi import application
from tests.api_helpers import make_token
from tests.conftest import TEST_KEY
from threads_app.models import BulkDeleteItem, BulkDeleteJob, Membership
from threads_app.selectors import ThreadFilters
from threads_app.services import jobs

Role = Membership.Role
ROLES = ("owner", "member", "viewer", "outsider")
EXAMPLES = 8  # per operation, mode and role


@pytest.fixture
def team_world(make_user, make_team, make_key, make_thread, settings):
    settings.API_RATE_LIMIT = 100_000  # the run sends thousands of requests with one token
    users = {role: make_user(f"{role}-conf") for role in ROLES}
    team = make_team(
        members={
            users["owner"]: Role.OWNER,
            users["member"]: Role.MEMBER,
            users["viewer"]: Role.VIEWER,
        }
    )
    key = make_key(team=team, created_by=users["owner"])
    thread = make_thread(key, label="conformance", metadata={"a": "b"}, tracked_by=users["member"])
    job = BulkDeleteJob.objects.create(created_by=users["member"])
    BulkDeleteItem.objects.create(job=job, tracked_thread=thread, thread_id=thread.thread_id)
    selection = jobs.create_selection(user=users["member"], filters=ThreadFilters(team_id=team.pk))
    return {"users": users, "key": key, "thread": thread, "job": job, "selection": selection}


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go straight to the WSGI application, whose end-of-request signal would close
    the test's database connection (and its transaction): Django's test client disconnects
    it too."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Schema-valid data may still be refused for what a document cannot say: a date range that
# ends before it starts (422), a secret the Threads API rejects, threads none of which may be
# deleted (400). The other default checks stand as they are.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", "400", "401", "403", "404", "409", "422", "429", "502"]
            }
        }
    }
)


def _schema():
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application, config=CONFIG)


@pytest.mark.django_db
def test_the_served_document_is_valid_openapi_3_1(client):
    """Against the OpenAPI 3.1 meta-schema (schemathesis' copy), and each schema in it against
    JSON Schema 2020-12's: nothing a client generator would stumble over."""
    document = client.get("/api/v1/openapi.json").json()
    OPENAPI_31_VALIDATOR.validate(document)
    schemas = [
        *document["components"]["schemas"].values(),
        *(
            parameter["schema"]
            for operations in document["paths"].values()
            for operation in operations.values()
            for parameter in operation.get("parameters", [])
        ),
    ]
    for schema in schemas:
        jsonschema_rs.meta.validate(schema)
    operations = [result.ok() for result in _schema().get_all_operations()]
    assert len(operations) == 23


def _pins(world, path):
    """Path parameters naming the team's own objects, for the operations that take one."""
    if "{pk}" not in path:
        return None
    area = path.removeprefix("/api/v1/").split("/")[0]
    objects = {"threads": "thread", "keys": "key", "jobs": "job", "selections": "selection"}
    return {"pk": world[objects[area]].pk}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_keeps_to_the_document(role, team_world, emulator):
    emulator.add_key("sk-test-conformance-rotated-01234")
    token = make_token(team_world["users"][role])
    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    for result in _schema().get_all_operations():
        operation = result.ok()
        pins = _pins(team_world, operation.path)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in (None, pins) if pins else (None,):
                strategy = operation.as_strategy(
                    generation_mode=mode, path_parameters=path_parameters
                )

                @given(case=strategy)
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                def check(case):
                    case.call_and_validate(headers=headers)

                try:
                    check()
                except Exception as failure:
                    failures.append(
                        f"{operation.method.upper()} {operation.path} {mode}: {failure}"
                    )
    assert not failures, "\n\n".join(failures)
    assert TEST_KEY  # the key's secret is the emulator's: nothing above may show it
