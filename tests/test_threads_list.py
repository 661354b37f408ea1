"""The thread list: who sees what, search, filters, keyset paging, empty states, query count."""

import itertools
import re
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import pytest
from django.db.models.functions import Coalesce
from django.utils.html import escape
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import OTHER_TEST_KEY
from tests.threads_helpers import HX, body, is_partial, url
from threads_app.models import ApiKey, Membership, TrackedThread
from threads_app.selectors import ALL_STATES

pytestmark = pytest.mark.django_db

State = TrackedThread.State
_ids = itertools.count()


def tracked(api_key, count, **fields):
    """`count` tracked rows (no upstream needed to list them), oldest first."""
    fields.setdefault("tracked_by", api_key.owner or api_key.created_by)
    return [
        TrackedThread.objects.create(
            api_key=api_key, thread_id=f"thread_listed{next(_ids):05d}", **fields
        )
        for _ in range(count)
    ]


def row_ids(text):
    return [int(pk) for pk in re.findall(r'<tr id="thread-(\d+)"', text)]


def test_list_shows_my_threads_newest_first_with_their_details(user_client, api_key, make_thread):
    older = make_thread(api_key, label="older one")
    newer = make_thread(api_key, label="newer one")

    text = body(user_client.get(url("thread_list")))

    assert row_ids(text) == [newer.pk, older.pk]
    assert "newer one" in text
    assert f'data-copy="{newer.thread_id}"' in text
    assert escape(api_key.label) in text and api_key.hint in text
    assert "alice" in text  # who tracked it
    assert "data-relative" in text and newer.upstream_created_at.strftime("%Y-%m-%d") in text
    assert '<span class="badge active">active</span>' in text
    assert 'aria-current="page"' in text


def test_each_row_shows_its_time_state_and_links_as_worked_out_for_it(user_client, api_key):
    created = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    live = tracked(api_key, 1, label="live one", upstream_created_at=created)[0]
    untimed = tracked(api_key, 1, label="tracked only")[0]  # no upstream time: when tracked
    deleted = tracked(api_key, 1, label="deleted one", state=State.DELETED)[0]

    text = body(user_client.get(url("thread_list", query=f"state={ALL_STATES}")))
    rows = dict(zip(row_ids(text), re.findall(r"<tr id=.*?</tr>", text, re.S), strict=True))

    live_row = rows[live.pk]
    assert '<time datetime="2025-03-04T05:06:07.890000+00:00" data-relative>' in live_row
    assert ">2025-03-04 05:06 UTC</time>" in live_row
    assert f'href="/threads/{live.pk}/"' in live_row
    assert f'action="/threads/{live.pk}/delete/"' in live_row
    assert f'hx-get="/threads/{live.pk}/delete/?row" hx-target="#dialog"' in live_row
    assert "Select live one" in live_row and "hx-confirm" not in live_row
    tracked_at = untimed.tracked_at
    assert f'<time datetime="{tracked_at.isoformat()}" data-relative>' in rows[untimed.pk]
    assert f">{tracked_at:%Y-%m-%d %H:%M} UTC</time>" in rows[untimed.pk]
    deleted_row = rows[deleted.pk]
    assert '<span class="badge deleted-state">deleted</span>' in deleted_row
    assert f'href="/threads/{deleted.pk}/"' in deleted_row
    assert "/delete/" not in deleted_row and 'name="thread"' not in deleted_row


def test_htmx_request_gets_only_the_rows(user_client, api_key, make_thread):
    thread = make_thread(api_key, label="partial row")

    text = body(user_client.get(url("thread_list"), **HX))

    assert is_partial(text)
    assert text.lstrip().startswith('<div id="rows"')
    assert 'hx-trigger="threadsChanged from:body"' in text
    assert row_ids(text) == [thread.pk]


def test_list_varies_on_hx_request(user_client, api_key, make_thread):
    make_thread(api_key)

    for response in (user_client.get("/"), user_client.get("/", **HX)):
        assert "HX-Request" in response["Vary"]


