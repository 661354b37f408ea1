"""Bulk delete: the list's selection, the confirmation, the job and its progress page.

A job's workers have their own database connections, so the tests that run one commit their
data (`transaction=True`). Most run its task inline (`immediate_tasks`: the job runs as it is
queued, and is finished when the POST answers); one takes the real queue path, through a
`db_worker` subprocess (tests/test_bulk_crash.py kills one mid-job). In the other tests the
job is created inside the test's transaction, whose on-commit callbacks never run: nothing is
queued, the job stays running, its items pending.
"""

import re

import pytest
from django.db import connection
from django.test import Client
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.conftest import OTHER_TEST_KEY
from tests.threads_helpers import HX, body, is_partial, url
from tests.worker_fixtures import wait_for
from threads_app import audit, selectors, tasks
from threads_app.audit import Origin
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    TrackedThread,
)
from threads_app.services import bulk, deletions
from threads_app.services.refusals import Refused

Action = AuditEvent.Action
Item = BulkDeleteItem.Outcome
State = TrackedThread.State
Role = Membership.Role

committed = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline(immediate_tasks):
    """The job runs as its task is queued, inside the request."""


@pytest.fixture
def held():
    """held() -> [(job id, origin)] of the bulk-delete tasks queued (no worker runs them):
    the test runs the job itself, later."""

    def queued():
        results = DBTaskResult.objects.filter(task_path=tasks.BULK_DELETE_TASK).order_by("pk")
        return [
            (kwargs["job_id"], Origin.from_data(kwargs["origin"]))
            for kwargs in map(tasks.task_kwargs, results)
        ]

    return queued


@pytest.fixture
def threads(api_key, make_thread):
    return [make_thread(api_key, label=f"Case {n}") for n in range(1, 6)]


def selection_query(threads):
    return "&".join(f"thread={thread.pk}" for thread in threads)


def deletes_sent(emulator):
    return [path for method, path in emulator.request_log if method == "DELETE"]


def audit_pairs():
    """{thread id: outcome} from the deletion events, checking that each outcome follows its
    own intent, that no intent is left without an outcome and that the chain holds."""
    events = list(AuditEvent.objects.order_by("sequence"))
    intents = {e.sequence: e for e in events if e.action == Action.THREAD_DELETE_INTENT}
    outcomes = {}
    for event in events:
        if event.action == Action.THREAD_DELETED:
            intent = intents.pop(event.details["intent"])
            assert intent.thread_id == event.thread_id and intent.sequence < event.sequence
            outcomes[event.thread_id] = event.outcome
    assert intents == {}
    assert audit.verify_chain().ok
    return outcomes


def item_outcomes(job):
    return {item.thread_id: item.outcome for item in job.items.all()}


# --- the list -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_offers_a_checkbox_for_each_thread_the_user_may_delete(
    user_client, user, other_user, api_key, make_key, make_team, make_thread
):
    mine = make_thread(api_key, label="Mine")
    team = make_team("Blue", {user: Role.VIEWER, other_user: Role.OWNER})
    looked_at = make_thread(make_key(team=team, created_by=other_user), label="Look only")

    text = body(user_client.get(url("thread_list")))

    assert f'action="{url("thread_bulk_delete")}"' in text and 'id="bulk-delete"' in text
    assert "Delete selected…" in text
    assert 'data-select-all="thread"' in text
    assert (
        f'<input type="checkbox" name="thread" value="{mine.pk}" id="select-{mine.pk}" '
        'form="bulk-delete">'
    ) in text
    assert f'<label class="visually-hidden" for="select-{mine.pk}">Select Mine</label>' in text
    assert f'id="select-{looked_at.pk}"' not in text  # a viewer's row has no checkbox
    assert f'id="thread-{looked_at.pk}"' in text


@pytest.mark.django_db
def test_viewer_only_gets_no_bulk_delete_form(
    client, user, other_user, make_key, make_team, make_thread
):
    team = make_team("Blue", {user: Role.VIEWER, other_user: Role.OWNER})
    make_thread(make_key(team=team, created_by=other_user), label="Look only")
    client.force_login(user)

    text = body(client.get(url("thread_list")))

    assert "Look only" in text
    assert "bulk-delete" not in text and "data-select-all" not in text


