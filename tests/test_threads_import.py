"""Importing threads by id: each verified with a GET, results per id, upstream faults."""

import re

import pytest
from django.utils.html import escape

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from tests.threads_helpers import FAILURES, HX, body, is_partial, triggers, url
from threads_app.models import AuditEvent, Membership, TrackedThread

pytestmark = pytest.mark.django_db


def results(text):
    """(thread id, result) per row of the results table."""
    return re.findall(
        r'<td><code>([^<]+)</code></td>\s*<td>\s*<span class="badge \w+">([^<]+)</span>', text
    )


def gets_sent(emulator):
    return [path for method, path in emulator.request_log if method == "GET"]


def test_import_page_full_and_partial(user_client, api_key):
    full = body(user_client.get(url("thread_import")))
    partial = body(user_client.get(url("thread_import"), **HX))

    assert "<h1>Import threads</h1>" in full and 'aria-current="page">Import<' in full
    assert is_partial(partial) and partial.lstrip().startswith('<div id="import">')


def test_import_tracks_verified_threads_and_reports_each_id(
    user_client, user, api_key, emulator, make_thread
):
    fresh = emulator.seed_thread(TEST_KEY, metadata={"customer": "ACME"})
    known = make_thread(api_key, label="known")
    elsewhere = emulator.seed_thread(OTHER_TEST_KEY)  # another project's thread: a 404 here
    ids = f"  {fresh['id']}  \n\n{known.thread_id}\nthread_nope\n{fresh['id']}\n{elsewhere['id']}\n"

    response = user_client.post(url("thread_import"), {"api_key": api_key.pk, "thread_ids": ids})

    text = body(response)
    assert response.status_code == 200
    assert results(text) == [
        (fresh["id"], "tracked"),
        (known.thread_id, "already tracked"),
        ("thread_nope", "refused"),
        (elsewhere["id"], "refused"),
    ]
    assert text.count("No such thread for this key (request req_") == 2
    assert "1 tracked, 1 already tracked, 2 refused." in text
    imported = TrackedThread.objects.get(thread_id=fresh["id"])
    assert imported.api_key == api_key and imported.tracked_by == user
    assert imported.metadata == {"customer": "ACME"}
    assert imported.upstream_created_at.timestamp() == fresh["created_at"]
    assert url("thread_detail", imported.pk) in text
    # Each new id verified once; the one already tracked is not asked about again.
    assert len(gets_sent(emulator)) == 3
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome) == (AuditEvent.Action.THREAD_IMPORTED, "success")
    assert event.thread_id == fresh["id"] and event.request_id.startswith("req_")


def test_htmx_import_returns_the_results_partial_and_announces_the_change(
    user_client, api_key, emulator
):
    fresh = emulator.seed_thread(TEST_KEY)

    response = user_client.post(
        url("thread_import"), {"api_key": api_key.pk, "thread_ids": fresh["id"]}, **HX
    )

    text = body(response)
    assert is_partial(text) and results(text) == [(fresh["id"], "tracked")]
    assert "threadsChanged" in triggers(response)


@pytest.mark.parametrize(
    ("thread_ids", "error"),
    [
        ("thread_a\nthread b\n", "Line 2: “thread b” is not a thread id: it contains spaces."),
        ("x" * 101, "is too long for a thread id (at most 100)."),
        (
            "\n".join(f"thread_{i}" for i in range(101)),
            "At most 100 ids per import; there are 101.",
        ),
        (" \n \n", "Paste at least one thread id."),
    ],
    ids=["space", "too-long", "too-many", "blank"],
)
def test_invalid_ids_are_refused_before_anything_is_sent(
    user_client, api_key, emulator, thread_ids, error
):
    text = body(
        user_client.post(url("thread_import"), {"api_key": api_key.pk, "thread_ids": thread_ids})
    )

    assert error in text
    assert emulator.request_log == []
    assert not TrackedThread.objects.exists()


def test_a_hundred_ids_are_accepted(user_client, api_key, emulator):
    ids = "\n".join(f"thread_{i}" for i in range(100))

    text = body(user_client.post(url("thread_import"), {"api_key": api_key.pk, "thread_ids": ids}))

    assert "0 tracked, 0 already tracked, 100 refused." in text
    assert len(gets_sent(emulator)) == 100


