"""Export by selection: the job (kind "export") that writes every thread of a selection, live,
with all its messages, into one gzip JSON Lines file through the "exports" storage; its
download (whoever asked for it and the team's owners, until EXPORT_TTL_DAYS), its expiry by
the worker's sweep, pausing and cancelling it, and its page without JavaScript.

The upstream is the emulator over real HTTP; jobs run in-process (`run_bulk_delete`, as the
worker's task does) or in a real `db_worker` (the crash test at the end).
"""

import gzip
import json
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from tests.api_helpers import ApiClient, make_token
from tests.conftest import TEST_KEY
from tests.selection_helpers import many_threads, wait_until_done_at_least
from tests.worker_fixtures import wait_for
from threads_app import audit, selectors, tasks
from threads_app.audit import Origin
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, Membership
from threads_app.selectors import ThreadFilters
from threads_app.services import bulk, exports, jobs
from threads_app.services.refusals import Refused

Role = Membership.Role
State = BulkDeleteJob.State
Item = BulkDeleteItem.Outcome
Action = AuditEvent.Action
committed = pytest.mark.django_db(transaction=True)


@pytest.fixture
def export_dir(settings, tmp_path):
    """The "exports" storage in a directory of this test's (job pks repeat across tests)."""
    location = tmp_path / "exports"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    return location


def start_export(user, *, q="", team_id=None, origin=None):
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q=q, team_id=team_id))
    return jobs.start_selection_job(
        user=user, selection=selection, action="export", typed_count=selection.count, origin=origin
    )


def run(job):
    bulk.run_bulk_delete(job.pk)
    job.refresh_from_db()
    return job


def lines_of(job):
    with exports.export_storage().open(job.export_file, "rb") as file:
        return [json.loads(line) for line in gzip.decompress(file.read()).splitlines()]


def messages_of(count, *, prefix="m"):
    return [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"{prefix} {n}"}
        for n in range(count)
    ]


# --- The file's content ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_export_holds_each_thread_live_with_all_its_messages_and_what_the_console_knows(
    user, make_user, make_team, make_key, make_thread, emulator, export_dir
):
    mia = make_user("mia")
    team = make_team("Support", {user: Role.OWNER, mia: Role.MEMBER})
    key = make_key(team=team, label="Support key", created_by=user)
    long = make_thread(
        key,
        label="Campaign long",
        metadata={"topic": "refunds"},
        messages=messages_of(230, prefix="long"),  # three pages of 100
        tracked_by=mia,
    )
    short = make_thread(key, label="Campaign short", messages=messages_of(2, prefix="short"))
    empty = make_thread(key, label="Campaign empty")
    make_thread(key, label="Other")  # not selected

    job = run(start_export(user, q="campaign", origin=Origin(ip="10.0.0.5", user_agent="t")))

    assert job.state == State.FINISHED and job.total == job.done == 3
    assert dict(job.items.values_list("thread_id", "outcome")) == dict.fromkeys(
        [long.thread_id, short.thread_id, empty.thread_id], Item.EXPORTED
    )
    lines = lines_of(job)
    assert [line["thread"]["id"] for line in lines] == [
        long.thread_id,
        short.thread_id,
        empty.thread_id,
    ]  # in the order the threads were tracked
    first = lines[0]
    assert first["thread"]["metadata"] == {"topic": "refunds"}
    assert first["thread"]["object"] == "thread"
    texts = [message["content"][0]["text"]["value"] for message in first["messages"]]
    assert texts == [f"long {n}" for n in range(230)]  # every page, oldest first, once each
    assert len({message["id"] for message in first["messages"]}) == 230
    assert first["tracked"] == {
        "label": "Campaign long",
        "state": "active",
        "key_label": "Support key",
        "key_hint": key.hint,
        "team": "Support",
        "tracked_by": "mia",
        "tracked_at": long.tracked_at.isoformat(),
    }
    assert "gone" not in first
    assert [m["role"] for m in lines[1]["messages"]] == ["user", "assistant"]
    assert lines[2]["messages"] == []
    message_pages = [
        path
        for method, path, status in emulator.answer_log
        if method == "GET" and f"{long.thread_id}/messages" in path
    ]
    assert len(message_pages) == 3  # 100 a page
    raw = (export_dir / job.export_file).read_bytes()
    assert TEST_KEY.encode() not in gzip.decompress(raw)
    assert job.export_size == len(raw)
    assert not [name for name in export_dir.iterdir() if "part" in name.name]  # parts removed
    requested = AuditEvent.objects.get(action=Action.EXPORT_REQUESTED)
    assert requested.actor_username == user.username
    assert (requested.team_id, requested.owner_id) == (None, user.pk)  # not narrowed to a team
    assert requested.details == {"job": job.pk, "selection": job.selection_id, "count": 3}
    assert requested.client_ip == "10.0.0.5"
    assert audit.verify_chain().ok
    # an export deletes nothing
    assert {t["state"] for t in key.threads.values("state")} == {"active"}