# --- the confirmation ---------------------------------------------------------------------


@pytest.mark.django_db
def test_confirmation_counts_the_threads_per_key_and_says_what_is_left_out(
    user_client, user, other_user, api_key, make_key, make_team, make_thread
):
    mine = [make_thread(api_key, label=f"Mine {n}") for n in range(2)]
    blue = make_team("Blue", {user: Role.MEMBER})
    blue_key = make_key(team=blue, label="blue key")
    team_thread = make_thread(blue_key, label="Blue thread")
    red = make_team("Red", {user: Role.VIEWER, other_user: Role.OWNER})
    read_only = make_thread(make_key(team=red, created_by=other_user), label="Red thread")
    foreign = make_thread(make_key(owner=other_user), label="Bob's secret thread")
    deleted = make_thread(api_key, label="Long gone")
    TrackedThread.objects.filter(pk=deleted.pk).update(state=State.DELETED)
    query = selection_query([*mine, team_thread, read_only, foreign, deleted]) + "&thread=junk"

    text = body(user_client.get(url("thread_bulk_delete", query=query)))

    assert "Delete 3 threads?" in text
    assert "Under 2 keys:" in text
    assert f"alice&#x27;s key <code>{api_key.hint}</code>: 2 threads" in text
    assert f"blue key <code>{blue_key.hint}</code> (team Blue): 1 thread" in text
    hidden = re.findall(r'<input type="hidden" name="thread" value="(\d+)">', text)
    assert sorted(map(int, hidden)) == sorted(thread.pk for thread in [*mine, team_thread])
    assert "you may look at this thread but not delete it" in text and "Red thread" in text
    assert "Not included: already deleted" in text and "Long gone" in text
    # Bob's thread and the junk value are counted, never named.
    assert "2 selected threads were not found among the threads you can see" in text
    assert "Bob" not in text and foreign.thread_id not in text
    assert 'name="csrfmiddlewaretoken"' in text
    assert '<input type="checkbox" name="snapshot" value="1" id="snapshot"' in text


@pytest.mark.django_db
def test_confirmation_without_a_selection_offers_nothing_to_post(user_client):
    text = body(user_client.get(url("thread_bulk_delete")))

    assert "No threads selected" in text
    assert 'method="post"' not in text.split("<main", 1)[1]


@pytest.mark.django_db
def test_too_large_a_selection_is_refused(user_client, threads, emulator):
    query = "&".join(f"thread={pk}" for pk in range(1, selectors.MAX_BULK_DELETE + 2))

    page = user_client.get(url("thread_bulk_delete", query=query))
    post = user_client.post(
        url("thread_bulk_delete"), {"thread": list(range(1, selectors.MAX_BULK_DELETE + 2))}
    )

    assert f"You selected {selectors.MAX_BULK_DELETE + 1} threads; at most 500" in body(page)
    assert "Delete selected" not in body(page) and 'name="thread"' not in body(page)
    assert post.status_code == 400
    assert not BulkDeleteJob.objects.exists() and deletes_sent(emulator) == []


@pytest.mark.django_db
def test_post_naming_only_threads_the_user_may_not_delete_is_refused(
    user_client, user, other_user, make_key, make_team, make_thread, emulator
):
    red = make_team("Red", {user: Role.VIEWER, other_user: Role.OWNER})
    read_only = make_thread(make_key(team=red, created_by=other_user), label="Red thread")
    foreign = make_thread(make_key(owner=other_user), label="Bob's thread")

    viewer = user_client.post(url("thread_bulk_delete"), {"thread": [read_only.pk]})
    stranger = user_client.post(url("thread_bulk_delete"), {"thread": [foreign.pk]}, **HX)
    nothing = user_client.post(url("thread_bulk_delete"))

    assert viewer.status_code == 403
    assert "Nothing to delete" in body(viewer) and "Red thread" in body(viewer)
    assert stranger.status_code == 403 and is_partial(body(stranger))
    assert "Bob" not in body(stranger)
    assert nothing.status_code == 400
    assert not BulkDeleteJob.objects.exists() and deletes_sent(emulator) == []
    assert TrackedThread.objects.filter(state=State.DELETED).count() == 0


# --- starting a job -------------------------------------------------------------------------


