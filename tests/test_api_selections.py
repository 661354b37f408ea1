"""The API's selections: made from the list's own filters (through the list page's form), their
preview, and the jobs that delete or export one once its count is typed, run against the
emulator."""

import gzip
import json

import pytest

from tests.api_helpers import ApiClient, make_token, problem_type
from threads_app.models import BulkDeleteJob, Membership, Selection, TrackedThread

pytestmark = pytest.mark.django_db
Role = Membership.Role
State = TrackedThread.State


@pytest.fixture
def world(user, other_user, make_team, make_key, make_thread):
    """alice's own key (3 "spring" threads, 1 "autumn"), team Blue's key where she is a member
    (2 "spring"), team Green's where she is a viewer (1 "spring"), bob's own (1 "spring")."""
    blue = make_team("Blue", {user: Role.MEMBER, other_user: Role.OWNER})
    green = make_team("Green", {user: Role.VIEWER, other_user: Role.OWNER})
    own = make_key(owner=user, label="Own")
    blue_key = make_key(team=blue, created_by=other_user, label="BlueKey")
    green_key = make_key(team=green, created_by=other_user, label="GreenKey")
    return {
        "blue": blue,
        "own_key": own,
        "blue_key": blue_key,
        "own": [make_thread(own, label=f"spring {n}") for n in range(3)],
        "autumn": make_thread(own, label="autumn"),
        "blue_threads": [make_thread(blue_key, label="spring blue") for _ in range(2)],
        "green": make_thread(green_key, label="spring green"),
        "bob": make_thread(make_key(owner=other_user), label="spring bob"),
    }


@pytest.fixture
def api(user):
    return ApiClient(make_token(user))


def test_a_selection_freezes_the_list_filters_and_previews_them(api, world, make_thread):
    response = api.post("selections", {"q": "spring", "sort": "oldest"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["count"] == 5 and body["filters"] == {"q": "spring", "sort": "oldest"}
    preview = body["preview"]
    assert preview["count"] == 5
    assert preview["by_team"] == [
        {"label": "Personal keys", "count": 3},
        {"label": "Blue", "count": 2},
    ]
    assert preview["by_state"] == [{"label": "Active", "count": 5}]
    assert [e["count"] for e in preview["excluded"]] == [1]  # Green's: read-only to her
    rows = [row["id"] for row in preview["first_rows"]]
    assert rows == [t.pk for t in (*world["own"], *world["blue_threads"])]  # oldest first
    assert Selection.objects.get(pk=body["id"]).filters == {"q": "spring", "sort": "oldest"}

    make_thread(world["own_key"], label="spring later")  # tracked after: never joins
    again = api.get(f"selections/{body['id']}").json()
    assert again["count"] == again["preview"]["count"] == 5


def test_the_list_and_a_selection_read_the_same_filters(api, world):
    """The same names, through the same form: what the list shows is what is selected."""
    filters = {"q": "spring", "key": world["blue_key"].pk, "state": "active"}
    listed = api.get("threads", filters).json()["threads"]
    selected = api.post("selections", filters).json()["preview"]["first_rows"]
    assert [t["id"] for t in listed] == [t["id"] for t in selected]
    assert len(listed) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"date_from": "2026-02-30"}, "date_from"),
        ({"date_from": 0}, "date_from"),  # no timestamp passes for a day
        ({"state": "lost"}, "state"),
        ({"q": "x" * 201}, "q"),
        ({"before": 3}, "before"),  # a cursor is no filter
    ],
)
def test_a_filter_that_cannot_be_used_is_422_naming_it(api, world, body, field):
    response = api.post("selections", body)
    assert response.status_code == 422, response.content
    assert problem_type(response) == "validation_error"
    assert field in str(response.json()["errors"])
    assert not Selection.objects.exists()


def test_a_date_range_backwards_is_refused_by_the_lists_form(api, world):
    response = api.post("selections", {"date_from": "2026-03-02", "date_to": "2026-03-01"})
    assert response.status_code == 422
    assert [e["loc"][0] for e in response.json()["errors"]] == ["body"]
    assert not Selection.objects.exists()


def test_a_key_or_team_out_of_sight_is_404(api, world):
    assert api.post("selections", {"key": world["bob"].api_key_id}).status_code == 404
    assert api.post("selections", {"team": 10**9}).status_code == 404
    assert not Selection.objects.exists()


def test_someone_elses_selection_is_404(api, world, other_user):
    theirs = ApiClient(make_token(other_user)).post("selections", {"q": "spring"}).json()
    assert api.get(f"selections/{theirs['id']}").status_code == 404
    response = api.post(
        f"selections/{theirs['id']}/jobs", {"action": "delete", "typed_count": theirs["count"]}
    )
    assert response.status_code == 404
    assert problem_type(response) == "not_found"
    assert not BulkDeleteJob.objects.exists()