@pytest.mark.django_db
def test_a_thread_gone_upstream_gets_a_line_saying_so_and_a_failure_is_counted(
    user, api_key, make_thread, emulator, export_dir
):
    kept = make_thread(api_key, label="Batch kept", messages=messages_of(1))
    gone = make_thread(api_key, label="Batch gone")
    broken = make_thread(api_key, label="Batch broken")
    emulator.remove_thread(gone.thread_id)
    emulator.add_fault(method="GET", path=f"/v1/threads/{broken.thread_id}", status=500, times=10)

    job = run(start_export(user, q="batch"))

    assert job.state == State.FINISHED and job.done == 3
    outcomes = dict(job.items.values_list("thread_id", "outcome"))
    assert outcomes == {
        kept.thread_id: Item.EXPORTED,
        gone.thread_id: Item.ALREADY_GONE,
        broken.thread_id: Item.FAILED,
    }
    failed = job.items.get(thread_id=broken.thread_id)
    assert failed.message.startswith("Not exported:")
    assert TEST_KEY not in failed.message
    lines = lines_of(job)
    assert [line["thread"]["id"] for line in lines] == [kept.thread_id, gone.thread_id]
    assert lines[1]["gone"] is True and lines[1]["status"] == 404
    assert lines[1]["tracked"]["label"] == "Batch gone"
    counts = selectors.bulk_delete_outcome_counts(job.pk)
    assert (counts[Item.EXPORTED], counts[Item.ALREADY_GONE], counts[Item.FAILED]) == (1, 1, 1)


@pytest.mark.django_db
def test_429s_are_waited_out_without_fetching_anything_twice(
    user, api_key, make_thread, emulator, export_dir
):
    threads = [make_thread(api_key, label=f"Wave {n}", messages=messages_of(3)) for n in range(6)]
    emulator.add_fault(
        method="GET", path="/v1/threads/*/messages", status=429, times=3, retry_after="0"
    )

    job = run(start_export(user, q="wave"))

    assert job.state == State.FINISHED
    assert set(job.items.values_list("outcome", flat=True)) == {Item.EXPORTED}
    assert [line["thread"]["id"] for line in lines_of(job)] == [t.thread_id for t in threads]
    thread_gets = [
        path
        for method, path, status in emulator.answer_log
        if method == "GET" and status == 200 and "/messages" not in path
    ]
    assert len(thread_gets) == 6  # a 429 on the messages did not fetch the thread again


@pytest.mark.django_db
def test_an_export_of_many_batches_keeps_the_threads_in_order(user, api_key, emulator, export_dir):
    threads = many_threads(emulator, api_key, exports.EXPORT_BATCH * 2 + 7, label="Bulk")
    job = run(start_export(user, q="bulk"))
    assert [line["thread"]["id"] for line in lines_of(job)] == [t.thread_id for t in threads]
    with gzip.open(export_dir / job.export_file) as file:  # one gzip file, read as a stream
        assert sum(1 for _ in file) == len(threads)


