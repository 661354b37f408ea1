"""The overview: each figure as each role sees it, its empty states, its chart, its queries."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.threads_helpers import body, url
from threads_app import audit, selectors
from threads_app.models import ApiKey, AuditEvent, Membership, TrackedThread
from threads_app.selectors import DayActivity
from threads_app.views.overview import activity_chart

pytestmark = pytest.mark.django_db

State = TrackedThread.State
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
Role = Membership.Role
ZERO = dict.fromkeys(State.values, 0)
MAX_QUERIES = 6  # session, user, keys with their counts, activity, invitations, setup


def track(api_key, state=State.ACTIVE, count=1):
    """Rows only: counting them needs no upstream."""
    for _ in range(count):
        n = TrackedThread.objects.count()
        TrackedThread.objects.create(thread_id=f"thread_ov{n:04d}", api_key=api_key, state=state)


def happened(api_key, action, outcome=Outcome.SUCCESS, count=1):
    for n in range(count):
        audit.record(action=action, outcome=outcome, api_key=api_key, thread_id=f"thread_ev{n}")


@pytest.fixture
def world(make_user, make_team, make_key, django_user_model):
    """Team Blue (owner, member, viewer) with a key; owner's and member's personal keys; an
    outsider with a key of their own; a superuser in no team."""
    users = {name: make_user(name) for name in ("owner", "member", "viewer", "outsider")}
    users["root"] = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    team = make_team(
        "Blue",
        {users["owner"]: Role.OWNER, users["member"]: Role.MEMBER, users["viewer"]: Role.VIEWER},
    )
    keys = {
        "team": make_key(team=team, label="Blue key", created_by=users["owner"]),
        "owner": make_key(owner=users["owner"], label="Owner's own"),
        "member": make_key(owner=users["member"], label="Member's own"),
        "outsider": make_key(owner=users["outsider"], label="Outsider's own"),
    }
    track(keys["team"], count=3)
    track(keys["team"], State.GONE)
    track(keys["owner"], count=2)
    track(keys["owner"], State.DELETED)
    track(keys["member"], State.DELETING)
    track(keys["outsider"], count=4)

    happened(keys["team"], Action.THREAD_CREATED, count=2)
    happened(keys["team"], Action.THREAD_DELETED)
    happened(keys["team"], Action.THREAD_DELETED, Outcome.ALREADY_GONE)
    happened(keys["team"], Action.THREAD_DELETED, Outcome.FAILED)  # not a deletion
    happened(keys["team"], Action.THREAD_DELETE_INTENT)  # nor is an intent
    happened(keys["team"], Action.THREAD_IMPORTED)  # nor an import a creation
    happened(keys["owner"], Action.THREAD_CREATED)
    happened(keys["owner"], Action.THREAD_DELETED)
    happened(keys["outsider"], Action.THREAD_CREATED, count=5)
    happened(keys["outsider"], Action.THREAD_DELETED, count=3)
    return users, keys


EXPECTED_KEYS = {
    "owner": {
        "Blue key": {State.ACTIVE: 3, State.GONE: 1},
        "Owner's own": {State.ACTIVE: 2, State.DELETED: 1},
    },
    "member": {"Blue key": {State.ACTIVE: 3, State.GONE: 1}, "Member's own": {State.DELETING: 1}},
    "viewer": {"Blue key": {State.ACTIVE: 3, State.GONE: 1}},
    "outsider": {"Outsider's own": {State.ACTIVE: 4}},
}
EXPECTED_KEYS["root"] = {k: v for seen in EXPECTED_KEYS.values() for k, v in seen.items()}
# (created, deleted) today, as each may see them.
# (created, imported, deleted): an import is counted, as an import, apart from creations.
EXPECTED_TODAY = {
    "owner": (3, 1, 3),
    "member": (2, 1, 2),
    "viewer": (2, 1, 2),
    "outsider": (5, 0, 3),
    "root": (8, 1, 6),
}


@pytest.mark.parametrize("who", list(EXPECTED_KEYS))
def test_each_role_sees_the_figures_of_its_scope(world, who):
    users, _keys = world

    summary = selectors.overview(users[who])

    counts = {figures.key.label: figures.counts for figures in summary.keys}
    assert counts == {label: ZERO | seen for label, seen in EXPECTED_KEYS[who].items()}
    assert len(summary.days) == selectors.OVERVIEW_DAYS
    assert summary.days[-1].day == timezone.now().date()
    today = summary.days[-1]
    assert (today.created, today.imported, today.deleted) == EXPECTED_TODAY[who]
    assert (summary.created, summary.imported, summary.deleted) == EXPECTED_TODAY[who]  # only today
    assert summary.tracked == sum(
        n for seen in EXPECTED_KEYS[who].values() for s, n in seen.items() if s != State.DELETED
    )


@pytest.mark.parametrize("who", list(EXPECTED_KEYS))
def test_the_page_names_only_keys_in_scope(world, who):
    users, keys = world
    client = Client()
    client.force_login(users[who])

    text = body(client.get(url("overview")))

    for key in keys.values():
        shown = f">{key.label}</a>".replace("'", "&#x27;") in text
        assert shown == (key.label in EXPECTED_KEYS[who]), key.label
    created, imported, deleted = EXPECTED_TODAY[who]
    assert f"{created} created, {imported} imported and {deleted} deleted" in text


def test_the_days_are_whole_utc_days_ending_today(world):
    users, _keys = world
    later = timezone.now() + timedelta(days=5)

    days = selectors.overview(users["owner"], now=later).days

    assert [day.day for day in days][-1] == later.date()
    assert (days[-6].created, days[-6].deleted) == (3, 3)  # five days before "today"
    assert sum(day.created + day.deleted for day in days) == 6
    past = selectors.overview(users["owner"], now=timezone.now() + timedelta(days=30))
    assert past.created == past.deleted == 0  # 30 days on, today's events are out of range


def test_keys_failing_or_unused_for_30_days_need_attention(world, make_key):
    users, keys = world
    now = timezone.now()
    owner = users["owner"]
    ApiKey.objects.filter(pk=keys["team"].pk).update(failing=True, last_error="Refused (401)")
    ApiKey.objects.filter(pk=keys["owner"].pk).update(last_used_at=now - timedelta(days=31))
    never = make_key(owner=owner, label="Never used", secret="sk-overview-never-used-000")
    ApiKey.objects.filter(pk=never.pk).update(created_at=now - timedelta(days=40))
    make_key(
        owner=owner, label="New and unused", secret="sk-overview-new-unused-000"
    )  # added today: not late yet
    recent = make_key(owner=owner, label="Used lately", secret="sk-overview-used-lately-00")
    ApiKey.objects.filter(pk=recent.pk).update(
        created_at=now - timedelta(days=90), last_used_at=now - timedelta(days=29)
    )
    revoked = make_key(owner=owner, label="Revoked", secret="sk-overview-revoked-000000")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=now, failing=True)

    attention = {f.key.label: f.attention for f in selectors.overview(owner).needing_attention}

    assert attention == {
        "Blue key": "Failing: Refused (401)",
        "Owner's own": "Unused for 31 days",
        "Never used": "Never used since it was added 40 days ago",
    }
    viewer_sees = selectors.overview(users["viewer"]).needing_attention
    assert [f.key.label for f in viewer_sees] == ["Blue key"]
    text = body(_client_of(owner).get(url("overview")))
    assert "Refused (401)" in text and "Unused for 31 days" in text
    assert url("key_list") in text


def _client_of(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_new_user_gets_empty_states(make_user):
    text = body(_client_of(make_user("newcomer")).get(url("overview")))

    assert "Get started" in text and "0 of 3 steps done" in text and url("key_create") in text
    assert url("thread_create") not in text  # no "New thread" before a key exists
    assert "No thread was created, imported or deleted in the last 30 days." in text
    assert "<svg" not in text


def test_a_key_without_threads_says_how_to_add_some(user_client, api_key):
    text = body(user_client.get(url("overview")))

    assert "1 of 3 steps done" in text
    assert url("thread_create") in text and url("thread_import") in text
    assert "Every live key works" in text


def test_pending_invitations_are_pointed_to(user_client, user, make_team):
    from threads_app.models import Invitation

    Invitation.objects.create(team=make_team("Red"), identifier=user.username, role=Role.MEMBER)

    text = body(user_client.get(url("overview")))

    assert "1 pending team invitation." in text and url("invitation_list") in text


@pytest.mark.parametrize("who", ["owner", "root"])
def test_queries_do_not_grow_with_keys_or_rows(world, who, make_key):
    users, _keys = world
    client = _client_of(users[who])
    client.get(url("overview"))  # the session's first use

    with CaptureQueriesContext(connection) as few:
        client.get(url("overview"))
    for n in range(5):
        key = make_key(owner=users["owner"], label=f"More {n}", secret=f"sk-overview-more-{n:010d}")
        track(key, count=3)
        happened(key, Action.THREAD_CREATED, count=2)
    with CaptureQueriesContext(connection) as many:
        text = body(client.get(url("overview")))

    assert "More 4" in text
    assert len(many) == len(few) <= MAX_QUERIES


def test_the_chart_is_svg_without_script_or_inline_style(world):
    users, _keys = world

    response = _client_of(users["owner"]).get(url("overview"))

    text = body(response)
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert 'role="img"' in svg and 'aria-labelledby="activity-title"' in svg
    assert '<title id="activity-title">' in svg and '<desc id="activity-desc">' in svg
    assert "style=" not in text and "<script>" not in text.replace("<script src=", "")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    # The text alternative: every day in a table, today's figures included.
    today = timezone.now().date()
    row = re.search(rf'datetime="{today:%Y-%m-%d}">[^<]+</time></th>(.*?)</tr>', text)
    assert row and re.findall(r'<td class="number">(\d+)</td>', row[1]) == ["3", "1", "3"]
    assert len(re.findall(r'<rect class="bar (created|imported|deleted)"', svg)) == 3  # today's
    # Labelled axes: the days and the threads.
    assert ">Day (UTC)</text>" in svg and ">Threads</text>" in svg


def test_bars_are_drawn_to_one_scale():
    today = timezone.now().date()
    days = [DayActivity(today - timedelta(days=2 - n)) for n in range(3)]
    days[1] = DayActivity(days[1].day, created=4, imported=1, deleted=2)
    days[2] = DayActivity(days[2].day, created=0, deleted=5)

    chart = activity_chart(days)

    heights = {(bar.series, n // 3): bar.height for n, bar in enumerate(chart.bars)}
    assert chart.ticks[-1].value == 5  # the highest count, rounded up to 1, 2 or 5 times 10^n
    assert heights[("created", 1)] == pytest.approx(2 * heights[("deleted", 1)], abs=0.02)
    assert heights[("deleted", 1)] == pytest.approx(2 * heights[("imported", 1)], abs=0.02)
    assert heights[("deleted", 2)] == pytest.approx(chart.baseline - chart.ticks[-1].y)
    assert heights[("created", 0)] == heights[("deleted", 0)] == heights[("created", 2)] == 0
    assert [bar.x for bar in chart.bars] == sorted(bar.x for bar in chart.bars)
    assert all(chart.left <= bar.x and bar.x + bar.width <= chart.right for bar in chart.bars)
    assert chart.labels[-1].text == f"{today:%b} {today.day}"


@pytest.mark.parametrize(
    ("highest", "top"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (250, 500)]
)
def test_the_scale_ends_on_a_round_number(highest, top):
    today = timezone.now().date()

    chart = activity_chart([DayActivity(today, created=highest)])

    assert chart.ticks[-1].value == top


def test_logging_in_lands_on_the_overview(client, make_user):
    make_user("sam")

    response = client.post(url_login(), {"login": "sam", "password": "pw-sam"})

    assert response.status_code == 302 and response["Location"] == url("overview")
    text = body(client.get(response["Location"]))
    assert '<a href="/overview/" aria-current="page">Overview</a>' in text


def test_a_next_page_still_wins_over_the_overview(client, make_user):
    make_user("sam")

    response = client.post(url_login() + "?next=/keys/", {"login": "sam", "password": "pw-sam"})

    assert response["Location"] == url("key_list")


def url_login():
    from django.urls import reverse

    return reverse("account_login")