@pytest.mark.django_db
def test_post_creates_a_waiting_job_with_one_pending_item_per_thread(
    user_client, user, other_user, threads, make_key, make_thread, emulator
):
    foreign = make_thread(make_key(owner=other_user))

    response = user_client.post(
        url("thread_bulk_delete"), {"thread": [t.pk for t in threads] + [foreign.pk]}
    )

    job = BulkDeleteJob.objects.get()
    assert response.status_code == 302 and response["Location"] == url("bulk_delete_job", job.pk)
    assert job.created_by == user and job.state == BulkDeleteJob.State.QUEUED
    assert not job.snapshot_before_delete
    assert sorted(job.items.values_list("tracked_thread_id", "thread_id", "outcome")) == sorted(
        (t.pk, t.thread_id, Item.PENDING) for t in threads
    )
    assert deletes_sent(emulator) == []  # the work starts once the job is committed


@pytest.mark.django_db
def test_htmx_post_redirects_the_browser_to_the_job(user_client, threads):
    response = user_client.post(url("thread_bulk_delete"), {"thread": [threads[0].pk]}, **HX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == url("bulk_delete_job", BulkDeleteJob.objects.get().pk)


@pytest.mark.django_db
def test_post_needs_the_csrf_token(user, threads):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    data = {"thread": [t.pk for t in threads]}

    refused = client.post(url("thread_bulk_delete"), data)
    assert refused.status_code == 403 and not BulkDeleteJob.objects.exists()

    page = body(client.get(url("thread_bulk_delete", query=selection_query(threads))))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = client.post(url("thread_bulk_delete"), {**data, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302 and BulkDeleteJob.objects.count() == 1


# --- the progress page ----------------------------------------------------------------------


@pytest.mark.django_db
def test_running_job_page_polls_itself_and_shows_how_far_it_got(user_client, threads):
    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()
    first = job.items.first()
    BulkDeleteItem.objects.filter(pk=first.pk).update(
        outcome=Item.DELETED, message="Deleted “Case 5”.", request_id="req_first"
    )
    BulkDeleteJob.objects.filter(pk=job.pk).update(state=BulkDeleteJob.State.RUNNING, done=1)
    job_url = url("bulk_delete_job", job.pk)

    page = body(user_client.get(job_url))
    partial = body(user_client.get(job_url, **HX))

    for text in (page, partial):
        assert f'hx-get="{job_url}" hx-trigger="every 1s" hx-swap="outerHTML"' in text
        assert '<progress id="job-progress" class="progress" max="5" value="1">' in text
        assert "1 of 5 threads done" in text and "Deleting…" in text
        assert '<span class="badge deleted">deleted</span> 1' in text
        assert '<span class="badge pending">pending</span> 4' in text
        assert "Deleted “Case 5”." in text and "req_first" in text
        assert f'<a href="{job_url}">refresh</a>' in text
    assert "<h1>Bulk delete #" in page
    assert is_partial(partial) and partial.lstrip().startswith('<section id="progress"')


@pytest.mark.django_db
def test_job_page_is_its_creators_alone(client, user, other_user, make_user, threads):
    client.force_login(user)
    client.post(url("thread_bulk_delete"), {"thread": [threads[0].pk]})
    job_url = url("bulk_delete_job", BulkDeleteJob.objects.get().pk)

    client.force_login(other_user)
    assert client.get(job_url).status_code == 404
    assert client.get(job_url, **HX).status_code == 404
    client.force_login(make_user("root", is_superuser=True))
    assert client.get(job_url).status_code == 200
    assert client.get(url("bulk_delete_job", 999999)).status_code == 404


# --- running a job --------------------------------------------------------------------------


@committed
def test_job_deletes_every_thread_with_an_audit_pair_each(user_client, threads, emulator, inline):
    response = user_client.post(
        url("thread_bulk_delete"),
        {"thread": [t.pk for t in threads]},
        HTTP_USER_AGENT="bulk-test-browser",
        REMOTE_ADDR="203.0.113.9",
    )

    job = BulkDeleteJob.objects.get()
    assert response["Location"] == url("bulk_delete_job", job.pk)
    assert job.state == BulkDeleteJob.State.FINISHED and job.finished_at is not None
    assert item_outcomes(job) == {t.thread_id: Item.DELETED for t in threads}
    assert all(item.request_id.startswith("req_") for item in job.items.all())
    assert all(item.finished_at is not None for item in job.items.all())
    assert sorted(deletes_sent(emulator)) == sorted(f"/v1/threads/{t.thread_id}" for t in threads)
    assert audit_pairs() == {t.thread_id: AuditEvent.Outcome.SUCCESS for t in threads}
    assert AuditEvent.objects.count() == 2 * len(threads)
    for event in AuditEvent.objects.all():  # who and from where, as for a single deletion
        assert event.actor_username == "alice"
        assert (event.client_ip, event.user_agent) == ("203.0.113.9", "bulk-test-browser")
    assert set(TrackedThread.objects.values_list("state", flat=True)) == {State.DELETED}

    listed = body(user_client.get(url("thread_list")))
    assert not any(t.thread_id in listed for t in threads)  # deleted threads leave the list
    finished = body(user_client.get(url("bulk_delete_job", job.pk), **HX))
    assert "hx-trigger" not in finished and "every 1s" not in finished
    assert "Finished" in finished and "5 of 5 threads done" in finished
    assert '<span class="badge deleted">deleted</span> 5' in finished
    assert all(f"Deleted “{t.label}”." in finished for t in threads)
    assert "Try the failed" not in finished


@committed
def test_failures_do_not_stop_the_others_and_are_reported_per_thread(
    user_client, threads, emulator, inline
):
    failing, refused, gone, *fine = threads
    emulator.add_fault(
        method="DELETE", path=f"/v1/threads/{failing.thread_id}", status=500, times=10
    )
    emulator.add_fault(method="DELETE", path=f"/v1/threads/{refused.thread_id}", kind="not_deleted")
    emulator.remove_thread(gone.thread_id)

    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})

    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FINISHED
    assert item_outcomes(job) == {
        failing.thread_id: Item.FAILED,
        refused.thread_id: Item.REFUSED,
        gone.thread_id: Item.ALREADY_GONE,
        **{t.thread_id: Item.DELETED for t in fine},
    }
    items = {item.thread_id: item for item in job.items.all()}
    assert "Could not delete “Case 1”" in items[failing.thread_id].message
    assert "500" in items[failing.thread_id].message
    assert "(deleted: false)" in items[refused.thread_id].message
    assert "already gone" in items[gone.thread_id].message
    assert all(item.request_id for item in items.values())
    Outcome = AuditEvent.Outcome
    assert audit_pairs() == {
        failing.thread_id: Outcome.FAILED,
        refused.thread_id: Outcome.REFUSED,
        gone.thread_id: Outcome.ALREADY_GONE,
        **{t.thread_id: Outcome.SUCCESS for t in fine},
    }
    states = dict(TrackedThread.objects.values_list("pk", "state"))
    assert states[failing.pk] == states[refused.pk] == State.ACTIVE
    assert states[gone.pk] == State.DELETED

    summary = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert '<span class="badge failed">failed</span> 1' in summary
    assert '<span class="badge refused">refused</span> 1' in summary
    assert '<span class="badge already_gone">already gone</span> 1' in summary
    assert '<span class="badge deleted">deleted</span> 2' in summary
    [retry] = re.findall(r'href="([^"]+)">Try the failed and refused ones again', summary)
    assert retry.startswith(url("thread_bulk_delete") + "?")
    assert sorted(re.findall(r"thread=(\d+)", retry)) == sorted([str(failing.pk), str(refused.pk)])


@committed
def test_threads_out_of_reach_by_the_time_the_job_runs_fail_without_a_request(
    user_client, user, other_user, make_key, make_team, make_thread, api_key, emulator, held
):
    team = make_team("Blue", {user: Role.MEMBER, other_user: Role.OWNER})
    team_thread = make_thread(make_key(team=team, created_by=other_user), label="Team")
    untracked = make_thread(api_key, label="Untracked")
    kept = make_thread(api_key, label="Kept")
    user_client.post(
        url("thread_bulk_delete"),
        {"thread": [team_thread.pk, untracked.pk, kept.pk]},
        REMOTE_ADDR="198.51.100.7",
    )
    [(job_id, origin)] = held()
    assert origin.ip == "198.51.100.7"
    Membership.objects.filter(team=team, user=user).update(role=Role.VIEWER)
    untracked.delete()

    bulk.run_bulk_delete(job_id, origin=origin)

    job = BulkDeleteJob.objects.get()
    items = {item.thread_id: item for item in job.items.all()}
    assert job.state == BulkDeleteJob.State.FINISHED
    assert items[team_thread.thread_id].outcome == Item.FAILED
    assert "You may no longer delete this thread" in items[team_thread.thread_id].message
    assert items[untracked.thread_id].outcome == Item.FAILED
    assert "No longer tracked here" in items[untracked.thread_id].message
    assert items[kept.thread_id].outcome == Item.DELETED
    assert deletes_sent(emulator) == [f"/v1/threads/{kept.thread_id}"]
    assert audit_pairs() == {kept.thread_id: AuditEvent.Outcome.SUCCESS}
    assert AuditEvent.objects.get(action=Action.THREAD_DELETED).client_ip == "198.51.100.7"


@committed
def test_a_batchs_intents_are_committed_before_any_of_its_deletes_is_sent(
    user_client, api_key, make_thread, emulator, inline, monkeypatch
):
    threads = [make_thread(api_key, label=f"Batch {n}") for n in range(2 * bulk.BATCH + 5)]
    seen = {}  # thread id: (threads with a committed intent, items saved) as its DELETE arrives
    handle = emulator._handle

    def look_at_the_database(method, target, headers, body):
        if method == "DELETE":
            try:
                intents = AuditEvent.objects.filter(action=Action.THREAD_DELETE_INTENT)
                saved = BulkDeleteItem.objects.exclude(outcome=Item.PENDING).count()
                seen[target.rsplit("/", 1)[1]] = (
                    set(intents.values_list("thread_id", flat=True)),
                    saved,
                )
            finally:
                connection.close()  # the emulator thread's own connection
        return handle(method, target, headers, body)

    monkeypatch.setattr(emulator, "_handle", look_at_the_database)
    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})

    item_ids = list(BulkDeleteJob.objects.get().items.values_list("thread_id", flat=True))
    batches = [set(item_ids[n : n + bulk.BATCH]) for n in range(0, len(item_ids), bulk.BATCH)]
    assert [len(batch) for batch in batches] == [bulk.BATCH, bulk.BATCH, 5]
    assert seen.keys() == {t.thread_id for t in threads}
    for batch in batches:
        for thread_id in batch:
            assert batch <= seen[thread_id][0]
    # Progress is saved while the job runs: the last batch starts once others are saved.
    assert all(0 < seen[thread_id][1] < len(threads) for thread_id in batches[-1])
    assert audit_pairs() == {t.thread_id: AuditEvent.Outcome.SUCCESS for t in threads}