# --- Starting it ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_starting_an_export_follows_the_selection_rules(user, api_key, make_thread, export_dir):
    make_thread(api_key, label="Rule 1")
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="rule"))
    with pytest.raises(Refused) as mismatch:
        jobs.start_selection_job(user=user, selection=selection, action="export", typed_count=2)
    assert mismatch.value.code == "count_mismatch"
    with pytest.raises(Refused) as unknown:
        jobs.start_selection_job(user=user, selection=selection, action="copy", typed_count=1)
    assert unknown.value.code == "unknown_action"
    job = jobs.start_selection_job(user=user, selection=selection, action="export", typed_count=1)
    assert job.kind == BulkDeleteJob.Kind.EXPORT and job.state == State.QUEUED
    with pytest.raises(Refused) as underway:
        jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    assert underway.value.code == "deletion_underway"
    assert str(underway.value) == "A job is already exporting this selection."
    empty = jobs.create_selection(user=user, filters=ThreadFilters(q="nothing matches"))
    with pytest.raises(Refused) as nothing:
        jobs.start_selection_job(user=user, selection=empty, action="export", typed_count=0)
    assert str(nothing.value) == "Nothing in this selection can be exported."


@pytest.mark.django_db
def test_the_selection_page_starts_an_export_beside_the_deletion(
    user_client, user, api_key, make_thread, export_dir
):
    make_thread(api_key, label="Page 1")
    make_thread(api_key, label="Page 2")
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="page"))
    page = reverse("threads_app:selection_detail", args=[selection.pk])

    shown = user_client.get(page).content.decode()
    assert 'name="export-typed_count"' in shown and 'value="export"' in shown
    wrong = user_client.post(page, {"action": "export", "export-typed_count": "3"})
    assert wrong.status_code == 200
    assert "Type the number of threads, 2, to confirm." in wrong.content.decode()
    assert not BulkDeleteJob.objects.exists()
    bad = user_client.post(page, {"action": "export", "export-typed_count": "two"})
    assert bad.status_code == 200 and not BulkDeleteJob.objects.exists()

    started = user_client.post(page, {"action": "export", "export-typed_count": "2"})
    job = BulkDeleteJob.objects.get()
    assert started.status_code == 302
    assert started["Location"] == reverse("threads_app:bulk_delete_job", args=[job.pk])
    assert job.kind == BulkDeleteJob.Kind.EXPORT
    assert AuditEvent.objects.filter(action=Action.EXPORT_REQUESTED).count() == 1


# --- Downloading it, and its expiry ---------------------------------------------------------


@pytest.fixture
def team_export(user, make_user, make_team, make_key, make_thread, export_dir):
    """A finished export of a team's threads, asked for by its member mia."""
    people = {name: make_user(name) for name in ("mia", "olga", "max", "vic", "out")}
    team = make_team(
        "Exporters",
        {
            people["olga"]: Role.OWNER,
            people["mia"]: Role.MEMBER,
            people["max"]: Role.MEMBER,
            people["vic"]: Role.VIEWER,
        },
    )
    key = make_key(team=team, created_by=people["olga"])
    make_thread(key, label="Team thread", messages=messages_of(2), tracked_by=people["mia"])
    job = run(start_export(people["mia"], team_id=team.pk))
    assert job.state == State.FINISHED and job.team_id == team.pk
    return job, people


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "status"),
    [("mia", 200), ("olga", 200), ("max", 404), ("vic", 404), ("out", 404)],
)
def test_who_may_download_an_export(client, team_export, who, status):
    job, people = team_export
    client.force_login(people[who])
    response = client.get(reverse("threads_app:job_export_download", args=[job.pk]))
    assert response.status_code == status
    downloads = AuditEvent.objects.filter(action=Action.EXPORT_DOWNLOADED)
    if status == 200:
        assert response["Content-Type"] == "application/gzip"
        assert "Content-Encoding" not in response
        stamp = job.finished_at.strftime("%Y%m%d")
        assert response["Content-Disposition"] == (
            f'attachment; filename="threads-export-{job.pk}-{stamp}.jsonl.gz"'
        )
        body = gzip.decompress(b"".join(response.streaming_content))
        assert json.loads(body)["tracked"]["tracked_by"] == "mia"
        event = downloads.get()
        assert event.actor_username == who and event.details["job"] == job.pk
    else:
        assert not downloads.exists()