def test_list_shows_team_threads_but_not_other_peoples(
    user_client, user, other_user, api_key, make_key, make_team
):
    team = make_team("Blue", {user: Membership.Role.VIEWER, other_user: Membership.Role.OWNER})
    team_key = make_key(team=team, created_by=other_user)
    team_thread = tracked(team_key, 1, label="team thread")[0]
    foreign = tracked(make_key(owner=other_user, label="bob's key"), 1, label="bob's thread")[0]
    mine = tracked(api_key, 1)[0]

    text = body(user_client.get(url("thread_list")))

    assert row_ids(text) == [mine.pk, team_thread.pk]
    assert "bob&#x27;s thread" not in text and foreign.thread_id not in text
    # A viewer may not delete the team's thread; the owner of a personal key may.
    assert url("thread_delete", team_thread.pk) not in text
    assert url("thread_delete", mine.pk) in text


def test_list_query_count_is_flat(
    user_client, user, api_key, make_key, make_team, django_assert_max_num_queries
):
    team = make_team("Blue", {user: Membership.Role.MEMBER})
    tracked(api_key, 25)
    tracked(make_key(team=team), 25)

    # The session, the user (with what the two-factor check needs: no query of its own), the
    # page's own reads.
    with django_assert_max_num_queries(6):
        full = user_client.get(url("thread_list"))
    with django_assert_max_num_queries(6):
        partial = user_client.get(url("thread_list", query="q=thread&state=all"), **HX)

    assert len(row_ids(body(full))) == 25
    assert len(row_ids(body(partial))) == 25


def _count_text(text):
    """The list's "N threads" line, its markup dropped."""
    found = re.search(r'<p id="list-count" class="list-count">(.*?)</p>', text, re.S)
    return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split()) if found else None


def test_the_count_comes_from_the_counters_without_a_query(
    user_client, user, api_key, make_key, make_team, django_assert_max_num_queries
):
    team_key = make_key(team=make_team("Blue", {user: Membership.Role.MEMBER}))
    tracked(api_key, 30)
    tracked(api_key, 2, state=State.GONE)
    tracked(api_key, 3, state=State.DELETED)
    tracked(team_key, 4)

    with django_assert_max_num_queries(5):  # session, user, keys with counts, page, invitations
        text = body(user_client.get(url("thread_list")))
    assert _count_text(text) == "36 threads"
    cases = {
        f"key={api_key.pk}": "32 threads match these filters",
        "state=gone": "2 threads match these filters",
        f"state={ALL_STATES}": "39 threads match these filters",
        "state=deleted": "3 threads match these filters",
        f"key={team_key.pk}&state=active": "4 threads match these filters",
    }
    for query, expected in cases.items():
        assert _count_text(body(user_client.get(url("thread_list", query=query)))) == expected


def test_a_search_is_counted_on_its_page_or_asked_for_apart(user_client, api_key, monkeypatch):
    tracked(api_key, 3, label="acme one")
    tracked(api_key, 30, label="acme many")

    one_page = body(user_client.get(url("thread_list", query="q=one")))
    assert _count_text(one_page) == "3 threads match “one”"

    # Several pages: the rows come at once, the count in a request of its own (htmx on load,
    # a link without JavaScript), which stops counting at LIST_COUNT_MAX.
    several = body(user_client.get(url("thread_list", query="q=acme")))
    assert _count_text(several) == "Count the matching threads"
    assert 'href="/?q=acme&amp;count=1"' in several and 'hx-trigger="load"' in several
    counted = body(user_client.get(url("thread_list", query="q=acme&count=1"), **HX))
    assert _count_text(counted) == "33 threads match “acme”"
    monkeypatch.setattr("threads_app.selectors.LIST_COUNT_MAX", 20)
    capped = body(user_client.get(url("thread_list", query="q=acme&count=1")))
    assert _count_text(capped).startswith("More than 20 threads match “acme” (counting stops at 20")


