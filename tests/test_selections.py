"""Selections: the list's filter frozen, its preview, the job that deletes it (of any size,
filled by the worker), pausing, resuming and cancelling it, the jobs page, saved views.

The upstream is the emulator over real HTTP; jobs run in-process (`run_bulk_delete`, as the
worker's task does) or in a real `db_worker` (tests/test_selection_crash.py).
"""

import re
import time
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import authenticated_at
from tests.threads_helpers import body, url
from threads_app import selectors
from threads_app.audit import Origin
from threads_app.models import (
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    SavedView,
    Selection,
    TrackedThread,
)
from threads_app.selectors import ThreadFilters
from threads_app.services import bulk, jobs
from threads_app.services.refusals import NotAllowed, Refused

Role = Membership.Role
State = BulkDeleteJob.State
Item = BulkDeleteItem.Outcome
Action = AuditEvent.Action
committed = pytest.mark.django_db(transaction=True)


def held_job_ids():
    """The jobs queued so far (their tasks wait: no worker runs in these tests)."""
    return list(BulkDeleteJob.objects.order_by("pk").values_list("pk", flat=True))


# --- ThreadFilters as data ------------------------------------------------------------------


def test_filters_go_to_data_and_back():
    filters = ThreadFilters(
        q="Spring",
        key_id=3,
        team_id=4,
        tracked_by="Mia",
        state=selectors.ALL_STATES,
        date_from=date(2026, 3, 1),
        date_to=date(2026, 5, 31),
        sort=selectors.OLDEST,
    )
    data = filters.to_data()
    assert data == {
        "q": "Spring",
        "key": 3,
        "team": 4,
        "tracked_by": "Mia",
        "state": "all",
        "date_from": "2026-03-01",
        "date_to": "2026-05-31",
        "sort": "oldest",
    }
    assert ThreadFilters.from_data(data) == filters
    assert ThreadFilters().to_data() == {}  # the defaults are left out
    assert ThreadFilters.from_data({}) == ThreadFilters()


@pytest.mark.parametrize(
    "data",
    [{"nope": 1}, {"key": "3"}, {"team": True}, {"date_from": "2026-02-30"}, {"date_to": 5}],
)
def test_filters_refuse_data_they_cannot_have_made(data):
    with pytest.raises(ValueError):
        ThreadFilters.from_data(data)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["q", "key", "team", "tracked_by", "date_from", "date_to", "sort", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.lists(st.integers())),
    )
)
def test_filters_from_any_data_give_filters_or_a_value_error(data):
    try:
        filters = ThreadFilters.from_data(data)
    except ValueError:
        return
    assert ThreadFilters.from_data(filters.to_data()) == filters


# --- Selecting and previewing ------------------------------------------------------------------


@pytest.fixture
def team_world(user, other_user, make_user, make_team, make_key, make_thread):
    """alice: 3 threads of her own key ("spring" x2, "autumn"), member of team Blue (2 threads
    "spring" under its key), viewer of team Green (1 "spring" thread); bob's own thread."""
    blue = make_team("Blue", {user: Role.MEMBER, other_user: Role.OWNER})
    green = make_team("Green", {user: Role.VIEWER, other_user: Role.OWNER})
    own = make_key(owner=user, label="Own")
    blue_key = make_key(team=blue, created_by=other_user, label="BlueKey")
    green_key = make_key(team=green, created_by=other_user, label="GreenKey")
    threads = {
        "own": [
            make_thread(own, label="spring one"),
            make_thread(own, label="spring two"),
            make_thread(own, label="autumn"),
        ],
        "blue": [make_thread(blue_key, label="spring blue") for _ in range(2)],
        "green": [make_thread(green_key, label="spring green")],
        "bob": [make_thread(make_key(owner=other_user), label="spring bob")],
    }
    return {"blue_team": blue, "green_team": green, "own_key": own, "blue_key": blue_key, **threads}


