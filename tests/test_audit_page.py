"""The audit log page and its CSV export: who sees what, filters, keyset paging, htmx."""

import csv
import io
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import ApiKey, AuditEvent, Membership, TrackedThread

pytestmark = pytest.mark.django_db

URL = reverse("threads_app:audit_list")
EXPORT_URL = reverse("threads_app:audit_export")
HX = {"HTTP_HX_REQUEST": "true"}
Action, Outcome, Role = AuditEvent.Action, AuditEvent.Outcome, Membership.Role
CSV_HEADER = [
    "sequence",
    "time",
    "actor",
    "action",
    "outcome",
    "team",
    "key hint",
    "thread id",
    "http status",
    "request id",
    "client ip",
    "user agent",
    "details",
    "hash",
]


def record_at(when, action, outcome=Outcome.SUCCESS, **fields):
    """Append an event stamped `when` (audit.record stamps the current time)."""
    with mock.patch.object(timezone, "now", return_value=when):
        return audit.record(action=action, outcome=outcome, **fields)


def at(day, hour=12, minute=0, second=0):
    return datetime(2025, 3, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def world(user, other_user, make_user, make_team, make_key, api_key):
    """alice: member of A; carol: viewer of A; bob: owner of B; root: superuser."""
    carol = make_user("carol")
    root = make_user("root")
    # Made superuser by a queryset update, which sends no signal: the log then holds just the
    # events below, not root's access change.
    type(root).objects.filter(pk=root.pk).update(is_superuser=True, is_staff=True)
    root.refresh_from_db()
    team_a = make_team("Team A", {user: Role.MEMBER, carol: Role.VIEWER})
    team_b = make_team("Team B", {other_user: Role.OWNER})
    key_a = make_key(team=team_a, label="A key", created_by=user)
    key_b = make_key(team=team_b, secret=OTHER_TEST_KEY, label="B key", created_by=other_user)
    bob_key = make_key(owner=other_user, secret=OTHER_TEST_KEY, label="bob's key")
    events = SimpleNamespace(
        alice_personal=record_at(at(1), Action.KEY_ADDED, actor=user, api_key=api_key),
        team_a_delete=record_at(
            at(2, 0),
            Action.THREAD_DELETED,
            actor=user,
            api_key=key_a,
            thread_id="thread_abc123",
            http_status=200,
            request_id="req_delete_a",
            details={"already_gone": False},
        ),
        team_b_failed=record_at(
            at(2, 23, 59, 59),
            Action.THREAD_DELETED,
            Outcome.FAILED,
            actor=other_user,
            api_key=key_b,
            thread_id="thread_b",
            http_status=500,
            request_id="req_b",
        ),
        bob_personal=record_at(at(3, 0), Action.KEY_ADDED, actor=other_user, api_key=bob_key),
        team_a_member=record_at(
            at(4, 8), Action.MEMBER_ADDED, actor=user, team=team_a, details={"member": "carol"}
        ),
    )
    return SimpleNamespace(
        alice=user,
        bob=other_user,
        carol=carol,
        root=root,
        team_a=team_a,
        team_b=team_b,
        alice_key=api_key,
        key_a=key_a,
        key_b=key_b,
        bob_key=bob_key,
        events=events,
    )


def param_id(value):
    """Test ids like `action=thread.deleted&team=team_a` for the filter parameters."""
    if isinstance(value, dict):
        return "&".join(f"{name}={value}" for name, value in value.items())
    return value if isinstance(value, str) else None


def sequences(*events):
    """Newest first, as the page and the CSV list them."""
    return sorted((e.sequence for e in events), reverse=True)


def shown(response):
    return [event.sequence for event in response.context["page"].rows]


def csv_rows(response):
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    header, *rows = csv.reader(io.StringIO(text))
    assert header == CSV_HEADER
    return rows


def assert_no_secret(content):
    ciphertexts = ApiKey.objects.values_list("secret_encrypted", flat=True)
    for secret in (TEST_KEY, OTHER_TEST_KEY, *ciphertexts):
        assert secret.encode() not in content


def get_as(client, user, url=URL, data=None, **headers):
    client.force_login(user)
    return client.get(url, data or {}, **headers)


class TestVisibility:
    def test_member_sees_personal_and_team_events_only(self, client, world):
        ev = world.events
        response = get_as(client, world.alice)
        assert response.status_code == 200
        assert shown(response) == sequences(ev.alice_personal, ev.team_a_delete, ev.team_a_member)
        for event in (ev.alice_personal, ev.team_a_delete, ev.team_a_member):
            assert f'id="event-{event.sequence}"'.encode() in response.content
        for event in (ev.team_b_failed, ev.bob_personal):
            assert f'id="event-{event.sequence}"'.encode() not in response.content
        assert b"req_b" not in response.content

    def test_viewer_sees_the_team_events(self, client, world):
        ev = world.events
        assert shown(get_as(client, world.carol)) == sequences(ev.team_a_delete, ev.team_a_member)

    def test_other_team_owner_sees_only_theirs(self, client, world):
        ev = world.events
        assert shown(get_as(client, world.bob)) == sequences(ev.team_b_failed, ev.bob_personal)

    def test_superuser_sees_everything(self, client, world):
        assert shown(get_as(client, world.root)) == sequences(*vars(world.events).values())

    def test_removed_member_loses_the_team_events_at_once(self, client, world):
        Membership.objects.filter(user=world.alice, team=world.team_a).delete()
        assert shown(get_as(client, world.alice)) == [world.events.alice_personal.sequence]

    def test_csv_follows_the_same_visibility(self, client, world):
        ev = world.events
        rows = csv_rows(get_as(client, world.bob, EXPORT_URL))
        assert [int(row[0]) for row in rows] == sequences(ev.team_b_failed, ev.bob_personal)

    def test_anonymous_is_sent_to_log_in(self, client, world):
        for url in (URL, EXPORT_URL):
            response = client.get(url)
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("account_login"))

    def test_only_get(self, client, world):
        client.force_login(world.alice)
        assert client.post(URL).status_code == 405
        assert client.post(EXPORT_URL).status_code == 405


