"""Reconcile: "Check now" on a thread, and `manage.py reconcile_threads` for all of them."""

import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from tests.threads_helpers import HX, body, is_partial, toasts, triggers, url
from threads_app.models import Membership, TrackedThread
from threads_app.services.reconcile import CheckResult, check_thread, reconcile_all
from threads_app.upstream import ThreadsClient

pytestmark = pytest.mark.django_db

State = TrackedThread.State
# Well-formed, but not one of the emulator's keys: every call with it answers 401.
REJECTED_SECRET = "sk-test-emulator-rejected-000000000000000"


@pytest.fixture
def thread(api_key, make_thread):
    return make_thread(api_key, label="Case 9", metadata={"stage": "new"})


@pytest.fixture
def rejected_key(make_key, user):
    return make_key(owner=user, secret=REJECTED_SECRET, label="old key")


def check(client, thread, **extra):
    return client.post(url("thread_check", thread.pk), **extra)


def thread_gets(emulator, threads):
    """GETs of these threads the emulator received."""
    paths = {f"/v1/threads/{thread.thread_id}" for thread in threads}
    return [path for method, path in emulator.request_log if method == "GET" and path in paths]


# --- Check now --------------------------------------------------------------------------------


def test_plain_check_refreshes_what_changed_upstream(user_client, thread):
    ThreadsClient(TEST_KEY).modify_thread(thread.thread_id, metadata={"stage": "won"})

    response = check(user_client, thread)

    assert response.status_code == 302
    assert response["Location"] == url("thread_detail", thread.pk)
    thread.refresh_from_db()
    assert thread.metadata == {"stage": "won"} and "won" in thread.search_text
    assert thread.state == State.ACTIVE and thread.last_checked_at is not None
    page = body(user_client.get(response["Location"]))
    assert "“Case 9” is live; its details are up to date." in page


def test_htmx_check_answers_with_the_record_and_a_toast(user_client, thread):
    response = check(user_client, thread, **HX)

    text = body(response)
    assert is_partial(text) and text.lstrip().startswith('<section id="record"')
    assert "Last checked" in text and "never" not in text
    assert toasts(response) == ["“Case 9” is live; its details are up to date."]
    assert "threadsChanged" in triggers(response)


def test_detail_page_offers_check_now(user_client, thread):
    text = body(user_client.get(url("thread_detail", thread.pk)))

    assert f'action="{url("thread_check", thread.pk)}"' in text
    assert f'hx-post="{url("thread_check", thread.pk)}"' in text
    assert 'hx-target="#record"' in text


def test_check_marks_a_thread_the_upstream_lost_as_gone(user_client, thread, emulator):
    emulator.remove_thread(thread.thread_id)

    response = check(user_client, thread, **HX)

    thread.refresh_from_db()
    assert thread.state == State.GONE and thread.last_checked_at is not None
    [toast] = toasts(response)
    assert "“Case 9” is gone upstream" in toast and "404" in toast and "(request req_" in toast
    assert 'class="badge gone"' in body(response)
    list_page = body(user_client.get(url("thread_list")))
    assert '<span class="badge gone">gone upstream</span>' in list_page


def test_check_brings_back_a_gone_thread_that_answers_again(user_client, thread):
    TrackedThread.objects.filter(pk=thread.pk).update(state=State.GONE)

    check(user_client, thread)

    thread.refresh_from_db()
    assert thread.state == State.ACTIVE


def test_check_with_a_rejected_key_marks_the_key_failing(user_client, rejected_key, make_thread):
    thread = make_thread(rejected_key, label="Orphan")

    response = check(user_client, thread, **HX)

    rejected_key.refresh_from_db()
    assert rejected_key.failing and "401" in rejected_key.last_error
    assert REJECTED_SECRET not in rejected_key.last_error
    thread.refresh_from_db()
    assert thread.state == State.ACTIVE and thread.last_checked_at is None  # not checked
    [toast] = toasts(response)
    assert toast.startswith(
        "The Threads API rejected the key “old key”, which is now marked failing. Threads API 401"
    )
    assert REJECTED_SECRET not in toast
    assert '<span class="badge failing">key failing</span>' in body(response)
    list_page = body(user_client.get(url("thread_list")))
    assert '<span class="badge failing">key failing</span>' in list_page