@committed
def test_thread_out_of_reach_once_its_intent_is_committed_gets_a_not_sent_outcome(
    user_client,
    user,
    other_user,
    make_key,
    make_team,
    make_thread,
    api_key,
    emulator,
    inline,
    monkeypatch,
):
    team = make_team("Blue", {user: Role.MEMBER, other_user: Role.OWNER})
    team_key = make_key(team=team, created_by=other_user)
    team_thread = make_thread(team_key, label="Team")
    mine = make_thread(api_key, label="Mine")
    record_many = audit.record_many

    def demote_once_the_intents_are_committed(events, **kwargs):
        appended = record_many(events, **kwargs)
        if any(event.action == Action.THREAD_DELETE_INTENT for event in events):
            Membership.objects.filter(team=team, user=user).update(role=Role.VIEWER)
        return appended

    monkeypatch.setattr(audit, "record_many", demote_once_the_intents_are_committed)
    user_client.post(url("thread_bulk_delete"), {"thread": [team_thread.pk, mine.pk]})

    items = {item.thread_id: item for item in BulkDeleteJob.objects.get().items.all()}
    assert items[team_thread.thread_id].outcome == Item.FAILED
    assert items[team_thread.thread_id].message == (
        "You may no longer delete this thread, so nothing was sent."
    )
    assert items[mine.thread_id].outcome == Item.DELETED
    assert deletes_sent(emulator) == [f"/v1/threads/{mine.thread_id}"]
    assert audit_pairs() == {
        team_thread.thread_id: AuditEvent.Outcome.FAILED,
        mine.thread_id: AuditEvent.Outcome.SUCCESS,
    }
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED, thread_id=team_thread.thread_id)
    assert (outcome.team_id, outcome.http_status, outcome.request_id) == (team.pk, None, "")
    assert outcome.details["sent"] is False
    assert TrackedThread.objects.get(pk=team_thread.pk).state == State.ACTIVE
    assert ApiKey.objects.get(pk=team_key.pk).last_used_at is None  # nothing said about it