def test_a_row_links_its_id_without_a_label_and_shows_the_matched_pair(user_client, api_key):
    labelled = tracked(api_key, 1, label="Refund", metadata={"customer": "acme-3", "n": "1"})[0]
    bare = tracked(api_key, 1, metadata={"first": "x", "customer": "ACME-3 west"})[0]

    text = body(user_client.get(url("thread_list", query="q=acme-3")))
    rows = dict(zip(row_ids(text), re.findall(r"<tr id=.*?</tr>", text, re.S), strict=True))

    assert (
        f'<a id="thread-{bare.pk}-link" href="/threads/{bare.pk}/"><code class="id">'
        in rows[bare.pk]
    )
    assert "(no label)" not in text
    assert "<code>customer</code> <mark>ACME-3 west</mark>" in rows[bare.pk]  # not "first"
    assert "<code>customer</code> <mark>acme-3</mark>" in rows[labelled.pk]
    assert "+1" in rows[labelled.pk]  # the other pair
    unsearched = body(user_client.get(url("thread_list")))
    assert "<code>first</code> x" in unsearched and "<mark>" not in unsearched


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("THREAD_SEARCH", ["by id"]),  # case does not matter
        ("quarterly", ["by label"]),
        ("acme", ["by metadata"]),
        ("nothing-like-it", []),
    ],
)
def test_search_matches_id_label_and_metadata_values(
    user_client, api_key, make_thread, query, expected
):
    TrackedThread.objects.create(api_key=api_key, thread_id="thread_search_me", label="by id")
    make_thread(api_key, label="by label: Quarterly report")
    make_thread(api_key, label="by metadata", metadata={"customer": "ACME Corp"})

    text = body(user_client.get(url("thread_list", query=f"q={query}"), **HX))

    labels = [
        thread.label.split(":")[0] for thread in TrackedThread.objects.filter(pk__in=row_ids(text))
    ]
    assert labels == expected
    if not expected:
        assert "No thread matches “nothing-like-it”" in text


def test_search_input_searches_as_you_type(user_client, api_key):
    text = body(user_client.get(url("thread_list")))

    assert 'hx-trigger="submit, input delay:300ms"' in text and 'hx-sync="this:replace"' in text
    assert 'type="search"' in text and 'method="get"' in text


def test_key_filter_lists_only_that_keys_threads(user_client, user, other_user, api_key, make_key):
    second_key = make_key(owner=user, label="second key", secret=OTHER_TEST_KEY)
    mine = tracked(api_key, 2)
    seconds = tracked(second_key, 2)
    foreign_key = make_key(owner=other_user)
    tracked(foreign_key, 2)

    text = body(user_client.get(url("thread_list", query=f"key={second_key.pk}")))
    assert set(row_ids(text)) == {thread.pk for thread in seconds}
    assert f'<option value="{second_key.pk}" selected>' in text
    assert f'<option value="{foreign_key.pk}"' not in text  # not a key alice may see

    # A key id the user may not see is ignored: nothing of that key shows up.
    text = body(user_client.get(url("thread_list", query=f"key={foreign_key.pk}")))
    assert set(row_ids(text)) == {thread.pk for thread in mine + seconds}


def test_deleted_threads_leave_the_list_but_the_state_filter_shows_them(user_client, api_key):
    active = tracked(api_key, 1)[0]
    gone = tracked(api_key, 1, state=State.GONE)[0]
    deleted = tracked(api_key, 1, state=State.DELETED)[0]

    def listed(query=""):
        return set(row_ids(body(user_client.get(url("thread_list", query=query)))))

    assert listed() == {active.pk, gone.pk}
    assert listed("state=deleted") == {deleted.pk}
    assert listed("state=gone") == {gone.pk}
    assert listed("state=active") == {active.pk}
    assert listed("state=all") == {active.pk, gone.pk, deleted.pk}
    text = body(user_client.get(url("thread_list", query="state=all")))
    assert '<span class="badge gone">gone upstream</span>' in text
    assert '<span class="badge deleted-state">deleted</span>' in text


@pytest.mark.parametrize("key_count", [1, 3])
def test_keyset_paging_walks_60_threads_without_gaps_or_duplicates(
    user_client, api_key, make_key, user, key_count
):
    keys = [api_key] + [
        make_key(owner=user, secret=f"sk-test-paging-{n}-0123456789") for n in range(key_count - 1)
    ]
    # Round-robin over the keys: each page mixes them, as each key is read on its own index.
    rows = [tracked(keys[n % key_count], 1)[0] for n in range(60)]
    all_ids = [thread.pk for thread in reversed(rows)]

    def follow(link_name, start):
        pages, next_url = [], start
        while next_url:
            text = body(user_client.get(next_url, **HX))
            pages.append(row_ids(text))
            match = re.search(
                rf'<a href="([^"]+)" hx-get="[^"]+"(?: rel="\w+")?>{link_name}</a>', text
            )
            next_url = match and match.group(1).replace("&amp;", "&")
        return pages

    older_pages = follow("Older", url("thread_list"))
    assert [len(page) for page in older_pages] == [25, 25, 10]
    assert list(itertools.chain(*older_pages)) == all_ids

    last_page_start = url("thread_list", query=f"before={older_pages[1][-1]}")
    newer_pages = follow("Newer", last_page_start)
    assert newer_pages[0] == older_pages[2]
    newer_ids = list(itertools.chain(*newer_pages))
    assert len(newer_ids) == len(set(newer_ids)) == 60
    assert sorted(newer_ids, reverse=True) == all_ids