class TestRows:
    def test_row_shows_the_event(self, client, world):
        response = get_as(client, world.alice)
        html = response.content.decode()
        row = re.search(
            rf'<tr id="event-{world.events.team_a_delete.sequence}">(.*?)</tr>', html, re.S
        ).group(1)
        assert 'datetime="2025-03-02T00:00:00+00:00" data-relative' in row
        assert "2025-03-02 00:00:00 UTC" in row
        assert ">alice<" in row
        assert "Thread deletion outcome" in row
        assert '<span class="badge success">Success</span>' in row
        assert "Team A" in row
        assert world.key_a.hint in row
        assert "thread_abc123" in row
        assert ">200<" in row
        assert "req_delete_a" in row
        assert "already_gone: false" in row
        personal = re.search(
            rf'<tr id="event-{world.events.alice_personal.sequence}">(.*?)</tr>', html, re.S
        ).group(1)
        assert "personal" in personal
        assert 'aria-current="page">Audit log<' in html
        assert_no_secret(response.content)

    def test_thread_links_while_tracked_and_visible(self, client, world, make_thread):
        tracked = make_thread(world.alice_key, label="kept")
        deleted = make_thread(world.alice_key, label="deleted")
        TrackedThread.objects.filter(pk=deleted.pk).update(state=TrackedThread.State.DELETED)
        linked = audit.record(
            action=Action.THREAD_CREATED,
            outcome=Outcome.SUCCESS,
            actor=world.alice,
            api_key=world.alice_key,
            thread_id=tracked.thread_id,
        )
        # The same thread id under another key is another thread: no link.
        other_key = audit.record(
            action=Action.THREAD_IMPORTED,
            outcome=Outcome.REFUSED,
            actor=world.alice,
            api_key=world.key_a,
            thread_id=tracked.thread_id,
        )
        gone = audit.record(
            action=Action.THREAD_DELETED,
            outcome=Outcome.SUCCESS,
            actor=world.alice,
            api_key=world.alice_key,
            thread_id=deleted.thread_id,
        )
        response = get_as(client, world.alice)
        events = {e.sequence: e for e in response.context["page"].rows}
        assert events[linked.sequence].thread_pk == tracked.pk
        assert events[other_key.sequence].thread_pk is None
        assert events[gone.sequence].thread_pk is None
        detail = reverse("threads_app:thread_detail", args=[tracked.pk])
        assert response.content.decode().count(f'href="{detail}"') == 1
        assert reverse("threads_app:thread_detail", args=[deleted.pk]).encode() not in (
            response.content
        )

    def test_thread_links_cost_one_query_for_the_page(self, client, user, api_key):
        threads = [
            TrackedThread.objects.create(thread_id=f"thread_{n}", api_key=api_key)
            for n in range(40)
        ]
        for thread in threads:
            audit.record(
                action=Action.THREAD_CREATED,
                outcome=Outcome.SUCCESS,
                actor=user,
                api_key=api_key,
                thread_id=thread.thread_id,
            )
        client.force_login(user)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(URL)
        thread_queries = [q for q in queries if "threads_app_trackedthread" in q["sql"]]
        assert len(thread_queries) == 1
        assert all(e.thread_pk for e in response.context["page"].rows)
        assert len(queries) <= 8

    def test_empty_log(self, user_client):
        response = user_client.get(URL)
        assert b"No audit events yet." in response.content
        assert b"Export these events" not in response.content

    def test_no_match(self, client, world):
        response = get_as(client, world.alice, data={"thread": "thread_nothing"})
        assert shown(response) == []
        assert b"No audit events match these filters." in response.content