@committed
def test_an_error_while_sending_gives_that_intent_a_failed_outcome(
    user_client, api_key, make_thread, emulator, inline, monkeypatch, caplog
):
    broken, fine = make_thread(api_key, label="Broken"), make_thread(api_key, label="Fine")
    send_deletion = deletions.send_deletion

    def send_or_break(thread, *, client):
        if thread.pk == broken.pk:
            raise RuntimeError("a bug")
        return send_deletion(thread, client=client)

    monkeypatch.setattr(deletions, "send_deletion", send_or_break)
    user_client.post(url("thread_bulk_delete"), {"thread": [broken.pk, fine.pk]})

    items = {item.thread_id: item for item in BulkDeleteJob.objects.get().items.all()}
    assert items[broken.thread_id].outcome == Item.FAILED
    assert items[broken.thread_id].message == (
        "An unexpected error (RuntimeError) stopped this deletion; see the server log."
    )
    assert items[fine.thread_id].outcome == Item.DELETED
    assert audit_pairs() == {
        broken.thread_id: AuditEvent.Outcome.FAILED,
        fine.thread_id: AuditEvent.Outcome.SUCCESS,
    }
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED, thread_id=broken.thread_id)
    assert outcome.details["error"] == "RuntimeError"
    assert TrackedThread.objects.get(pk=broken.pk).state == State.ACTIVE
    assert f"deleting {broken.thread_id} failed" in caplog.text