@pytest.mark.django_db
def test_a_selection_is_frozen_and_covers_only_what_the_user_may_act_on(
    user, team_world, make_thread
):
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="spring"))
    later = make_thread(team_world["own_key"], label="spring three")  # tracked after: never joins

    threads = set(selectors.selection_threads(user, selection))
    assert threads == {*team_world["own"][:2], *team_world["blue"]}
    assert later not in threads and selection.count == 4
    assert selection.bound_pk < later.pk
    stored = Selection.objects.get(pk=selection.pk)
    assert stored.filters == {"q": "spring"} and stored.count == 4

    preview = selectors.selection_preview(user, selection)
    assert preview.count == 4
    assert preview.by_key == [
        (f"BlueKey ({team_world['blue_key'].hint})", 2),
        (f"Own ({team_world['own_key'].hint})", 2),
    ]
    assert preview.by_team == [("Blue", 2), ("Personal keys", 2)]
    assert preview.by_state == [("Active", 4)]
    assert preview.excluded == [selectors.Exclusion(selectors.READ_ONLY, 1)]  # Green's
    assert {t.pk for t in preview.first_rows} == {t.pk for t in threads}


@pytest.mark.django_db
def test_the_preview_names_deleted_threads_it_leaves_out_and_costs_a_few_queries(
    user, api_key, make_thread, django_assert_max_num_queries
):
    threads = [make_thread(api_key, label=f"Bulk {n}") for n in range(60)]
    TrackedThread.objects.filter(pk=threads[0].pk).update(state=TrackedThread.State.DELETED)
    TrackedThread.objects.filter(pk=threads[1].pk).update(state=TrackedThread.State.GONE)
    selection = jobs.create_selection(user=user, filters=ThreadFilters(state=selectors.ALL_STATES))

    with django_assert_max_num_queries(4):
        preview = selectors.selection_preview(user, selection)
    assert preview.count == 59 == selection.count
    assert preview.excluded == [selectors.Exclusion(selectors.ALREADY_DELETED, 1)]
    assert dict(preview.by_state) == {"Active": 58, "Gone upstream": 1}
    assert len(preview.first_rows) == selectors.SELECTION_PREVIEW_ROWS
    assert preview.first_rows[0] == threads[-1]  # the list's order: newest first


@pytest.mark.django_db
def test_select_all_takes_the_list_s_filters_and_shows_the_preview(user_client, team_world):
    response = user_client.post(url("thread_select_all"), {"q": "spring", "sort": "label"})
    selection = Selection.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("selection_detail", selection.pk)
    assert selection.filters == {"q": "spring", "sort": "label"}

    page = body(user_client.get(url("selection_detail", selection.pk)))
    assert "Delete 4 threads?" in page
    assert "1 thread read-only to you" in page
    assert 'id="id_typed_count"' in page and "Type 4 to confirm." in page
    assert page.index("spring blue") < page.index("spring one")  # the list's sort: label A-Z


@pytest.mark.django_db
def test_select_all_with_a_date_that_cannot_be_used_selects_nothing(user_client, api_key):
    response = user_client.post(url("thread_select_all"), {"date_from": "2026-02-30"}, follow=True)
    assert Selection.objects.count() == 0
    assert "Created from (UTC)" in body(response)


@pytest.mark.django_db
def test_the_list_offers_select_all_with_its_filters(user_client, team_world):
    page = body(user_client.get(url("thread_list") + "?q=spring&state=active"))
    form = re.search(r'<form class="bulk-bar select-all".*?</form>', page, re.S).group(0)
    assert 'name="q" value="spring"' in form and 'name="state" value="active"' in form
    assert "Select all 5 matching" in form  # one page: the count is known
    assert 'action="' + url("thread_select_all") + '"' in form


@pytest.mark.django_db
def test_a_viewer_sees_no_select_all(client, make_user, make_team, make_key, make_thread):
    viewer = make_user("vera")
    owner = make_user("olga")
    team = make_team("Teal", {viewer: Role.VIEWER, owner: Role.OWNER})
    make_thread(make_key(team=team, created_by=owner), label="read only")
    client.force_login(viewer)
    page = body(client.get(url("thread_list")))
    assert "read only" in page and "Select all" not in page
    selection = jobs.create_selection(user=viewer, filters=ThreadFilters())
    assert selection.count == 0
    with pytest.raises(Refused) as refused:
        jobs.start_selection_job(user=viewer, selection=selection, typed_count=0)
    assert refused.value.code == "empty_selection"