class TestFilters:
    @pytest.mark.parametrize(
        ("who", "params", "expected"),
        [
            ("alice", {"action": Action.THREAD_DELETED}, ["team_a_delete"]),
            ("alice", {"action": Action.KEY_ADDED}, ["alice_personal"]),
            ("root", {"actor": "BOB"}, ["team_b_failed", "bob_personal"]),
            ("root", {"actor": "ali"}, []),
            ("alice", {"team": "team_a"}, ["team_a_delete", "team_a_member"]),
            ("root", {"team": "team_b"}, ["team_b_failed"]),
            ("alice", {"key": "alice_key"}, ["alice_personal"]),
            ("alice", {"key": "key_a"}, ["team_a_delete"]),
            ("root", {"outcome": Outcome.FAILED}, ["team_b_failed"]),
            (
                "root",
                {"date_from": "2025-03-02", "date_to": "2025-03-02"},
                ["team_a_delete", "team_b_failed"],
            ),
            (
                "root",
                {"date_from": "2025-03-02", "date_to": "2025-03-03"},
                ["team_a_delete", "team_b_failed", "bob_personal"],
            ),
            ("root", {"date_from": "2025-03-04"}, ["team_a_member"]),
            ("root", {"date_to": "2025-03-01"}, ["alice_personal"]),
            ("root", {"thread": "ABC12"}, ["team_a_delete"]),
            ("root", {"thread": "thread_"}, ["team_a_delete", "team_b_failed"]),
            (
                "alice",
                {"action": Action.THREAD_DELETED, "team": "team_a", "outcome": Outcome.SUCCESS},
                ["team_a_delete"],
            ),
        ],
        ids=param_id,
    )
    def test_filter(self, client, world, who, params, expected):
        params = {
            name: getattr(world, value).pk if name in ("team", "key") else value
            for name, value in params.items()
        }
        response = get_as(client, getattr(world, who), data=params)
        assert response.context["form"].errors == {}
        assert shown(response) == sequences(*(getattr(world.events, name) for name in expected))
        rows = csv_rows(get_as(client, getattr(world, who), EXPORT_URL, params))
        assert [int(row[0]) for row in rows] == shown(response)

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"team": "team_b"}, "team"),
            ({"key": "key_b"}, "key"),
            ({"key": "bob_key"}, "key"),
            ({"key": "999999"}, "key"),
            ({"date_from": "2025-03-03", "date_to": "2025-03-02"}, "date_to"),
            ({"date_from": "yesterday"}, "date_from"),
            ({"action": "thread.exploded"}, "action"),
        ],
        ids=param_id,
    )
    def test_filter_outside_what_the_user_may_see_matches_nothing(
        self, client, world, params, field
    ):
        params = {
            name: getattr(world, value).pk if hasattr(world, value) else value
            for name, value in params.items()
        }
        response = get_as(client, world.alice, data=params)
        assert field in response.context["form"].errors
        assert shown(response) == []
        assert b'class="error-banner"' in response.content
        assert b"req_b" not in response.content
        assert csv_rows(get_as(client, world.alice, EXPORT_URL, params)) == []

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"date_to": "9999-12-31"}, ["first_day", "world", "last_moment"]),
            ({"date_from": "0001-01-01"}, ["first_day", "world", "last_moment"]),
            ({"date_from": "0001-01-01", "date_to": "0001-01-01"}, ["first_day"]),
            ({"date_to": "0001-01-01"}, ["first_day"]),
            ({"date_from": "9999-12-31"}, ["last_moment"]),
            ({"date_from": "9999-12-31", "date_to": "9999-12-31"}, ["last_moment"]),
            ({"date_from": "2025-03-05", "date_to": "9999-12-30"}, []),
        ],
        ids=param_id,
    )
    def test_any_accepted_date_filters_page_partial_and_csv(self, client, world, params, expected):
        """The first and last days there are filter like any other (issue 11: the day after
        9999-12-31 does not exist, and asking for it answered 500)."""
        first_day = record_at(datetime(1, 1, 1, tzinfo=UTC), Action.KEY_ROTATED, actor=world.root)
        last_moment = record_at(
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            Action.KEY_ROTATED,
            actor=world.root,
        )
        named = {"first_day": [first_day], "world": vars(world.events).values()}
        named["last_moment"] = [last_moment]
        wanted = sequences(*(event for name in expected for event in named[name]))

        page = get_as(client, world.root, data=params)
        partial = get_as(client, world.root, data=params, **HX)
        export = get_as(client, world.root, EXPORT_URL, params)

        for response in (page, partial, export):
            assert response.status_code == 200
        assert page.context["form"].errors == {}
        assert shown(page) == wanted
        for response in (page, partial):
            rows = re.findall(r'<tr id="event-(\d+)">', response.content.decode())
            assert [int(sequence) for sequence in rows] == wanted
            assert b'class="error-banner"' not in response.content
        assert [int(row[0]) for row in csv_rows(export)] == wanted

    @pytest.mark.parametrize(
        "params",
        [
            {"date_to": "10000-01-01"},
            {"date_from": "0000-12-31"},
            {"date_to": "9999-12-32"},
            {"date_from": "-0001-01-01"},
            {"date_from": "99999999999999999999-01-01"},
        ],
        ids=param_id,
    )
    def test_a_date_outside_the_calendar_is_refused_with_a_message(self, client, world, params):
        [field] = params
        page = get_as(client, world.root, data=params)
        partial = get_as(client, world.root, data=params, **HX)
        export = get_as(client, world.root, EXPORT_URL, params)

        assert page.context["form"].errors[field] == ["Enter a valid date."]
        assert shown(page) == []
        for response in (page, partial):
            assert response.status_code == 200
            assert b'class="error-banner"' in response.content
            assert b"Enter a valid date." in response.content
            assert b'<tr id="event-' not in response.content
        assert export.status_code == 200 and csv_rows(export) == []

    def test_choices_offer_only_visible_teams_and_keys(self, client, world):
        form = get_as(client, world.alice).context["form"]
        assert set(form.fields["team"].queryset) == {world.team_a}
        assert set(form.fields["key"].queryset) == {world.alice_key, world.key_a}