def test_a_check_that_works_clears_a_failing_key(user_client, api_key, thread):
    api_key.failing, api_key.last_error = True, "Threads API 401: old complaint"
    api_key.save()

    check(user_client, thread)

    api_key.refresh_from_db()
    assert not api_key.failing and api_key.last_error == ""
    assert '<span class="badge failing">' not in body(user_client.get(url("thread_list")))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param({"kind": "status", "status": 500, "times": None}, "500", id="500"),
        pytest.param({"kind": "hang", "seconds": 3}, "did not answer within 2 s", id="timeout"),
    ],
)
def test_a_failed_check_changes_nothing(user_client, api_key, thread, emulator, fault, expected):
    TrackedThread.objects.filter(pk=thread.pk).update(metadata={"stage": "cached"})
    emulator.add_fault(method="GET", path=f"/v1/threads/{thread.thread_id}", **fault)

    response = check(user_client, thread, **HX)

    thread.refresh_from_db()
    assert thread.metadata == {"stage": "cached"} and thread.last_checked_at is None
    assert thread.state == State.ACTIVE
    api_key.refresh_from_db()
    assert not api_key.failing
    [toast] = toasts(response)
    assert toast.startswith("“Case 9” could not be checked, nothing was changed. Threads API")
    assert expected in toast
    assert "threadsChanged" not in triggers(response)


def test_a_deleted_thread_is_not_checked(user_client, thread, emulator):
    TrackedThread.objects.filter(pk=thread.pk).update(state=State.DELETED)

    response = check(user_client, thread, **HX)

    assert toasts(response) == ["This thread was deleted; the Threads API no longer has it."]
    assert emulator.request_log == []
    assert f'action="{url("thread_check", thread.pk)}"' not in body(response)


def test_check_is_for_anyone_who_sees_the_thread(make_user, make_team, make_key, make_thread):
    viewer = make_user()
    team = make_team(members={viewer: Membership.Role.VIEWER})
    thread = make_thread(make_key(team=team), label="Team case")
    client = Client()
    client.force_login(viewer)

    response = check(client, thread, **HX)

    assert response.status_code == 200
    assert toasts(response) == ["“Team case” is live; its details are up to date."]


def test_check_of_someone_elses_thread_is_404(client, other_user, thread, emulator):
    client.force_login(other_user)

    assert check(client, thread).status_code == 404
    assert check(client, thread, **HX).status_code == 404
    assert emulator.request_log == []


def test_check_needs_a_post(user_client, thread):
    assert user_client.get(url("thread_check", thread.pk)).status_code == 405


def test_check_thread_reports_the_request_id(thread):
    result = check_thread(thread)

    assert result.outcome == CheckResult.OK and result.request_id.startswith("req_")


# --- The command ------------------------------------------------------------------------------


def reconcile(*args):
    out = StringIO()
    call_command("reconcile_threads", *args, stdout=out)
    return out.getvalue().splitlines()


