"""The thread list: who sees what, search, filters, keyset paging, empty states, query count."""

import itertools
import re

import pytest
from django.utils.html import escape

from tests.conftest import OTHER_TEST_KEY
from tests.threads_helpers import HX, body, is_partial, url
from threads_app.models import Membership, TrackedThread

pytestmark = pytest.mark.django_db

State = TrackedThread.State
_ids = itertools.count()


def tracked(api_key, count, **fields):
    """`count` tracked rows (no upstream needed to list them), oldest first."""
    return [
        TrackedThread.objects.create(
            api_key=api_key,
            thread_id=f"thread_listed{next(_ids):05d}",
            tracked_by=api_key.owner or api_key.created_by,
            **fields,
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

    # 7: the session, the user, whether two-factor is required of them (middleware), the page.
    with django_assert_max_num_queries(7):
        full = user_client.get(url("thread_list"))
    with django_assert_max_num_queries(7):
        partial = user_client.get(url("thread_list", query="q=thread&state=all"), **HX)

    assert len(row_ids(body(full))) == 25
    assert len(row_ids(body(partial))) == 25


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

    assert 'hx-trigger="input changed delay:300ms, search"' in text
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