@pytest.fixture
def long_log(user, api_key):
    """120 events in alice's log; even sequences are deletions, odd ones key changes."""
    for number in range(1, 121):
        audit.record(
            action=Action.THREAD_DELETED if number % 2 == 0 else Action.KEY_ROTATED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=api_key,
            thread_id=f"thread_{number:03}",
        )


@pytest.mark.usefixtures("long_log")
class TestPaging:
    def test_pages_newest_first_by_sequence(self, user_client):
        first = user_client.get(URL)
        assert shown(first) == list(range(120, 70, -1))
        assert (first.context["page"].newer, first.context["page"].older) == (None, 71)
        assert b'href="?before=71"' in first.content
        second = user_client.get(URL, {"before": 71})
        assert shown(second) == list(range(70, 20, -1))
        assert (second.context["page"].newer, second.context["page"].older) == (70, 21)
        third = user_client.get(URL, {"before": 21})
        assert shown(third) == list(range(20, 0, -1))
        assert (third.context["page"].newer, third.context["page"].older) == (20, None)
        assert b"Older events" not in third.content

    def test_newer_link_goes_back(self, user_client):
        back = user_client.get(URL, {"after": 70})
        assert shown(back) == list(range(120, 70, -1))
        assert (back.context["page"].newer, back.context["page"].older) == (None, 71)
        middle = user_client.get(URL, {"after": 20})
        assert shown(middle) == list(range(70, 20, -1))
        assert middle.context["page"].newer == 70

    def test_paging_keeps_the_filters(self, user_client):
        first = user_client.get(URL, {"action": Action.THREAD_DELETED})
        assert shown(first) == list(range(120, 20, -2))
        assert b'href="?action=thread.deleted&amp;before=22"' in first.content
        second = user_client.get(URL, {"action": Action.THREAD_DELETED, "before": 22})
        assert shown(second) == list(range(20, 0, -2))
        assert second.context["page"].older is None

    def test_page_costs_the_same_deep_in_the_log(self, user_client):
        with CaptureQueriesContext(connection) as first:
            user_client.get(URL)
        with CaptureQueriesContext(connection) as deep:
            user_client.get(URL, {"before": 21})
        assert len(first) == len(deep)
        assert all("OFFSET" not in query["sql"] for query in deep)

    def test_invalid_cursor_shows_the_first_page(self, user_client):
        for cursor in ("abc", "-5", "0", ""):
            assert shown(user_client.get(URL, {"before": cursor, "after": cursor}))[0] == 120

    def test_csv_holds_the_whole_filtered_set(self, user_client):
        params = {"action": Action.THREAD_DELETED}
        pages = shown(user_client.get(URL, params))
        pages += shown(user_client.get(URL, {**params, "before": pages[-1]}))
        rows = csv_rows(user_client.get(EXPORT_URL, {**params, "before": 50}))
        assert [int(row[0]) for row in rows] == pages == list(range(120, 0, -2))