# --- Starting the job -----------------------------------------------------------------------


@pytest.mark.django_db
def test_deleting_asks_for_the_count_typed(user_client, user, team_world):
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="spring"))
    page = body(user_client.post(url("selection_detail", selection.pk), {"typed_count": "3"}))
    assert "Type the number of threads, 4, to confirm." in page
    page = body(user_client.post(url("selection_detail", selection.pk), {"typed_count": "x"}))
    assert "Enter a whole number." in page
    assert BulkDeleteJob.objects.count() == 0


@pytest.mark.django_db
def test_deleting_needs_a_recent_authentication(client, user, team_world):
    client.force_login(user)
    authenticated_at(client.session, user, time.time() - 3600)
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="spring"))
    response = client.post(url("selection_detail", selection.pk), {"typed_count": "4"})
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    assert BulkDeleteJob.objects.count() == 0


@pytest.mark.django_db
def test_someone_else_s_selection_is_out_of_sight(client, other_user, user, team_world):
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    client.force_login(other_user)
    assert client.get(url("selection_detail", selection.pk)).status_code == 404
    with pytest.raises(NotAllowed):
        jobs.start_selection_job(user=other_user, selection=selection, typed_count=4)


@pytest.mark.django_db
def test_starting_a_job_does_no_work_proportional_to_the_selection(
    user_client, user, api_key, make_thread
):
    """The same queries for a selection of 3 and of 40: no count, no items, only the job."""
    queries = []
    for size in (3, 40):
        [make_thread(api_key, label=f"size{size}") for _ in range(size)]
        selection = jobs.create_selection(user=user, filters=ThreadFilters(q=f"size{size}"))
        with CaptureQueriesContext(connection) as captured:
            response = user_client.post(
                url("selection_detail", selection.pk), {"typed_count": str(size)}
            )
        job = BulkDeleteJob.objects.get(selection=selection)
        assert response.status_code == 302 and response["Location"] == url(
            "bulk_delete_job", job.pk
        )
        assert (job.state, job.filled, job.total, job.items.count()) == (State.QUEUED, False, 0, 0)
        queries.append(len(captured))
    assert queries[0] == queries[1]
    assert "size40" not in " ".join(q["sql"] for q in captured.captured_queries)


@pytest.mark.django_db
def test_a_selection_being_deleted_is_not_started_twice(user, api_key, make_thread):
    make_thread(api_key, label="twice")
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    with pytest.raises(Refused) as refused:
        jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    assert refused.value.code == "deletion_underway"
    with pytest.raises(Refused) as refused:
        jobs.start_selection_job(user=user, selection=selection, action="copy", typed_count=1)
    assert refused.value.code == "unknown_action"


# --- Running it -----------------------------------------------------------------------------


@committed
def test_the_worker_fills_the_job_in_batches_and_deletes_every_thread_once(
    user, api_key, make_thread, emulator, monkeypatch
):
    monkeypatch.setattr(bulk, "FILL_BATCH", 7)
    monkeypatch.setattr(bulk, "BATCH", 5)
    threads = [make_thread(api_key, label=f"campaign {n}") for n in range(40)]
    kept = make_thread(api_key, label="keep me")
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="campaign"))
    job = jobs.start_selection_job(
        user=user, selection=selection, typed_count=40, origin=Origin(ip="198.51.100.9")
    )
    late = make_thread(api_key, label="campaign late")  # after the selection: not deleted

    bulk.run_bulk_delete(job.pk, origin=Origin(ip="198.51.100.9"))

    job.refresh_from_db()
    assert (job.state, job.filled, job.total, job.done) == (State.FINISHED, True, 40, 40)
    items = list(job.items.order_by("pk"))
    assert [item.tracked_thread_id for item in items] == [t.pk for t in threads]  # pk order
    assert {item.outcome for item in items} == {Item.DELETED}
    deletes = [path for method, path in emulator.request_log if method == "DELETE"]
    assert sorted(deletes) == sorted(f"/v1/threads/{t.thread_id}" for t in threads)
    for thread in (kept, late):
        thread.refresh_from_db()
        assert thread.state == TrackedThread.State.ACTIVE
    events = AuditEvent.objects.filter(
        action__in=[Action.THREAD_DELETE_INTENT, Action.THREAD_DELETED]
    )
    assert events.count() == 80
    assert {event.details["job"] for event in events} == {job.pk}
    assert {event.client_ip for event in events} == {"198.51.100.9"}