@pytest.mark.django_db(transaction=True)
def test_command_checks_every_thread_and_skips_a_rejected_key(
    emulator, user, other_user, api_key, rejected_key, make_key, make_thread
):
    other_key = make_key(owner=other_user, secret=OTHER_TEST_KEY, label="beta")
    # The rejected key's threads come first and span two batches of 7: without the probe,
    # all four workers would start with one of them.
    threads = {
        rejected_key.pk: [make_thread(rejected_key, label=f"old {n}") for n in range(10)],
        api_key.pk: [],
        other_key.pk: [],
    }
    for n in range(10):
        threads[api_key.pk].append(make_thread(api_key, label=f"alpha {n}"))
        threads[other_key.pk].append(
            make_thread(other_key, label=f"beta {n}", secret=OTHER_TEST_KEY)
        )
    gone = threads[api_key.pk][:2]
    for thread in gone:
        emulator.remove_thread(thread.thread_id)
    changed = threads[other_key.pk][5]
    ThreadsClient(OTHER_TEST_KEY).modify_thread(changed.thread_id, metadata={"stage": "won"})
    deleted = make_thread(api_key, label="deleted")
    TrackedThread.objects.filter(pk=deleted.pk).update(state=State.DELETED)

    lines = reconcile("--workers", "4", "--batch-size", "7")

    assert lines[0] == (
        "Checked: 20 threads. Gone upstream: 2. Keys failing: 1. Errors: 0. "
        "Skipped (key rejected): 10."
    )
    assert lines[1].startswith("Key failing: The Threads API rejected the key “old key”")
    assert len(lines) == 2
    assert len(thread_gets(emulator, threads[rejected_key.pk])) == 1  # the first, then skipped
    assert thread_gets(emulator, [deleted]) == []
    rejected_key.refresh_from_db()
    assert rejected_key.failing and "401" in rejected_key.last_error
    states = dict(TrackedThread.objects.values_list("pk", "state"))
    assert {pk for pk, state in states.items() if state == State.GONE} == {t.pk for t in gone}
    checked = TrackedThread.objects.filter(last_checked_at__isnull=False)
    assert set(checked.values_list("api_key", flat=True)) == {api_key.pk, other_key.pk}
    assert checked.count() == 20
    changed.refresh_from_db()
    assert changed.metadata == {"stage": "won"}


@pytest.mark.django_db(transaction=True)
def test_command_reports_errors_and_checks_the_rest(emulator, api_key, make_thread):
    broken, *fine = [make_thread(api_key, label=f"case {n}") for n in range(3)]
    emulator.add_fault(method="GET", path=f"/v1/threads/{broken.thread_id}", status=500, times=None)

    lines = reconcile()

    assert lines[0] == (
        "Checked: 2 threads. Gone upstream: 0. Keys failing: 0. Errors: 1. "
        "Skipped (key rejected): 0."
    )
    assert lines[1].startswith(
        "Error: “case 0” could not be checked, nothing was changed. Threads API"
    )
    assert "Threads API 500" in lines[1] and "(request req_" in lines[1]
    broken.refresh_from_db()
    assert broken.last_checked_at is None
    assert all(TrackedThread.objects.get(pk=t.pk).last_checked_at for t in fine)


@pytest.mark.django_db(transaction=True)
def test_reconcile_checks_concurrently(emulator, api_key, make_thread):
    for n in range(8):
        make_thread(api_key, label=f"case {n}")
    emulator.set_latency(0.3)

    started = time.monotonic()
    summary = reconcile_all(workers=4)
    elapsed = time.monotonic() - started

    assert summary.checked == 8
    # One by one: 8 x 0.3 s. Here: the key's first thread, then the other 7 four at a time.
    assert elapsed < 1.6


def test_command_refuses_zero_workers():
    with pytest.raises(CommandError, match="--workers: must be at least 1"):
        reconcile("--workers", "0")


@pytest.mark.parametrize("upstream_has_it", [True, False])
def test_a_check_racing_a_deletion_never_undoes_it(thread, emulator, upstream_has_it):
    stale = TrackedThread.objects.get(pk=thread.pk)  # read before the deletion finished
    TrackedThread.objects.filter(pk=thread.pk).update(state=TrackedThread.State.DELETED)
    if not upstream_has_it:
        emulator.remove_thread(thread.thread_id)
    check_thread(stale)
    thread.refresh_from_db()
    assert thread.state == TrackedThread.State.DELETED