def test_a_job_deletes_the_selection_against_the_emulator(
    api, world, emulator, immediate_tasks, django_capture_on_commit_callbacks
):
    selection = api.post("selections", {"q": "spring"}).json()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"selections/{selection['id']}/jobs", {"action": "delete", "typed_count": 5}
        )
    assert response.status_code == 202, response.content
    job = api.get(f"jobs/{response.json()['id']}").json()
    assert job["kind"] == "delete" and job["state"] == "finished"
    assert job["total"] == 5 and job["counts"]["deleted"] == 5
    deleted = {*world["own"], *world["blue_threads"]}
    deletes = {path for method, path in emulator.request_log if method == "DELETE"}
    assert deletes == {f"/v1/threads/{t.thread_id}" for t in deleted}
    for thread in TrackedThread.objects.all():
        assert (thread.state == State.DELETED) == (thread in deleted)
    # Deleted now: the selection covers nothing more; a job of it (its count is frozen) finds
    # nothing left to do and sends nothing.
    assert api.get(f"selections/{selection['id']}").json()["preview"]["count"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(
            f"selections/{selection['id']}/jobs", {"action": "delete", "typed_count": 5}
        )
    assert again.status_code == 202
    rerun = api.get(f"jobs/{again.json()['id']}").json()
    assert (rerun["state"], rerun["total"]) == ("finished", 0)
    assert len([m for m, _path in emulator.request_log if m == "DELETE"]) == 5


def test_the_count_must_be_typed_as_it_is(api, world):
    selection = api.post("selections", {"q": "spring"}).json()
    response = api.post(
        f"selections/{selection['id']}/jobs", {"action": "delete", "typed_count": 4}
    )
    assert response.status_code == 400
    assert problem_type(response) == "count_mismatch"
    assert "5" in response.json()["detail"]
    assert not BulkDeleteJob.objects.exists()


def test_an_empty_selection_starts_nothing(api, world):
    selection = api.post("selections", {"q": "no such thread"}).json()
    assert selection["count"] == 0 and selection["preview"]["first_rows"] == []
    response = api.post(
        f"selections/{selection['id']}/jobs", {"action": "delete", "typed_count": 0}
    )
    assert response.status_code == 400
    assert problem_type(response) == "empty_selection"
    assert not BulkDeleteJob.objects.exists()


def test_a_selection_being_deleted_is_not_started_twice(api, world):
    selection = api.post("selections", {"q": "spring"}).json()
    body = {"action": "delete", "typed_count": 5}
    assert api.post(f"selections/{selection['id']}/jobs", body).status_code == 202
    response = api.post(f"selections/{selection['id']}/jobs", body)
    assert response.status_code == 409
    assert problem_type(response) == "deletion_underway"
    assert BulkDeleteJob.objects.count() == 1


@pytest.mark.parametrize(
    "body",
    [
        {"action": "delete"},
        {"action": "shred", "typed_count": 5},
        {"action": "delete", "typed_count": "5"},  # a number, not text
        {"action": "delete", "typed_count": -1},
        {"action": "delete", "typed_count": 5, "force": True},
    ],
)
def test_a_bad_job_body_is_422(api, world, body):
    selection = api.post("selections", {"q": "spring"}).json()
    response = api.post(f"selections/{selection['id']}/jobs", body)
    assert response.status_code == 422
    assert problem_type(response) == "validation_error"
    assert not BulkDeleteJob.objects.exists()


def test_a_read_token_previews_but_may_not_delete(user, world):
    api = ApiClient(make_token(user, scopes=["threads:read"]))
    selection = api.post("selections", {"q": "spring"})
    assert selection.status_code == 201
    response = api.post(
        f"selections/{selection.json()['id']}/jobs", {"action": "delete", "typed_count": 5}
    )
    assert response.status_code == 403
    assert problem_type(response) == "insufficient_scope"
    delete_only = ApiClient(make_token(user, scopes=["threads:delete"]))
    assert delete_only.post("selections", {"q": "spring"}).status_code == 403
    assert not BulkDeleteJob.objects.exists()


def test_a_team_token_selects_and_deletes_in_its_team_only(
    user, other_user, world, emulator, immediate_tasks, django_capture_on_commit_callbacks
):
    blue = world["blue"]
    Membership.objects.filter(team=blue, user=user).update(role=Role.OWNER)
    team_api = ApiClient(make_token(user, team=blue))
    selection = team_api.post("selections", {"q": "spring"}).json()
    assert selection["count"] == 2 and selection["filters"] == {"q": "spring", "team": blue.pk}
    assert [r["id"] for r in selection["preview"]["first_rows"]] == [
        t.pk for t in reversed(world["blue_threads"])
    ]
    # Her personal selection is out of the team token's sight, and so is a key elsewhere.
    personal = ApiClient(make_token(user)).post("selections", {"q": "spring"}).json()
    assert team_api.get(f"selections/{personal['id']}").status_code == 404
    refused = team_api.post(
        f"selections/{personal['id']}/jobs", {"action": "delete", "typed_count": 5}
    )
    assert refused.status_code == 404
    assert team_api.post("selections", {"key": world["own_key"].pk}).status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        started = team_api.post(
            f"selections/{selection['id']}/jobs", {"action": "delete", "typed_count": 2}
        )
    assert started.status_code == 202
    assert team_api.get(f"jobs/{started.json()['id']}").json()["counts"]["deleted"] == 2
    still = TrackedThread.objects.exclude(state=State.DELETED)
    assert set(still) == {*world["own"], world["autumn"], world["green"], world["bob"]}


def test_a_read_token_exports_the_selection_and_downloads_its_file(
    user, world, emulator, immediate_tasks, django_capture_on_commit_callbacks
):
    api = ApiClient(make_token(user, scopes=["threads:read"]))
    selection = api.post("selections", {"q": "spring"}).json()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"selections/{selection['id']}/jobs", {"action": "export", "typed_count": 5}
        )
    assert response.status_code == 202, response.content
    job = api.get(f"jobs/{response.json()['id']}").json()
    assert (job["kind"], job["state"], job["counts"]["exported"]) == ("export", "finished", 5)
    download = api.get(f"jobs/{job['id']}/export")
    assert download.status_code == 200 and download["Content-Type"] == "application/gzip"
    lines = gzip.decompress(b"".join(download.streaming_content)).splitlines()
    exported = {json.loads(line)["thread"]["id"] for line in lines}
    assert exported == {t.thread_id for t in [*world["own"], *world["blue_threads"]]}
    assert not [m for m, _path in emulator.request_log if m == "DELETE"]  # nothing deleted
    assert TrackedThread.objects.filter(state=State.DELETED).count() == 0