def test_paging_keeps_the_search_and_filters(user_client, api_key):
    tracked(api_key, 30, label="match")
    tracked(api_key, 5, label="other")

    text = body(user_client.get(url("thread_list", query="q=match&state=all")))

    assert len(row_ids(text)) == 25
    older = re.search(r'<a href="([^"]+)"[^>]*rel="next">Older</a>', text).group(1)
    assert "q=match" in older and "state=all" in older and "before=" in older
    rest = body(user_client.get(older.replace("&amp;", "&")))
    assert len(row_ids(rest)) == 5
    assert "Newest" in rest


def test_empty_state_without_keys_says_to_add_one(user_client):
    text = body(user_client.get(url("thread_list")))

    assert "add one first" in text
    assert url("key_create") in text


def test_empty_state_with_a_key_says_to_create_or_import(user_client, api_key):
    text = body(user_client.get(url("thread_list")))

    assert "No threads tracked yet" in text
    assert url("thread_create") in text and url("thread_import") in text


def test_empty_state_for_filters(user_client, api_key):
    tracked(api_key, 1)

    text = body(user_client.get(url("thread_list", query="state=deleted")))

    assert "No threads match these filters" in text


def test_list_requires_login(client):
    response = client.get(url("thread_list"))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- Filters and sorts ------------------------------------------------------------------------


def on_day(day, hour=12):
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def listed(client, query="", **headers):
    return row_ids(body(client.get(url("thread_list", query=query), **headers)))


def test_team_filter_lists_the_teams_threads(user_client, user, api_key, make_key, make_team):
    blue = make_team("Blue", {user: Membership.Role.MEMBER})
    green = make_team("Green", {user: Membership.Role.VIEWER})
    blues = tracked(make_key(team=blue), 2)
    tracked(make_key(team=green), 2)
    tracked(api_key, 2)

    text = body(user_client.get(url("thread_list", query=f"team={blue.pk}")))

    assert set(row_ids(text)) == {thread.pk for thread in blues}
    assert f'<option value="{blue.pk}" selected>Blue</option>' in text
    assert f'<option value="{green.pk}">Green</option>' in text


def test_team_filter_offers_only_the_users_teams_and_ignores_others(
    user_client, user, other_user, api_key, make_key, make_team
):
    elsewhere = make_team("Elsewhere", {other_user: Membership.Role.OWNER})
    tracked(make_key(team=elsewhere, created_by=other_user), 1)
    mine = tracked(api_key, 1)

    text = body(user_client.get(url("thread_list", query=f"team={elsewhere.pk}")))

    assert "Elsewhere" not in text
    assert set(row_ids(text)) == {thread.pk for thread in mine}


def test_superuser_filters_by_any_team(client, make_user, user, make_key, make_team):
    team = make_team("Blue", {user: Membership.Role.OWNER})
    theirs = tracked(make_key(team=team, created_by=user), 2)
    tracked(make_key(owner=user, secret="sk-test-personal-0123456789"), 2)
    client.force_login(make_user("root", is_superuser=True))

    assert set(listed(client, f"team={team.pk}")) == {thread.pk for thread in theirs}


def test_tracked_by_filter_takes_a_username_in_any_case(
    user_client, user, other_user, api_key, make_key, make_team
):
    team = make_team("Blue", {user: Membership.Role.MEMBER, other_user: Membership.Role.MEMBER})
    team_key = make_key(team=team, created_by=other_user)
    by_bob = tracked(team_key, 2, tracked_by=other_user)
    by_alice = tracked(team_key, 1, tracked_by=user) + tracked(api_key, 1)

    assert set(listed(user_client, "tracked_by=BOB")) == {thread.pk for thread in by_bob}
    assert set(listed(user_client, "tracked_by=alice")) == {thread.pk for thread in by_alice}
    text = body(user_client.get(url("thread_list", query="tracked_by=nobody")))
    assert row_ids(text) == [] and "No threads match these filters" in text