@pytest.mark.django_db
def test_a_superuser_acts_as_the_teams_owner_but_not_as_whoever_asked(
    client, team_export, user, api_key, make_thread, make_user
):
    job, _ = team_export
    client.force_login(make_user("root", is_superuser=True))
    download = reverse("threads_app:job_export_download", args=[job.pk])
    assert client.get(download).status_code == 200  # superusers act as owners everywhere
    make_thread(api_key, label="Personal 1")
    personal = run(start_export(user, q="personal"))  # alice's own key: no team
    assert personal.team_id is None and personal.state == State.FINISHED
    url = reverse("threads_app:bulk_delete_job", args=[personal.pk])
    page = client.get(url).content.decode()  # a superuser sees every job
    assert 'id="export-not-yours"' in page and 'id="export-download"' not in page
    response = client.get(reverse("threads_app:job_export_download", args=[personal.pk]))
    assert response.status_code == 403


@pytest.mark.django_db
def test_a_delete_job_has_no_export(user_client, user, api_key, make_thread):
    make_thread(api_key, label="Deleted one")
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="deleted"))
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=1)
    response = user_client.get(reverse("threads_app:job_export_download", args=[job.pk]))
    assert response.status_code == 404


@pytest.mark.django_db
def test_an_export_not_finished_yet_is_not_offered(user_client, user, api_key, make_thread):
    make_thread(api_key, label="Waiting 1")
    job = start_export(user, q="waiting")
    url = reverse("threads_app:job_export_download", args=[job.pk])
    response = user_client.get(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("threads_app:bulk_delete_job", args=[job.pk])
    assert "The export is not finished yet" in response.content.decode()
    assert not AuditEvent.objects.filter(action=Action.EXPORT_DOWNLOADED).exists()


@pytest.mark.django_db
def test_the_sweep_removes_an_expired_export_and_the_page_says_so(
    client, team_export, settings, export_dir
):
    job, people = team_export
    client.force_login(people["mia"])
    page_url = reverse("threads_app:bulk_delete_job", args=[job.pk])
    download_url = reverse("threads_app:job_export_download", args=[job.pk])
    page = client.get(page_url).content.decode()
    assert 'id="export-download"' in page and 'id="export-expiry"' in page

    tasks.sweep()  # not expired yet: kept
    assert (export_dir / job.export_file).exists()

    settings.EXPORT_TTL_DAYS = 2
    BulkDeleteJob.objects.filter(pk=job.pk).update(
        finished_at=timezone.now() - timedelta(days=2, minutes=1)
    )
    expired_page = client.get(page_url).content.decode()  # past its time, before the sweep
    assert 'id="export-expired"' in expired_page and 'id="export-download"' not in expired_page
    refused = client.get(download_url, follow=True)
    assert "no longer available" in refused.content.decode()

    tasks.sweep()
    job.refresh_from_db()
    assert job.export_removed_at is not None
    assert list(export_dir.iterdir()) == []
    event = AuditEvent.objects.get(action=Action.EXPORT_EXPIRED)
    assert event.details["job"] == job.pk and event.team_id == job.team_id
    tasks.sweep()  # once
    assert AuditEvent.objects.filter(action=Action.EXPORT_EXPIRED).count() == 1
    assert 'id="export-expired"' in client.get(page_url).content.decode()
    assert audit.verify_chain().ok


@pytest.mark.django_db
def test_the_sweep_keeps_the_parts_of_a_failed_export_for_its_resume(
    user, api_key, make_thread, export_dir
):
    make_thread(api_key, label="Failing 1")
    job = start_export(user, q="failing")
    exports.export_storage().save(f"job-{job.pk}-part-{1:020d}.jsonl.gz", ContentFile(b"x"))
    long_ago = timezone.now() - timedelta(days=30)
    BulkDeleteJob.objects.filter(pk=job.pk).update(state=State.FAILED, finished_at=long_ago)
    tasks.sweep()
    job.refresh_from_db()
    assert job.export_removed_at is None and len(list(export_dir.iterdir())) == 1


# --- Pause, resume, cancel ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_paused_export_resumes_where_it_was_and_writes_each_thread_once(
    user, api_key, emulator, export_dir, monkeypatch
):
    threads = many_threads(emulator, api_key, exports.EXPORT_BATCH * 3, label="Pause")
    job = start_export(user, q="pause")
    real_commit = bulk.JobRun.commit

    def pause_at_commit(self, items, record):
        if BulkDeleteJob.objects.filter(pk=job.pk, state=State.RUNNING).exists():
            jobs.pause_job(user=user, job=job)  # as the first batch is committed
        real_commit(self, items, record)

    monkeypatch.setattr(bulk.JobRun, "commit", pause_at_commit)
    job = run(job)
    assert job.state == State.PAUSED and job.task_id == ""
    assert 0 < job.done < len(threads) and not job.export_file
    monkeypatch.setattr(bulk.JobRun, "commit", real_commit)

    jobs.resume_job(user=user, job=job)
    job = run(job)
    assert job.state == State.FINISHED
    assert [line["thread"]["id"] for line in lines_of(job)] == [t.thread_id for t in threads]