@committed
def test_pause_stops_the_run_and_resume_finishes_it(user, api_key, make_thread, emulator):
    [make_thread(api_key, label=f"pause {n}") for n in range(30)]
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=30)
    jobs.pause_job(user=user, job=job)
    job.refresh_from_db()
    assert (job.state, job.task_id) == (State.PAUSED, "")

    bulk.run_bulk_delete(job.pk, task_id="queued-before-the-pause", worker_id="w")
    job.refresh_from_db()
    assert (job.state, job.total, job.done) == (State.PAUSED, 0, 0)  # nothing done

    with pytest.raises(Refused) as refused:
        jobs.pause_job(user=user, job=job)
    assert refused.value.code == "job_not_running"
    jobs.resume_job(user=user, job=job)
    job.refresh_from_db()
    assert job.state == State.QUEUED
    with pytest.raises(Refused) as refused:
        jobs.resume_job(user=user, job=job)
    assert refused.value.code == "job_not_paused"

    bulk.run_bulk_delete(job.pk)
    job.refresh_from_db()
    assert (job.state, job.total, job.done) == (State.FINISHED, 30, 30)


@committed
def test_a_job_paused_mid_run_finishes_its_batch_and_stops(
    user, api_key, make_thread, emulator, monkeypatch
):
    monkeypatch.setattr(bulk, "BATCH", 4)
    [make_thread(api_key, label=f"mid {n}") for n in range(20)]
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=20)
    real_save = bulk._Run.save

    def save_then_pause(run):  # the user pauses once the first outcomes are saved
        real_save(run)
        BulkDeleteJob.objects.filter(pk=job.pk, state=State.RUNNING).update(state=State.PAUSED)

    monkeypatch.setattr(bulk._Run, "save", save_then_pause)
    job.refresh_from_db()
    bulk.run_bulk_delete(job.pk, task_id=job.task_id, worker_id="w")  # as its task would
    job.refresh_from_db()
    assert job.state == State.PAUSED and job.task_id == ""
    assert 0 < job.done < 20 and job.total == 20
    pending_with_intent = job.items.filter(outcome=Item.PENDING, intent_sequence__isnull=False)
    assert not pending_with_intent.exists()  # what was in flight got its outcome
    intents = AuditEvent.objects.filter(action=Action.THREAD_DELETE_INTENT).count()
    outcomes = AuditEvent.objects.filter(action=Action.THREAD_DELETED).count()
    assert intents == outcomes == job.done

    monkeypatch.setattr(bulk._Run, "save", real_save)
    jobs.resume_job(user=user, job=job)
    bulk.run_bulk_delete(job.pk)
    job.refresh_from_db()
    assert (job.state, job.done) == (State.FINISHED, 20)
    deletes = [path for method, path in emulator.request_log if method == "DELETE"]
    assert len(deletes) == len(set(deletes)) == 20


@committed
def test_cancel_leaves_the_rest_as_it_is(user, api_key, make_thread, emulator):
    threads = [make_thread(api_key, label=f"cancel {n}") for n in range(5)]
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=5)
    jobs.cancel_job(user=user, job=job)
    job.refresh_from_db()
    assert job.state == State.CANCELLED and job.finished_at is not None
    bulk.run_bulk_delete(job.pk, task_id="late", worker_id="w")
    assert not [path for method, path in emulator.request_log if method == "DELETE"]
    assert all(
        t.state == TrackedThread.State.ACTIVE
        for t in TrackedThread.objects.filter(pk__in=[t.pk for t in threads])
    )
    with pytest.raises(Refused) as refused:
        jobs.cancel_job(user=user, job=job)
    assert refused.value.code == "job_ended"