def test_created_date_range_counts_whole_utc_days_and_falls_back_to_tracking(user_client, api_key):
    before = tracked(api_key, 1, upstream_created_at=on_day(9, 23))[0]
    first = tracked(api_key, 1, upstream_created_at=on_day(10, 0))[0]
    last = tracked(api_key, 1, upstream_created_at=datetime(2026, 3, 11, 23, 59, 59, tzinfo=UTC))
    after = tracked(api_key, 1, upstream_created_at=on_day(12, 0))[0]
    # Not seen upstream yet: its tracking time counts.
    unchecked = tracked(api_key, 1)[0]
    TrackedThread.objects.filter(pk=unchecked.pk).update(tracked_at=on_day(10, 6))

    assert set(listed(user_client, "date_from=2026-03-10&date_to=2026-03-11")) == {
        first.pk,
        last[0].pk,
        unchecked.pk,
    }
    assert set(listed(user_client, "date_from=2026-03-12")) >= {after.pk}
    assert before.pk not in listed(user_client, "date_from=2026-03-10")
    assert set(listed(user_client, "date_to=2026-03-09")) == {before.pk}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("date_from=2026-02-30", "Enter a valid date"),
        ("date_to=10000-01-01", "Enter a valid date"),
        ("date_from=-1", "Enter a valid date"),
        ("date_from=2026-03-12&date_to=2026-03-10", "The end date is before the start date."),
        ("tracked_by=" + "x" * 151, "at most 150 characters"),
        ("q=" + "x" * 201, "at most 200 characters"),
    ],
)
def test_filters_that_cannot_be_used_say_why_and_list_nothing(user_client, api_key, query, message):
    tracked(api_key, 3)

    for headers in ({}, HX):
        response = user_client.get(url("thread_list", query=query), **headers)
        text = body(response)
        assert response.status_code == 200
        assert "These filters cannot be used, so nothing is shown" in text
        assert message in text
        assert row_ids(text) == []


@pytest.mark.parametrize("query", ["date_from=0001-01-01", "date_to=9999-12-31"])
def test_the_first_and_last_days_a_date_field_takes_are_usable(user_client, api_key, query):
    threads = tracked(api_key, 2)

    assert set(listed(user_client, query)) == {thread.pk for thread in threads}


def test_sorts_newest_oldest_and_label_a_to_z(user_client, api_key):
    b = tracked(api_key, 1, label="banana", upstream_created_at=on_day(3))[0]
    a = tracked(api_key, 1, label="Apple", upstream_created_at=on_day(1))[0]
    c = tracked(api_key, 1, label="cherry", upstream_created_at=on_day(2))[0]
    empty = tracked(api_key, 1, label="", upstream_created_at=on_day(4))[0]

    assert listed(user_client) == [empty.pk, b.pk, c.pk, a.pk]  # newest created first
    assert listed(user_client, "sort=newest") == [empty.pk, b.pk, c.pk, a.pk]
    assert listed(user_client, "sort=oldest") == [a.pk, c.pk, b.pk, empty.pk]
    # A to Z in any case; no label first.
    assert listed(user_client, "sort=label") == [empty.pk, a.pk, b.pk, c.pk]
    text = body(user_client.get(url("thread_list", query="sort=label")))
    assert "Tracked threads, label a–z" in text  # noqa: RUF001
    assert '<option value="label" selected>' in text


def test_an_unknown_sort_is_newest_first(user_client, api_key):
    old = tracked(api_key, 1, upstream_created_at=on_day(1))[0]
    new = tracked(api_key, 1, upstream_created_at=on_day(2))[0]

    assert listed(user_client, "sort=price") == [new.pk, old.pk]


def follow(client, start, link_name):
    """The pages met following the `link_name` links from `start` (htmx partials)."""
    pages, next_url = [], start
    while next_url:
        text = body(client.get(next_url, **HX))
        pages.append(row_ids(text))
        match = re.search(rf'<a href="([^"]+)" hx-get="[^"]+"(?: rel="\w+")?>{link_name}</a>', text)
        next_url = match and match.group(1).replace("&amp;", "&")
    return pages