@pytest.mark.django_db
def test_a_cancelled_export_keeps_no_file(user, api_key, emulator, export_dir, monkeypatch):
    many_threads(emulator, api_key, exports.EXPORT_BATCH * 3, label="Cancel")
    job = start_export(user, q="cancel")
    real_commit = bulk.JobRun.commit

    def cancel_at_commit(self, items, record):
        if BulkDeleteJob.objects.filter(pk=job.pk, state=State.RUNNING).exists():
            jobs.cancel_job(user=user, job=job)  # as the first batch is committed
        real_commit(self, items, record)

    monkeypatch.setattr(bulk.JobRun, "commit", cancel_at_commit)
    job = run(job)
    assert job.state == State.CANCELLED and not job.export_file
    assert job.items.filter(outcome=Item.PENDING).exists()
    assert any(export_dir.iterdir())  # the parts written so far, until the sweep
    tasks.sweep()
    job.refresh_from_db()
    assert job.export_removed_at is not None and list(export_dir.iterdir()) == []
    assert not AuditEvent.objects.filter(action=Action.EXPORT_EXPIRED).exists()


@pytest.mark.django_db
def test_a_run_killed_mid_export_leaves_nothing_the_next_run_duplicates(
    user, api_key, emulator, export_dir, monkeypatch
):
    """What a kill -9 leaves, made by hand: a part half written whose items were never
    committed, another run's part of a batch cut elsewhere, and a file half copied. The next
    run writes that batch again and the file from scratch, each thread once."""
    threads = many_threads(emulator, api_key, exports.EXPORT_BATCH + 5, label="Killed")
    job = start_export(user, q="killed")
    real_finish = exports.ExportRun.finish
    monkeypatch.setattr(exports.ExportRun, "finish", lambda self: None)  # killed before it
    job = run(job)
    monkeypatch.setattr(exports.ExportRun, "finish", real_finish)
    first_batch = list(job.items.order_by("pk")[: exports.EXPORT_BATCH])
    BulkDeleteItem.objects.filter(pk__in=[i.pk for i in first_batch]).update(outcome=Item.PENDING)
    BulkDeleteJob.objects.filter(pk=job.pk).update(state=State.RUNNING, done=5, finished_at=None)
    parts = sorted(export_dir.iterdir())
    assert len(parts) == 2
    parts[0].write_bytes(b"half a part")
    stale = export_dir / f"job-{job.pk}-part-{first_batch[-1].pk:020d}.jsonl.gz"
    stale.write_bytes(gzip.compress(b'{"stale": true}\n'))
    (export_dir / f"job-{job.pk}-threads.jsonl.gz").write_bytes(b"half a file")

    job = run(job)
    assert job.state == State.FINISHED and job.done == len(threads)
    assert [line["thread"]["id"] for line in lines_of(job)] == [t.thread_id for t in threads]
    assert sorted(p.name for p in export_dir.iterdir()) == [f"job-{job.pk}-threads.jsonl.gz"]


# --- The job's page without JavaScript ------------------------------------------------------