@pytest.mark.django_db
def test_pause_resume_and_cancel_from_the_job_page(user_client, user, api_key, make_thread):
    make_thread(api_key, label="page")
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "Waiting for a worker" in page and url("job_pause", job.pk) in page

    response = user_client.post(url("job_pause", job.pk), follow=True)
    assert "Paused" in body(response) and url("job_resume", job.pk) in body(response)
    response = user_client.post(url("job_cancel", job.pk), follow=True)
    assert "Cancelled: the threads it had not reached were left as they are." in body(response)
    job.refresh_from_db()
    assert job.state == State.CANCELLED
    response = user_client.post(url("job_resume", job.pk), follow=True)
    assert "Only a paused job can be resumed." in body(response)


# --- Jobs you can find again ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_jobs_page_shows_yours_and_your_teams_to_owners(
    client, user, other_user, make_user, team_world
):
    blue_selection = jobs.create_selection(
        user=user, filters=ThreadFilters(team_id=team_world["blue_team"].pk)
    )
    team_job = jobs.start_selection_job(user=user, selection=blue_selection, typed_count=2)
    own_selection = jobs.create_selection(
        user=user, filters=ThreadFilters(key_id=team_world["own_key"].pk)
    )
    own_job = jobs.start_selection_job(user=user, selection=own_selection, typed_count=3)
    assert (team_job.team, own_job.team) == (team_world["blue_team"], None)

    client.force_login(user)
    page = body(client.get(url("job_list")))
    assert f"Delete #{team_job.pk}" in page and f"Delete #{own_job.pk}" in page
    assert f'href="{url("selection_detail", own_selection.pk)}"' in page
    overview = body(client.get(url("overview")))
    assert f'hx-get="{url("job_list")}?live"' in overview  # the card loads on its own
    card = body(client.get(url("job_list") + "?live", HTTP_HX_REQUEST="true"))
    assert "Jobs running or waiting" in card and url("bulk_delete_job", own_job.pk) in card

    client.force_login(other_user)  # Blue's owner: its job, not alice's own
    page = body(client.get(url("job_list")))
    assert f"Delete #{team_job.pk}" in page and f"Delete #{own_job.pk}" not in page
    assert url("selection_detail", blue_selection.pk) not in page  # her selection, not his
    assert client.get(url("bulk_delete_job", own_job.pk)).status_code == 404
    client.post(url("job_pause", team_job.pk))
    team_job.refresh_from_db()
    assert team_job.state == State.PAUSED

    member = make_user("mo")
    Membership.objects.create(team=team_world["blue_team"], user=member, role=Role.MEMBER)
    client.force_login(member)
    assert f"Delete #{team_job.pk}" not in body(client.get(url("job_list")))
    assert client.post(url("job_cancel", team_job.pk)).status_code == 404


@pytest.mark.django_db
def test_the_jobs_page_is_paged_and_empty_when_there_are_none(user_client, user):
    assert "No jobs yet." in body(user_client.get(url("job_list")))
    made = [BulkDeleteJob.objects.create(created_by=user) for _ in range(30)]
    page = body(user_client.get(url("job_list")))
    older = re.search(r'href="([^"]+)" rel="next"', page).group(1).replace("&amp;", "&")
    rest = body(user_client.get(older))
    assert f"#{made[0].pk}<" in rest and f"#{made[-1].pk}<" in page
    assert body(user_client.get(url("job_list") + "?before=abc")).count('<tr id="job-') == 25