@pytest.mark.parametrize("sort", ["newest", "oldest", "label"])
@pytest.mark.parametrize("key_count", [1, 2])
def test_keyset_paging_walks_every_sort_without_gaps_or_duplicates(
    user_client, user, api_key, make_key, sort, key_count
):
    keys = [api_key] + [
        make_key(owner=user, secret=f"sk-test-sorted-{n}-0123456789") for n in range(key_count - 1)
    ]
    labels = ["beta", "Alpha", "gamma", "alpha", ""]  # ties, cases, no label
    rows = [
        tracked(
            keys[n % key_count],
            1,
            label=labels[n % len(labels)],
            # Ties on the date too: the id decides.
            upstream_created_at=on_day(1 + n % 7),
        )[0]
        for n in range(55)
    ]
    sort_keys = {
        "newest": lambda t: (-t.upstream_created_at.timestamp(), -t.pk),
        "oldest": lambda t: (t.upstream_created_at.timestamp(), t.pk),
        "label": lambda t: (t.label.lower(), t.pk),
    }
    expected = [thread.pk for thread in sorted(rows, key=sort_keys[sort])]

    # The links say where they lead: by age when the newest come first, else by place.
    forward, back = ("Older", "Newer") if sort == "newest" else ("Next", "Previous")
    older = follow(user_client, url("thread_list", query=f"sort={sort}"), forward)
    assert [len(page) for page in older] == [25, 25, 5]
    assert list(itertools.chain(*older)) == expected

    # Back from the last page: the same pages again.
    last = url("thread_list", query=f"sort={sort}&before={older[1][-1]}")
    newer = follow(user_client, last, back)
    assert newer == older[::-1]
    first = "Newest" if sort == "newest" else "First page"
    assert f">{first}</a>" in body(user_client.get(last))


def test_paging_keeps_every_filter_and_the_sort(user_client, user, api_key, make_team, make_key):
    team = make_team("Blue", {user: Membership.Role.OWNER})
    team_key = make_key(team=team, created_by=user)
    tracked(team_key, 30, label="match", upstream_created_at=on_day(5))
    tracked(team_key, 3, label="match", upstream_created_at=on_day(20))  # outside the dates
    tracked(api_key, 3, label="match", upstream_created_at=on_day(5))  # another team's key
    query = (
        f"q=matc&team={team.pk}&tracked_by=alice&state=active"
        "&date_from=2026-03-01&date_to=2026-03-10&sort=label"
    )

    pages = follow(user_client, url("thread_list", query=query), "Next")

    assert [len(page) for page in pages] == [25, 5]
    text = body(user_client.get(url("thread_list", query=query)))
    older = re.search(r'<a href="([^"]+)"[^>]*rel="next">Next</a>', text).group(1)
    for part in query.split("&"):
        assert part in older.replace("&amp;", "&")


def test_a_cursor_naming_a_thread_out_of_sight_shows_nothing(
    user_client, other_user, api_key, make_key
):
    tracked(api_key, 3, label="mine")
    foreign = tracked(make_key(owner=other_user), 1, label="m")[0]

    # Otherwise the rows after it would tell where its label or date falls among mine.
    for sort in ("label", "newest", "oldest"):
        text = body(user_client.get(url("thread_list", query=f"sort={sort}&before={foreign.pk}")))
        assert row_ids(text) == []


def test_filters_combine_with_search_and_stay_within_six_queries(
    user_client, user, api_key, make_key, make_team, django_assert_max_num_queries
):
    team = make_team("Blue", {user: Membership.Role.MEMBER})
    team_key = make_key(team=team, created_by=user)
    wanted = tracked(team_key, 26, label="invoice", upstream_created_at=on_day(5))
    tracked(team_key, 2, label="refund", upstream_created_at=on_day(5))
    tracked(api_key, 2, label="invoice", upstream_created_at=on_day(5))
    query = (
        f"q=INVOICE&team={team.pk}&state=active&date_from=2026-03-05&date_to=2026-03-05"
        "&sort=oldest&tracked_by=Alice"
    )

    with django_assert_max_num_queries(6):
        first = body(user_client.get(url("thread_list", query=query)))
    with django_assert_max_num_queries(6):
        second = body(
            user_client.get(url("thread_list", query=f"{query}&before={wanted[24].pk}"), **HX)
        )

    assert row_ids(first) == [thread.pk for thread in wanted[:25]]
    assert row_ids(second) == [wanted[25].pk]


def test_the_form_works_without_javascript_and_with_htmx(user_client, api_key):
    text = body(user_client.get(url("thread_list")))

    form = re.search(r'<form class="card toolbar filter-bar" method="get"[^>]*>', text).group(0)
    assert f'action="{url("thread_list")}"' in form and 'hx-target="#rows"' in form
    for name in ("q", "key", "team", "tracked_by", "state", "date_from", "date_to", "sort"):
        assert f'name="{name}"' in text, name
    assert 'type="date"' in text and '<button type="submit">Filter</button>' in text
    assert f'<a href="{url("thread_list")}">Clear</a>' in text