@pytest.mark.django_db
def test_the_export_job_page_works_without_javascript(
    user_client, user, api_key, make_thread, export_dir
):
    make_thread(api_key, label="Nojs 1", messages=messages_of(1))
    job = start_export(user, q="nojs")
    url = reverse("threads_app:bulk_delete_job", args=[job.pk])
    waiting = user_client.get(url).content.decode()
    assert "<h1>Export #" in waiting and 'http-equiv="refresh"' in waiting
    assert 'id="export-download"' not in waiting

    run(job)
    page = user_client.get(url).content.decode()
    assert 'http-equiv="refresh"' not in page
    link = reverse("threads_app:job_export_download", args=[job.pk])
    assert f'href="{link}"' in page  # a plain link: no script needed
    assert "exported" in page and "Try the failed" not in page
    response = user_client.get(link)
    assert response.status_code == 200
    assert json.loads(gzip.decompress(b"".join(response.streaming_content)))["messages"]


@pytest.mark.django_db
def test_the_jobs_list_names_an_export(user_client, user, api_key, make_thread, export_dir):
    make_thread(api_key, label="Listed 1")
    job = start_export(user, q="listed")
    page = user_client.get(reverse("threads_app:job_list")).content.decode()
    assert f"Export #{job.pk}" in page


# --- A real worker killed with -9 mid-export ------------------------------------------------

CRASH_THREADS = 1500


@committed
def test_an_export_whose_worker_is_killed_finishes_on_another_with_every_line_once(
    user, api_key, emulator, start_worker, tmp_path, settings
):
    location = tmp_path / "crash-exports"
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    threads = many_threads(emulator, api_key, CRASH_THREADS, label="Crash")
    emulator.set_latency(0.02)
    emulator.set_rate_limit(rate=800)  # and some 429s on the way: fetched again, not failed
    job = start_export(user, q="crash")

    doomed = start_worker("doomed", EXPORT_DIR=str(location))
    wait_until_done_at_least(job, 300)
    doomed.kill()  # kill -9, mid-job
    job.refresh_from_db()
    assert job.filled and 300 <= job.done < CRASH_THREADS

    survivor = start_worker("survivor", EXPORT_DIR=str(location))
    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).state == State.FINISHED,
        timeout=240,
        what="the resumed export to finish",
    )
    job.refresh_from_db()
    assert (job.worker_id, job.resume_count) == ("survivor", 1)
    assert job.total == job.done == CRASH_THREADS
    assert set(job.items.values_list("outcome", flat=True)) == {Item.EXPORTED}
    assert [line["thread"]["id"] for line in lines_of(job)] == [t.thread_id for t in threads]
    assert sorted(p.name for p in location.iterdir()) == [f"job-{job.pk}-threads.jsonl.gz"]
    assert "Abandoned: worker doomed" in survivor.output
    with pytest.raises(Refused):  # nothing left to steer
        jobs.cancel_job(user=user, job=job)


# --- The API --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_serves_a_finished_export_and_says_when_it_cannot(
    user, api_key, make_thread, export_dir, settings
):
    make_thread(api_key, label="Api 1", messages=messages_of(3))
    job = start_export(user, q="api")
    client = ApiClient(make_token(user, scopes=["threads:read"]))
    path = f"jobs/{job.pk}/export"

    early = client.get(path)
    assert early.status_code == 409
    assert early.json()["type"].endswith("/export_not_ready")

    run(job)
    response = client.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    line = json.loads(gzip.decompress(b"".join(response.streaming_content)))
    assert len(line["messages"]) == 3 and line["tracked"]["label"] == "Api 1"
    event = AuditEvent.objects.get(action=Action.EXPORT_DOWNLOADED)
    assert event.actor_username == user.username and event.details["job"] == job.pk
    assert job.pk == client.get(f"jobs/{job.pk}").json()["id"]
    assert client.get(f"jobs/{job.pk}").json()["kind"] == "export"

    settings.EXPORT_TTL_DAYS = 1
    BulkDeleteJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=1))
    gone = client.get(path)
    assert gone.status_code == 410 and gone.json()["type"].endswith("/export_expired")
    assert client.get("jobs/999999/export").status_code == 404