class TestHtmx:
    def test_htmx_request_gets_the_rows_partial(self, client, world):
        response = get_as(client, world.alice, data={"team": world.team_a.pk}, **HX)
        content = response.content.decode()
        assert content.lstrip().startswith('<section id="rows"')
        assert "HX-Request" in response["Vary"]
        assert "<html" not in content
        assert "<form" not in content
        assert re.findall(r'<tr id="event-(\d+)">', content) == [
            str(sequence)
            for sequence in sequences(world.events.team_a_delete, world.events.team_a_member)
        ]
        assert f'{EXPORT_URL}?team={world.team_a.pk}"' in content
        assert_no_secret(response.content)

    def test_history_restore_gets_the_full_page(self, client, world):
        response = get_as(client, world.alice, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HX)
        assert b"<html" in response.content

    def test_full_page_has_a_working_form_without_js(self, client, world):
        content = get_as(client, world.alice).content.decode()
        assert f'<form class="card toolbar" method="get" action="{URL}"' in content
        assert f'hx-get="{URL}"' in content
        assert 'hx-target="#rows"' in content
        for name in ("action", "actor", "team", "key", "outcome", "date_from", "date_to"):
            assert f'<label for="id_{name}">' in content
        assert '<section id="rows"' in content
        assert_no_secret(content.encode())


class TestExport:
    def test_download_headers(self, user_client):
        response = user_client.get(EXPORT_URL)
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert re.fullmatch(
            r'attachment; filename="audit-\d{8}-\d{6}\.csv"', response["Content-Disposition"]
        )
        assert csv_rows(response) == []

    def test_row_values(self, client, world):
        event = world.events.team_a_delete
        (row,) = csv_rows(get_as(client, world.alice, EXPORT_URL, {"key": world.key_a.pk}))
        assert row == [
            str(event.sequence),
            "2025-03-02T00:00:00+00:00",
            "alice",
            "thread.deleted",
            "success",
            "Team A",
            world.key_a.hint,
            "thread_abc123",
            "200",
            "req_delete_a",
            "",
            "",
            '{"already_gone": false}',
            event.hash,
        ]

    def test_personal_event_and_client(self, user_client, user, api_key):
        request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.9", HTTP_USER_AGENT="Firefox")
        audit.record(
            action=Action.KEY_REVOKED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=api_key,
            origin=Origin.from_request(request),
        )
        (row,) = csv_rows(user_client.get(EXPORT_URL))
        assert (row[5], row[10], row[11], row[8]) == ("personal", "192.0.2.9", "Firefox", "")

    def test_formula_injection_is_defused(self, client, make_user, make_key):
        attacker = make_user("=HYPERLINK(evil)")
        key = make_key(owner=attacker)
        request = RequestFactory().get("/", HTTP_USER_AGENT="@SUM(1+1)")
        audit.record(
            action=Action.THREAD_IMPORTED,
            outcome=Outcome.REFUSED,
            actor=attacker,
            api_key=key,
            thread_id="+thread",
            request_id="-2+3",
            origin=Origin.from_request(request),
        )
        (row,) = csv_rows(get_as(client, attacker, EXPORT_URL))
        assert row[2] == "'=HYPERLINK(evil)"
        assert row[7] == "'+thread"
        assert row[9] == "'-2+3"
        assert row[11] == "'@SUM(1+1)"
        assert row[12] == "{}"

    def test_no_secret_in_the_export(self, client, world):
        response = get_as(client, world.root, EXPORT_URL)
        assert_no_secret(b"".join(response.streaming_content))