def test_import_gives_the_new_threads_a_label(user_client, api_key, emulator, make_thread):
    fresh = emulator.seed_thread(TEST_KEY)
    known = make_thread(api_key, label="known")
    ids = f"{fresh['id']}\n{known.thread_id}"

    data = {"api_key": api_key.pk, "thread_ids": ids, "label": "Support, March"}
    user_client.post(url("thread_import"), data)

    assert TrackedThread.objects.get(thread_id=fresh["id"]).label == "Support, March"
    assert TrackedThread.objects.get(pk=known.pk).label == "known"  # already tracked: kept


def test_another_users_key_cannot_be_used(user_client, user, other_user, make_key, emulator):
    foreign_key = make_key(owner=other_user)
    make_key(owner=user, label="Own", secret=OTHER_TEST_KEY)  # so the form is offered
    fresh = emulator.seed_thread(TEST_KEY)

    text = body(
        user_client.post(
            url("thread_import"), {"api_key": foreign_key.pk, "thread_ids": fresh["id"]}
        )
    )

    assert "Select a valid choice" in text
    assert emulator.request_log == []
    assert not TrackedThread.objects.exists()


def test_team_viewers_cannot_import(user_client, user, make_key, make_team, emulator):
    key = make_key(team=make_team("Blue", {user: Membership.Role.VIEWER}))
    make_key(owner=user, label="Own", secret=OTHER_TEST_KEY)  # so the form is offered

    text = body(
        user_client.post(url("thread_import"), {"api_key": key.pk, "thread_ids": "thread_x"})
    )

    assert "Select a valid choice" in text
    assert emulator.request_log == []


def test_injected_404_refuses_that_id_only(user_client, api_key, emulator):
    first, second = emulator.seed_thread(TEST_KEY), emulator.seed_thread(TEST_KEY)
    emulator.add_fault(method="GET", path=f"/v1/threads/{first['id']}", kind="status", status=404)

    text = body(
        user_client.post(
            url("thread_import"),
            {"api_key": api_key.pk, "thread_ids": f"{first['id']}\n{second['id']}"},
        )
    )

    assert results(text) == [(first["id"], "refused"), (second["id"], "tracked")]
    assert "No such thread for this key" in text


@pytest.mark.parametrize(("fault", "expected"), FAILURES)
def test_upstream_failure_refuses_the_rest_and_tracks_nothing(
    user_client, api_key, emulator, fault, expected
):
    first, second = emulator.seed_thread(TEST_KEY), emulator.seed_thread(TEST_KEY)
    emulator.add_fault(method="GET", path="/v1/threads/*", **fault)

    response = user_client.post(
        url("thread_import"),
        {"api_key": api_key.pk, "thread_ids": f"{first['id']}\n{second['id']}"},
    )

    text = body(response)
    assert response.status_code == 200
    assert results(text) == [(first["id"], "refused"), (second["id"], "refused")]
    assert expected in text
    assert "Not checked: " in text
    if fault["kind"] == "status":
        assert "(request req_" in text
    # The first failure stops the import: the second id is never sent.
    assert not any(second["id"] in path for path in gets_sent(emulator))
    assert not TrackedThread.objects.exists()
    assert not AuditEvent.objects.exists()


def test_an_answer_about_another_thread_refuses_that_id(user_client, api_key, emulator):
    asked, other = emulator.seed_thread(TEST_KEY), emulator.seed_thread(TEST_KEY)
    # The upstream answers the GET of `asked` with another thread (a proxy's mix-up, say).
    emulator.add_fault(method="GET", path=f"/v1/threads/{asked['id']}", status=200, body=other)

    text = body(
        user_client.post(url("thread_import"), {"api_key": api_key.pk, "thread_ids": asked["id"]})
    )

    assert results(text) == [(asked["id"], "refused")]
    assert escape(f"The Threads API answered with another thread (“{other['id']}”)") in text
    assert not TrackedThread.objects.exists()
    assert not AuditEvent.objects.exists()

    # Asked for by its own id, the other thread is tracked as usual.
    user_client.post(url("thread_import"), {"api_key": api_key.pk, "thread_ids": other["id"]})
    assert list(TrackedThread.objects.values_list("thread_id", flat=True)) == [other["id"]]