WORDS = ["Invoice", "refund", "INVOICE dispute", "shipping", "", "Refund invoice"]


def _expected_page(threads, *, user_keys, teams, q, key, team, tracked_by, state, dates, sort):
    """The first page as the filters mean it, computed in Python over the visible rows."""
    rows = [
        thread
        for thread in threads
        if thread.api_key_id in user_keys
        and (not q or q.lower() in thread.search_text)
        and (key not in user_keys or thread.api_key_id == key)
        and (team not in teams or thread.api_key.team_id == team)
        and (not tracked_by or thread.tracked_by.username.lower() == tracked_by.lower())
        and (
            thread.state == state
            if state in State.values
            else state == ALL_STATES or thread.state != State.DELETED  # "" or ignored
        )
        and (dates[0] is None or thread.created.date() >= dates[0])
        and (dates[1] is None or thread.created.date() <= dates[1])
    ]
    orders = {
        "oldest": lambda t: (t.created, t.pk),
        "label": lambda t: (t.label.lower(), t.pk),
    }
    if sort in orders:
        rows.sort(key=orders[sort])
    else:
        rows.sort(key=lambda t: (t.created, t.pk), reverse=True)
    return [thread.pk for thread in rows[:25]]


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(data=st.data())
def test_any_mix_of_search_filters_and_sort_lists_what_they_mean(
    user_client, user, other_user, make_key, make_team, data
):
    if not TrackedThread.objects.exists():  # one world for all examples (same fixtures)
        team = make_team("Blue", {user: Membership.Role.MEMBER, other_user: Membership.Role.OWNER})
        keys = [
            make_key(owner=user, label="personal", secret="sk-test-mix-personal-0123456789"),
            make_key(team=team, label="team", created_by=other_user),
            make_key(owner=other_user, label="foreign", secret="sk-test-mix-foreign-0123456789"),
        ]
        for n in range(70):
            tracked(
                keys[n % 3],
                1,
                label=WORDS[n // 3 % len(WORDS)],  # every label under every key
                tracked_by=(user, other_user)[n % 2] if n % 3 == 1 else keys[n % 3].owner,
                state=State.values[n % 7 % 4],
                upstream_created_at=on_day(1 + n % 5, n % 24) if n % 6 else None,
                metadata={"n": f"no{n}"},
            )
    threads = list(
        TrackedThread.objects.annotate(created=Coalesce("upstream_created_at", "tracked_at"))
        .select_related("api_key", "tracked_by")
        .order_by("pk")
    )
    personal, team_key, foreign = (
        ApiKey.objects.get(label=n) for n in ("personal", "team", "foreign")
    )
    blue = team_key.team_id
    values = {
        "q": ["I", "iN", "inv", "VOICE", "o4", "Refund I", "zz"],
        "key": [personal.pk, team_key.pk, foreign.pk, 10**6],
        "team": [blue, blue + 1000],
        "tracked_by": ["alice", "BOB", "nobody"],
        "state": ["all", *State.values, "bogus"],
        "date_from": [date(2026, 3, 2), date(2026, 3, 4)],
        "date_to": [date(2026, 3, 2), date(2026, 3, 4)],
    }
    # A few filters at a time (all of them at once rarely leave a row), and a sort.
    names = data.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True))
    chosen = dict.fromkeys(values) | {
        name: data.draw(st.sampled_from(values[name])) for name in names
    }
    chosen["sort"] = data.draw(st.sampled_from([None, "newest", "oldest", "label", "bogus"]))
    query = urlencode({name: value for name, value in chosen.items() if value is not None})

    text = body(user_client.get(url("thread_list", query=query), **HX))

    dates = (chosen["date_from"], chosen["date_to"])
    if None not in dates and dates[0] > dates[1]:
        assert "The end date is before the start date." in text and row_ids(text) == []
        return
    expected = _expected_page(
        threads,
        user_keys={personal.pk, team_key.pk},
        teams={blue},
        q=chosen["q"] or "",
        key=chosen["key"],
        team=chosen["team"],
        tracked_by=chosen["tracked_by"] or "",
        state=chosen["state"] or "",
        dates=dates,
        sort=chosen["sort"],
    )
    assert row_ids(text) == expected, query