@committed
def test_an_unexpected_error_fails_that_thread_alone(
    user_client, user, api_key, make_key, make_thread, emulator, inline, caplog
):
    broken_key = make_key(owner=user, label="broken key", secret=OTHER_TEST_KEY)
    ApiKey.objects.filter(pk=broken_key.pk).update(secret_encrypted="not-a-fernet-token")
    broken = make_thread(broken_key, label="Undecryptable")
    fine = make_thread(api_key, label="Fine")

    user_client.post(url("thread_bulk_delete"), {"thread": [broken.pk, fine.pk]})

    items = {item.thread_id: item for item in BulkDeleteJob.objects.get().items.all()}
    assert items[broken.thread_id].outcome == Item.FAILED
    assert items[broken.thread_id].message == (
        "An unexpected error (DecryptionError) stopped this deletion; see the server log."
    )
    assert items[fine.thread_id].outcome == Item.DELETED
    assert deletes_sent(emulator) == [f"/v1/threads/{fine.thread_id}"]
    assert audit_pairs() == {fine.thread_id: AuditEvent.Outcome.SUCCESS}
    assert f"deleting {broken.thread_id} failed" in caplog.text


@committed
def test_snapshots_are_saved_with_each_intent_and_a_failed_one_keeps_its_thread(
    user_client, threads, emulator, inline
):
    unsaved, *saved = threads[:3]
    emulator.add_fault(method="GET", path=f"/v1/threads/{unsaved.thread_id}*", status=500)

    user_client.post(
        url("thread_bulk_delete"), {"thread": [t.pk for t in threads[:3]], "snapshot": "1"}
    )

    job = BulkDeleteJob.objects.get()
    assert job.snapshot_before_delete
    items = {item.thread_id: item for item in job.items.all()}
    assert items[unsaved.thread_id].outcome == Item.FAILED
    assert "“Case 1” was not deleted: its transcript could not be saved first" in (
        items[unsaved.thread_id].message
    )
    assert f"/v1/threads/{unsaved.thread_id}" not in deletes_sent(emulator)
    assert audit_pairs() == {t.thread_id: AuditEvent.Outcome.SUCCESS for t in saved}
    for intent in AuditEvent.objects.filter(action=Action.THREAD_DELETE_INTENT):
        assert f'"id": "{intent.thread_id}"' in intent.snapshot
    assert TrackedThread.objects.get(pk=unsaved.pk).state == State.ACTIVE


