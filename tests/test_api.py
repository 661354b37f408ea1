"""The automation API, endpoint by endpoint, over real HTTP to the emulator: what each
answers, what it refuses and how (problem documents), and that it goes through the pages'
services (the audit log, the upstream calls)."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.api_helpers import ApiClient, make_token, problem_type
from tests.conftest import TEST_KEY
from threads_app.models import ApiKey, AuditEvent, BulkDeleteJob, Membership, TrackedThread

pytestmark = pytest.mark.django_db
Action = AuditEvent.Action
State = TrackedThread.State


@pytest.fixture
def api(user):
    return ApiClient(make_token(user))


def deletes_sent(emulator, thread_id):
    return [
        entry for entry in emulator.request_log if entry == ("DELETE", f"/v1/threads/{thread_id}")
    ]


# --- authentication, scopes, rate limit -----------------------------------------------------


def test_without_a_token_it_is_401_with_a_problem_document():
    response = ApiClient().get("threads")
    assert response.status_code == 401
    assert problem_type(response) == "unauthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer tc_nope", "Basic dXNlcjpwdw==", "Bearer ", "tc_x"])
def test_a_bad_or_foreign_authorization_header_is_401(header):
    response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/threads")
    assert response.status_code == 401
    assert problem_type(response) == "unauthenticated"


def test_a_token_in_the_url_is_refused_even_a_good_one(user):
    token = make_token(user)
    for name in ("token", "access_token", "Token"):
        response = Client().get("/api/v1/threads", {name: token})
        assert response.status_code == 400
        assert problem_type(response) == "token_in_url"
    assert not AuditEvent.objects.filter(action=Action.TOKEN_FIRST_USED).exists()


def test_an_unknown_query_parameter_is_refused_not_ignored(api):
    response = api.get("threads", {"staet": "deleted"})
    assert response.status_code == 400
    assert problem_type(response) == "unknown_parameter"
    assert "staet" in response.json()["detail"]


def test_a_session_is_not_a_token(user_client):
    response = user_client.get("/api/v1/threads")
    assert response.status_code == 401


def test_no_csrf_token_is_needed_with_a_token(user, api_key):
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {make_token(user)}")
    response = client.post(
        "/api/v1/threads", json.dumps({"api_key": api_key.pk}), content_type="application/json"
    )
    assert response.status_code == 201


def test_a_scope_the_token_lacks_is_403(user, make_thread, api_key):
    thread = make_thread(api_key)
    api = ApiClient(make_token(user, scopes=["threads:read"]))
    response = api.delete(f"threads/{thread.pk}")
    assert response.status_code == 403
    assert problem_type(response) == "insufficient_scope"
    assert api.get(f"threads/{thread.pk}").status_code == 200


def test_the_rate_limit_counts_per_token_and_answers_429_with_retry_after(user, settings):
    settings.API_RATE_LIMIT = 3
    api, other = ApiClient(make_token(user)), ApiClient(make_token(user))
    answers = [api.get("keys") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r["RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert answers[0]["RateLimit-Limit"] == "3"
    assert 1 <= int(answers[3]["Retry-After"]) <= settings.API_RATE_WINDOW_SECONDS
    assert problem_type(answers[3]) == "rate_limited"
    assert other.get("keys").status_code == 200


def test_an_unknown_path_under_the_api_is_a_problem_404(api):
    response = api.get("no/such/thing")
    assert response.status_code == 404
    assert problem_type(response) == "not_found"


def test_answers_are_never_cached(api):
    assert api.get("keys")["Cache-Control"] == "no-store"


# --- threads ----------------------------------------------------------------------------


def test_the_list_uses_the_pages_filters_sort_and_cursors(api, api_key, make_thread):
    threads = [make_thread(api_key, label=f"list {n:02d}") for n in range(30)]
    make_thread(api_key, label="other", metadata={"project": "needle"})
    first = api.get("threads", {"sort": "label", "limit": 20}).json()
    assert [t["label"] for t in first["threads"]][:3] == ["list 00", "list 01", "list 02"]
    assert first["newer"] is None and first["older"] is not None
    second = api.get("threads", {"sort": "label", "limit": 20, "before": first["older"]}).json()
    labels = [t["label"] for t in first["threads"] + second["threads"]]
    assert labels == [*sorted(t.label for t in threads), "other"]
    assert second["older"] is None
    found = api.get("threads", {"q": "NEEDLE"}).json()["threads"]
    assert [t["label"] for t in found] == ["other"]
    row = found[0]
    assert row["key"] == {"id": api_key.pk, "label": api_key.label, "hint": api_key.hint}
    assert row["state"] == "active" and row["tracked_by"] == api_key.owner.username


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_from": "2026-03-02", "date_to": "2026-03-01"}, "date_to"),
        ({"state": "sleeping"}, "state"),
        ({"sort": "random"}, "sort"),
        ({"before": "0"}, "before"),
    ],
)
def test_a_filter_that_cannot_be_used_is_422_naming_it(api, params, field):
    response = api.get("threads", params)
    assert response.status_code == 422
    assert problem_type(response) == "validation_error"
    assert ["query", field] in [error["loc"] for error in response.json()["errors"]]


def test_a_key_or_team_out_of_sight_is_404(api, other_user, make_key):
    for params in ({"key": make_key(owner=other_user).pk}, {"team": 999999}):
        response = api.get("threads", params)
        assert response.status_code == 404
        assert problem_type(response) == "not_found"
    assert api.get("audit/events", {"key": 999999}).status_code == 404


def test_one_thread_with_its_live_copy_and_newest_messages(api, api_key, make_thread):
    thread = make_thread(
        api_key, metadata={"a": "1"}, messages=[{"role": "user", "content": "hello"}]
    )
    body = api.get(f"threads/{thread.pk}").json()
    assert body["live"]["metadata"] == {"a": "1"}
    assert [m["text"] for m in body["messages"]] == ["hello"]
    assert body["unavailable"] is None and body["request_id"]


def test_a_thread_the_upstream_lost_is_marked_gone(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    emulator.remove_thread(thread.thread_id)
    body = api.get(f"threads/{thread.pk}").json()
    assert body["state"] == "gone" and body["live"] is None
    assert "no longer has" in body["unavailable"]


def test_an_upstream_failure_is_502_with_its_request_id(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    emulator.add_fault(method="GET", path="/v1/threads/*", status=500, times=10)
    response = api.get(f"threads/{thread.pk}")
    assert response.status_code == 502
    assert problem_type(response) == "upstream_error"
    body = response.json()
    assert body["upstream_status"] == 500 and body["request_id"]


def test_someone_elses_thread_is_404_and_a_viewers_change_403(
    user, other_user, make_key, make_thread, make_team
):
    theirs = make_thread(make_key(owner=other_user))
    api = ApiClient(make_token(user))
    assert api.get(f"threads/{theirs.pk}").status_code == 404
    assert problem_type(api.delete(f"threads/{theirs.pk}")) == "not_found"
    team = make_team(members={other_user: Membership.Role.OWNER, user: Membership.Role.VIEWER})
    shared = make_thread(make_key(team=team, created_by=other_user))
    assert api.get(f"threads/{shared.pk}").status_code == 200
    response = api.patch(f"threads/{shared.pk}", {"metadata": {}})
    assert response.status_code == 403
    assert problem_type(response) == "not_allowed"


def test_create_goes_through_the_service_and_is_audited(api, api_key, emulator):
    response = api.post(
        "threads",
        {
            "api_key": api_key.pk,
            "label": "from a script",
            "metadata": {"ci": "run-1"},
            "messages": [{"role": "user", "content": "hi"}],
            "tool_resources": {"code_interpreter": {"file_ids": ["file-1"]}},
        },
    )
    assert response.status_code == 201, response.content
    thread = TrackedThread.objects.get(pk=response.json()["id"])
    assert thread.label == "from a script" and thread.metadata == {"ci": "run-1"}
    event = AuditEvent.objects.get(action=Action.THREAD_CREATED)
    assert event.thread_id == thread.thread_id and event.request_id


@pytest.mark.parametrize(
    "body",
    [
        {"api_key": 1, "metadata": {f"k{n}": "v" for n in range(17)}},
        {"api_key": 1, "metadata": {"k" * 65: "v"}},
        {"api_key": 1, "label": "a\x00b"},
        {"api_key": 1, "messages": [{"role": "system", "content": "x"}]},
        {"api_key": 1, "tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}},
        {"label": "no key"},
    ],
)
def test_a_bad_create_body_is_422_and_sends_nothing(api, emulator, body):
    response = api.post("threads", body)
    assert response.status_code == 422
    assert problem_type(response) == "validation_error"
    assert emulator.request_log == []


def test_a_key_out_of_sight_is_404_and_one_the_user_may_not_use_403(
    user, other_user, make_key, make_team
):
    api = ApiClient(make_token(user))
    assert api.post("threads", {"api_key": make_key(owner=other_user).pk}).status_code == 404
    team = make_team(members={other_user: Membership.Role.OWNER, user: Membership.Role.VIEWER})
    team_key = make_key(team=team, created_by=other_user)
    assert api.post("threads", {"api_key": team_key.pk}).status_code == 403


def test_import_reports_each_id(api, api_key, emulator):
    upstream = emulator.seed_thread(TEST_KEY)
    body = {"api_key": api_key.pk, "thread_ids": [upstream["id"], "thread_nope", upstream["id"]]}
    results = api.post("threads/import", body).json()
    assert [r["status"] for r in results] == ["tracked", "refused"]
    again = api.post("threads/import", body).json()
    assert again[0]["status"] == "already_tracked"


def test_update_replaces_the_metadata_and_keeps_tool_resources(api, api_key, make_thread):
    thread = make_thread(api_key, metadata={"old": "1"})
    response = api.patch(f"threads/{thread.pk}", {"metadata": {"new": "2"}})
    assert response.status_code == 200, response.content
    thread.refresh_from_db()
    assert thread.metadata == {"new": "2"}
    event = AuditEvent.objects.get(action=Action.THREAD_UPDATED)
    assert event.details["metadata_before"] == {"old": "1"}


def test_delete_is_idempotent_a_repeat_sends_nothing(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    first = api.delete(f"threads/{thread.pk}")
    assert first.status_code == 200
    assert first.json()["outcome"] == "success" and not first.json()["repeated"]
    again = api.delete(f"threads/{thread.pk}")
    assert again.status_code == 200
    assert again.json()["outcome"] == "success" and again.json()["repeated"]
    assert again.json()["request_id"] == first.json()["request_id"]
    assert len(deletes_sent(emulator, thread.thread_id)) == 1
    assert list(
        AuditEvent.objects.filter(thread_id=thread.thread_id).values_list("action", flat=True)
    ) == [Action.THREAD_DELETED, Action.THREAD_DELETE_INTENT]


def test_a_thread_already_gone_upstream_is_deleted_as_such(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    emulator.remove_thread(thread.thread_id)
    assert api.delete(f"threads/{thread.pk}").json()["outcome"] == "already_gone"
    assert api.delete(f"threads/{thread.pk}").json()["outcome"] == "already_gone"


def test_a_failed_delete_is_a_502_and_can_be_tried_again(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    emulator.add_fault(method="DELETE", status=400, times=1)
    response = api.delete(f"threads/{thread.pk}")
    assert response.status_code == 502
    assert problem_type(response) == "deletion_failed"
    assert response.json()["upstream_status"] == 400
    thread.refresh_from_db()
    assert thread.state == State.ACTIVE
    assert api.delete(f"threads/{thread.pk}").json()["outcome"] == "success"


def test_a_deletion_under_way_is_409(api, api_key, make_thread, emulator):
    thread = make_thread(api_key)
    TrackedThread.objects.filter(pk=thread.pk).update(
        state=State.DELETING, state_before_deletion=State.ACTIVE
    )
    response = api.delete(f"threads/{thread.pk}")
    assert response.status_code == 409
    assert problem_type(response) == "deletion_underway"
    assert deletes_sent(emulator, thread.thread_id) == []


# --- keys --------------------------------------------------------------------------------


def test_keys_are_listed_by_hint_never_by_secret(api, api_key):
    response = api.get("keys")
    assert [k["hint"] for k in response.json()] == [api_key.hint]
    assert TEST_KEY not in response.content.decode()


def test_a_key_is_added_once_the_upstream_accepts_it(api, user, emulator):
    emulator.add_key("sk-test-api-added-0123456789")
    response = api.post("keys", {"label": "scripted", "secret": "sk-test-api-added-0123456789"})
    assert response.status_code == 201, response.content
    assert "sk-test-api-added-0123456789" not in response.content.decode()
    assert ApiKey.objects.get(label="scripted").owner == user
    rejected = api.post("keys", {"label": "bad", "secret": "sk-test-not-accepted-000000"})
    assert rejected.status_code == 400
    assert problem_type(rejected) == "key_rejected"
    duplicate = api.post("keys", {"label": "again", "secret": "sk-test-api-added-0123456789"})
    assert problem_type(duplicate) == "duplicate_key"


def test_a_secret_never_comes_back_in_a_validation_error(api):
    response = api.post("keys", {"label": "x", "secret": "sk with spaces 12345"})
    assert response.status_code == 422
    assert "sk with spaces" not in response.content.decode()


def test_rotate_and_revoke(api, api_key, emulator):
    emulator.add_key("sk-test-api-rotated-0123456789")
    response = api.post(f"keys/{api_key.pk}/rotate", {"secret": "sk-test-api-rotated-0123456789"})
    assert response.status_code == 200
    assert response.json()["hint"].endswith("6789")
    assert api.post(f"keys/{api_key.pk}/revoke").json()["revoked_at"]
    again = api.post(f"keys/{api_key.pk}/revoke")
    assert again.status_code == 409
    assert problem_type(again) == "already_revoked"


def test_a_member_cannot_manage_a_team_key(user, other_user, make_team, make_key):
    team = make_team(members={other_user: Membership.Role.OWNER, user: Membership.Role.MEMBER})
    key = make_key(team=team, created_by=other_user)
    response = ApiClient(make_token(user)).post(f"keys/{key.pk}/revoke")
    assert response.status_code == 403


# --- team tokens -------------------------------------------------------------------------


def test_a_team_token_sees_and_acts_in_its_team_only(user, make_team, make_key, make_thread):
    team = make_team(members={user: Membership.Role.OWNER})
    team_key = make_key(team=team, created_by=user)
    personal_key = make_key(owner=user)
    in_team, personal = make_thread(team_key, label="team's"), make_thread(personal_key)
    api = ApiClient(make_token(user, team=team))
    assert [t["label"] for t in api.get("threads").json()["threads"]] == ["team's"]
    assert api.get(f"threads/{personal.pk}").status_code == 404
    assert api.get(f"threads/{in_team.pk}").status_code == 200
    assert [k["id"] for k in api.get("keys").json()] == [team_key.pk]
    assert api.post("threads", {"api_key": personal_key.pk}).status_code == 404
    overview = api.get("overview").json()
    assert [k["key"]["id"] for k in overview["keys"]] == [team_key.pk]
    assert api.get("threads", {"key": personal_key.pk}).status_code == 404


def test_a_team_token_follows_its_makers_role_now(user, make_team, make_key, make_thread):
    team = make_team(members={user: Membership.Role.OWNER})
    thread = make_thread(make_key(team=team, created_by=user))
    api = ApiClient(make_token(user, team=team))
    Membership.objects.filter(user=user).update(role=Membership.Role.VIEWER)
    assert api.delete(f"threads/{thread.pk}").status_code == 403
    Membership.objects.filter(user=user).delete()
    assert api.get("threads").status_code == 401


# --- audit, overview, jobs -----------------------------------------------------------------


def test_audit_events_page_by_cursor_with_the_pages_filters(api, api_key, make_thread, emulator):
    for _ in range(3):
        api.delete(f"threads/{make_thread(api_key).pk}")
    first = api.get("audit/events", {"action": "thread.deleted", "limit": 2}).json()
    assert [e["action"] for e in first["events"]] == ["thread.deleted"] * 2
    rest = api.get(
        "audit/events", {"action": "thread.deleted", "limit": 2, "before": first["older"]}
    ).json()
    assert len(rest["events"]) == 1 and rest["older"] is None
    bad = api.get("audit/events", {"outcome": "maybe"})
    assert bad.status_code == 422
    assert ["query", "outcome"] in [e["loc"] for e in bad.json()["errors"]]


def test_the_export_streams_ndjson_of_the_filtered_set(api, api_key, make_thread):
    api.delete(f"threads/{make_thread(api_key).pk}")
    response = api.get("audit/export", {"action": "thread.delete_intent"})
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["action"] for e in events] == ["thread.delete_intent"]
    assert events[0]["hash"]


def test_audit_needs_its_scope(user):
    api = ApiClient(make_token(user, scopes=["threads:read"]))
    assert api.get("audit/export").status_code == 403


def test_the_overview_counts(api, api_key, make_thread):
    make_thread(api_key)
    body = api.get("overview").json()
    assert body["totals"]["active"] == 1 and body["tracked"] == 1
    assert len(body["days"]) == 30


def test_a_delete_job_of_ticked_threads(
    api, api_key, make_thread, immediate_tasks, django_capture_on_commit_callbacks
):
    threads = [make_thread(api_key) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("jobs/delete", {"threads": [t.pk for t in threads] + [99999]})
    assert response.status_code == 202, response.content
    job = api.get(f"jobs/{response.json()['id']}").json()
    assert job["state"] == "finished" and job["total"] == 3
    assert job["counts"]["deleted"] == 3
    cancel = api.post(f"jobs/{job['id']}/cancel")
    assert cancel.status_code == 409
    assert problem_type(cancel) == "job_ended"


def test_a_job_of_nothing_deletable_is_refused(api, user, other_user, make_key, make_thread):
    theirs = make_thread(make_key(owner=other_user))
    response = api.post("jobs/delete", {"threads": [theirs.pk]})
    assert response.status_code == 403
    assert problem_type(response) == "nothing_to_delete"
    assert not BulkDeleteJob.objects.exists()


def test_someone_elses_job_is_404(api, other_user):
    job = BulkDeleteJob.objects.create(created_by=other_user)
    assert api.get(f"jobs/{job.pk}").status_code == 404


def test_an_expired_token_is_401(user):
    token = make_token(user)
    from threads_app.models import ApiToken

    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = ApiClient(token).get("keys")
    assert response.status_code == 401
    assert AuditEvent.objects.filter(action=Action.TOKEN_EXPIRED).count() == 1


# --- the document and its page -----------------------------------------------------------


def test_the_openapi_document_is_served_and_names_every_problem_type(client):
    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    answers = document["paths"]["/api/v1/threads/{pk}"]["delete"]["responses"]
    assert "application/problem+json" in answers["404"]["content"]
    assert document["components"]["securitySchemes"]


def test_the_docs_page_is_served_from_local_assets(client):
    page = client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "https://" not in page


def test_the_known_query_parameters_are_the_documents():
    """The unknown-parameter check reads the operations; the document must say the same."""
    from threads_app.api.urls import api, query_parameters

    document = api.get_openapi_schema()
    documented = {
        (method.upper(), path): {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        for path, operations in document["paths"].items()
        for method, op in operations.items()
    }
    assert query_parameters() == documented


def test_the_list_answers_exactly_its_schema_s_shape(
    api, user, api_key, make_team, make_key, make_thread
):
    """The list is rendered without validating each row again (`base.unvalidated`): what it
    answers must be what its schema makes of it, field for field, for every kind of row."""
    from threads_app.api.base import RENDERER
    from threads_app.api.threads import ThreadPage

    team = make_team(members={user: Membership.Role.OWNER})
    make_thread(make_key(team=team, created_by=user), label="team's", tracked_by=user)
    untracked = make_thread(api_key, label="no tracker")
    TrackedThread.objects.filter(pk=untracked.pk).update(tracked_by=None, upstream_created_at=None)
    response = api.get("threads", {"limit": 1})
    assert response["Content-Type"] == "application/json; charset=utf-8"
    for page in (response.json(), api.get("threads", {"state": "all"}).json()):
        validated = ThreadPage.model_validate(page).model_dump()
        assert json.loads(RENDERER.render(None, validated, response_status=200)) == page
    rows = api.get("threads").json()["threads"]
    assert {row["team"] for row in rows} == {team.name, None}
    assert {row["tracked_by"] for row in rows} == {user.username, None}