# --- Saved views ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_saved_views_personal_and_shared_by_an_owner(
    client, user, other_user, make_user, team_world
):
    client.force_login(other_user)  # Blue's owner
    response = client.post(
        url("saved_view_create"),
        {"name": "Blue spring", "q": "spring", "share_with": team_world["blue_team"].pk},
    )
    shared = SavedView.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("thread_list") + f"?q=spring&view={shared.pk}"
    assert (shared.team, shared.filters) == (team_world["blue_team"], {"q": "spring"})

    client.force_login(user)  # a member of Blue sees it, and cannot share with Blue
    page = body(client.get(url("saved_view_list") + "?q=spring"))
    assert "Blue spring" in page and 'name="q" value="spring"' in page
    assert 'name="share_with"' not in page  # she owns no team
    assert url("saved_view_delete", shared.pk) not in page
    client.post(url("saved_view_create"), {"name": "mine", "q": "autumn"})
    assert SavedView.objects.get(name="mine").team is None
    with pytest.raises(NotAllowed):
        jobs.save_view(user=user, name="x", filters=ThreadFilters(), team=team_world["blue_team"])
    response = client.post(url("saved_view_create"), {"name": "MINE"}, follow=True)
    assert "There is already a view named" in body(response)
    assert client.post(url("saved_view_delete", shared.pk)).status_code == 403

    # Selecting from the view: the selection remembers it.
    page = body(client.get(url("thread_list") + f"?q=spring&view={shared.pk}"))
    assert f'<input type="hidden" name="view" value="{shared.pk}">' in page
    client.post(url("thread_select_all"), {"q": "spring", "view": shared.pk})
    assert Selection.objects.get().saved_view == shared
    # Changed filters: no longer that view.
    page = body(client.get(url("thread_list") + f"?q=autumn&view={shared.pk}"))
    assert 'name="view"' not in page

    stranger = make_user("sam")
    client.force_login(stranger)
    assert "Blue spring" not in body(client.get(url("saved_view_list")))
    assert client.post(url("saved_view_delete", shared.pk)).status_code == 404
    client.force_login(other_user)
    page = body(client.get(url("saved_view_list"), HTTP_HX_REQUEST="true"))
    assert page.lstrip().startswith('<section class="saved-views"')  # the list's region
    assert 'name="share_with"' in page and url("saved_view_delete", shared.pk) in page
    client.post(url("saved_view_delete", shared.pk))
    assert not SavedView.objects.filter(pk=shared.pk).exists()


@pytest.mark.django_db
def test_a_saved_view_needs_a_name(user_client):
    response = user_client.post(url("saved_view_create"), {"name": "  "}, follow=True)
    assert "Give the view a name." in body(response)
    assert SavedView.objects.count() == 0


# --- Jobs queued before the deploy ----------------------------------------------------------


@committed
def test_a_job_queued_before_the_deploy_still_runs(user, api_key, make_thread, emulator, settings):
    """A job made as before (its items with it, running, no task yet), and its task queued
    with the arguments of then, runs to the end."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    from threads_app import tasks

    threads = [make_thread(api_key, label=f"old {n}") for n in range(3)]
    job = BulkDeleteJob.objects.create(created_by=user, state=State.RUNNING)
    BulkDeleteItem.objects.bulk_create(
        BulkDeleteItem(job=job, tracked_thread=t, thread_id=t.thread_id) for t in threads
    )
    tasks.bulk_delete_task.enqueue(job_id=job.pk, origin={"ip": "203.0.113.4", "user_agent": "old"})
    job.refresh_from_db()
    assert job.state == State.FINISHED
    assert set(job.items.values_list("outcome", flat=True)) == {Item.DELETED}
    assert set(AuditEvent.objects.values_list("client_ip", flat=True)) == {"203.0.113.4"}


@pytest.mark.django_db
def test_the_audit_log_links_a_job_s_deletions_back_to_it(user_client, user, api_key, make_thread):
    make_thread(api_key, label="linked")
    selection = jobs.create_selection(user=user, filters=ThreadFilters())
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    bulk.run_bulk_delete(job.pk)
    page = body(user_client.get(url("audit_list")))
    # The deletion's request and outcome are one row of the log, which names the job once.
    assert page.count(f'<a href="{url("bulk_delete_job", job.pk)}">job #{job.pk}</a>') == 1


@pytest.mark.django_db
def test_the_list_page_costs_no_query_for_saved_views(
    user_client, user, api_key, make_thread, django_assert_max_num_queries
):
    SavedView.objects.create(name="mine", created_by=user, filters={"q": "x"})
    make_thread(api_key, label="x")
    with django_assert_max_num_queries(6):
        page = body(user_client.get(url("thread_list")))
    assert f'hx-get="{url("saved_view_list")}?' in page  # they load in their own region
    assert f'<a href="{url("saved_view_list")}?">Saved views</a>' in page  # or without JS