@committed
def test_job_runs_as_a_task_in_a_worker_and_finishes(
    user_client, api_key, make_thread, emulator, start_worker
):
    threads = [make_thread(api_key, label=f"Background {n}") for n in range(12)]

    response = user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()
    assert response["Location"] == url("bulk_delete_job", job.pk)
    result = DBTaskResult.objects.get(task_path=tasks.BULK_DELETE_TASK)
    assert (result.status, job.task_id) == (TaskResultStatus.READY, str(result.pk))
    assert result.args_kwargs["kwargs"] == {
        "job_id": job.pk,
        "origin": {"ip": "127.0.0.1", "user_agent": ""},
    }
    assert emulator.request_log == []  # nothing runs in the web process

    start_worker("bulk-worker")
    # The task's result is saved after its job is: waiting for the result waits for both.
    done = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
    wait_for(
        lambda: DBTaskResult.objects.get(pk=result.pk).status in done,
        timeout=15,
        what="the job's task to finish",
    )

    job.refresh_from_db()
    result.refresh_from_db()
    assert (job.state, job.worker_id) == (BulkDeleteJob.State.FINISHED, "bulk-worker")
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value["deleted"] == 12
    assert item_outcomes(job) == {t.thread_id: Item.DELETED for t in threads}
    assert audit_pairs() == {t.thread_id: AuditEvent.Outcome.SUCCESS for t in threads}
    assert "hx-trigger" not in body(user_client.get(url("bulk_delete_job", job.pk), **HX))


# --- the service and the htmx answers -------------------------------------------------------


@pytest.mark.django_db
def test_starting_nothing_is_a_refusal_that_says_why(user, other_user, make_key, make_thread):
    foreign = make_thread(make_key(owner=other_user), label="Bob's thread")
    too_many = range(1, selectors.MAX_BULK_DELETE + 2)

    with pytest.raises(Refused) as nothing:
        bulk.start_bulk_delete(actor=user, thread_ids=[foreign.pk, "x"])
    with pytest.raises(bulk.NothingToDelete) as over:
        bulk.start_bulk_delete(actor=user, thread_ids=too_many)

    assert isinstance(nothing.value, bulk.NothingToDelete)
    assert str(nothing.value) == "None of the selected threads can be deleted."
    assert (nothing.value.selection.requested, nothing.value.selection.unknown) == (2, 2)
    assert str(over.value) == "At most 500 threads can be deleted in one go."
    assert over.value.selection.too_many
    assert not BulkDeleteJob.objects.exists()


@pytest.mark.django_db
def test_pages_with_a_partial_vary_on_hx_request(user_client, threads):
    confirm_url = url("thread_bulk_delete", query=selection_query(threads))
    user_client.post(url("thread_bulk_delete"), {"thread": [threads[0].pk]})
    job_url = url("bulk_delete_job", BulkDeleteJob.objects.get().pk)
    restore = {**HX, "HTTP_HX_HISTORY_RESTORE_REQUEST": "true"}

    for page_url, partial in (
        (confirm_url, '<section id="confirm"'),
        (job_url, '<section id="progress"'),
    ):
        page, fragment = user_client.get(page_url), user_client.get(page_url, **HX)
        restored = user_client.get(page_url, **restore)
        for response in (page, fragment, restored):
            assert "HX-Request" in response["Vary"]
        assert is_partial(body(fragment)) and body(fragment).lstrip().startswith(partial)
        assert not is_partial(body(page)) and not is_partial(body(restored))


@committed
def test_a_429_is_sent_again_after_its_retry_after_and_is_not_an_outcome(
    user_client, threads, emulator, inline
):
    first = threads[0]
    path = f"/v1/threads/{first.thread_id}"
    emulator.add_fault("DELETE", path, status=429, times=2, retry_after=0.2)

    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})

    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FINISHED
    assert item_outcomes(job) == {t.thread_id: Item.DELETED for t in threads}
    statuses = [status for method, p, status in emulator.answer_log if p == path]
    assert statuses == [429, 429, 200]
    # One intent and one outcome for it: the 429s recorded nothing.
    assert audit_pairs() == {t.thread_id: AuditEvent.Outcome.SUCCESS for t in threads}
    assert AuditEvent.objects.filter(thread_id=first.thread_id).count() == 2
