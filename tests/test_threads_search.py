"""The list's search through its text index (pg_trgm GIN on PostgreSQL, FTS5 trigram on SQLite):
a case-insensitive substring of the thread id, label or metadata values, whatever its length,
and an index that follows every insert, change and delete. Runs on both databases."""

import random
import re

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threads_app import selectors
from threads_app.models import TrackedThread
from threads_app.selectors import ThreadFilters

pytestmark = pytest.mark.django_db
SQLITE = connection.vendor == "sqlite"


def track(api_key, thread_id, label="", metadata=None, **fields):
    return TrackedThread.objects.create(
        api_key=api_key,
        thread_id=thread_id,
        label=label,
        metadata=metadata or {},
        tracked_by=api_key.owner,
        **fields,
    )


def found(user, q, **filters):
    """The pks the list's query finds for the search (and filters), as a set."""
    threads = selectors.filtered_threads(user, ThreadFilters(q=q, state="all", **filters))
    return set(threads.values_list("pk", flat=True))


def brute_force(q):
    """What the search means, computed in Python over every row."""
    return {
        thread.pk
        for thread in TrackedThread.objects.all()
        if q.lower()
        in "\n".join([thread.thread_id, thread.label, *thread.metadata.values()]).lower()
    }


def indexed(q):
    """The pks the text index itself returns for a search of 3+ characters."""
    if SQLITE:
        return set(selectors._search_table_ids(q.lower(), limit=10**6))
    with connection.cursor() as cursor:  # only through the trigram index: no scan of the table
        cursor.execute("SET LOCAL enable_seqscan = off")  # nor of its primary key
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(
            f"SELECT id FROM {TrackedThread._meta.db_table} WHERE search_text LIKE %s",  # noqa: S608
            ["%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.fixture
def rows(api_key):
    return {
        "id": track(api_key, "thread_AbCdEf123"),
        "label": track(api_key, "thread_2", label="Quarterly Report for Ärger GmbH"),
        "meta": track(api_key, "thread_3", metadata={"customer": "ACME Corp", "tier": "gold"}),
        "plain": track(api_key, "thread_4", label="nothing special"),
    }


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("cdef12", {"id"}),  # inside the id, another case
        ("THREAD_ABC", {"id"}),
        ("erly rep", {"label"}),  # across a space, mid-word
        ("me co", {"meta"}),
        ("GOLD", {"meta"}),
        ("customer", set()),  # metadata keys are not searched, only values
        ("report for ärger", {"label"}),
        ("nowhere-at-all", set()),
    ],
)
def test_search_is_a_case_insensitive_substring_of_id_label_or_metadata_values(
    user, rows, q, expected
):
    assert found(user, q) == {rows[name].pk for name in expected}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ä", {"label"}),  # non-ASCII, one character: below a trigram
        ("Ä", {"label"}),  # and in the other case
        ("ÄR", {"label"}),
        ("q", {"label"}),
        ("3", {"id", "meta"}),  # thread_AbCdEf123, thread_3
        ("_4", {"plain"}),  # "_" is a character, not LIKE's wildcard
        ("zz", set()),
    ],
)
def test_one_and_two_character_searches_stay_correct(user, rows, q, expected):
    assert found(user, q) == {rows[name].pk for name in expected}


def test_non_ascii_case_folds_like_python_lower(user, api_key):
    thread = track(api_key, "thread_x", label="ÉCOLE Ünïcödé ΣΟΦΊΑ")

    for q in ("école", "ÜNÏCÖDÉ", "σοφία", "cole ü"):
        assert found(user, q) == {thread.pk}, q


@pytest.mark.parametrize(
    "q", ['"hi"', 'say "', "100%", "0% s", "a_b", "*", "OR x", "NEAR(a b)", "-x", "(", "\\"]
)
def test_search_syntax_characters_are_plain_text(user, api_key, q):
    thread = track(api_key, "thread_y", label='say "hi" 100% sure a_b * OR x NEAR(a b) -x ( \\')
    track(api_key, "thread_z", label="say hi 1000 sure ab")

    assert found(user, q) == {thread.pk}


def test_the_index_follows_inserts_label_and_metadata_changes_and_deletes(user, api_key):
    thread = track(api_key, "thread_follow", label="alpha", metadata={"k": "bravo"})
    other = track(api_key, "thread_other", label="alphabet")
    assert indexed("alpha") == {thread.pk, other.pk}
    assert indexed("bravo") == {thread.pk}

    thread.label = "charlie"
    thread.metadata = {"k": "delta"}
    thread.save(update_fields=["label", "metadata"])
    assert indexed("alpha") == {other.pk} and indexed("bravo") == set()
    assert indexed("charlie") == {thread.pk} == indexed("delta")
    assert found(user, "charlie") == {thread.pk} and found(user, "bravo") == set()

    thread.state = TrackedThread.State.GONE  # a change that leaves the text as it was
    thread.save()
    TrackedThread.objects.filter(pk=other.pk).update(state=TrackedThread.State.DELETED)
    assert indexed("charlie") == {thread.pk} and indexed("alphabet") == {other.pk}

    other.delete()
    assert indexed("alpha") == set()
    TrackedThread.objects.filter(pk=thread.pk).delete()
    assert indexed("charlie") == set() == found(user, "charlie")


def test_a_common_term_finds_the_same_rows_by_either_route(user, api_key, monkeypatch):
    threads = [track(api_key, f"thread_common{n}", label=f"common {n}") for n in range(5)]
    expected = {thread.pk for thread in threads}
    assert found(user, "common") == expected  # the index's ids

    monkeypatch.setattr(selectors, "SEARCH_IDS_MAX", 2)  # too many ids: read rows in order
    assert found(user, "common") == expected
    assert found(user, "common 3") == {threads[3].pk}


def test_search_only_finds_threads_the_user_may_see(user, other_user, api_key, make_key):
    mine = track(api_key, "thread_mine", label="shared word")
    track(make_key(owner=other_user), "thread_theirs", label="shared word")

    assert found(user, "shared word") == {mine.pk}
    assert found(user, "sha") == {mine.pk}


def test_the_search_is_served_by_the_text_index(user, api_key):
    for n in range(50):
        track(api_key, f"thread_ix{n}", label=f"label {n}")
    query = selectors.filtered_threads(user, ThreadFilters(q="bel 4")).order_by().values("pk").query
    sql, params = query.sql_with_params()
    with connection.cursor() as cursor:
        if SQLITE:  # the ids come from the FTS5 table: the query reads those rows alone
            table = TrackedThread.SEARCH_TABLE
            probe = f"SELECT rowid FROM {table} WHERE {table} MATCH 'x'"  # noqa: S608
            cursor.execute("EXPLAIN QUERY PLAN " + probe)
            assert "VIRTUAL TABLE INDEX" in str(cursor.fetchall())
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = str(cursor.fetchall())
            assert "USING INTEGER PRIMARY KEY (rowid=?)" in plan and "SCAN" not in plan
        else:  # the planner may prefer a scan of 50 rows: without one, the trigram index
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("EXPLAIN " + sql, params)
            assert "thread_search_trgm" in str(cursor.fetchall())


ALPHABET = "abÄäß _%\"'-*"
TEXTS = st.text(alphabet=ALPHABET, min_size=0, max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(query=st.text(alphabet=ALPHABET, min_size=1, max_size=5))
def test_search_matches_python_substring_semantics(user, api_key, query):
    if not TrackedThread.objects.exists():  # one table for all examples (same fixtures)
        generator = random.Random(10)
        for n in range(60):
            label = "".join(generator.choice(ALPHABET) for _ in range(generator.randint(0, 12)))
            value = "".join(generator.choice(ALPHABET) for _ in range(generator.randint(0, 12)))
            track(api_key, f"thread_h{n}", label=label, metadata={"v": value} if n % 2 else {})

    assert found(user, query) == brute_force(query)
    if len(query) >= 3:
        assert indexed(query) == brute_force(query)


def test_a_search_over_many_keys_lists_the_newest_matches(
    user_client, user, make_key, django_assert_max_num_queries
):
    """1,000 matches under 35 keys (on SQLite, as many ids as the trigram table names before
    the list reads rows in order instead): the newest 25, in at most six queries."""
    keys = [make_key(owner=user, secret=f"sk-test-many-{n:02d}-0123456789") for n in range(35)]
    rows = []
    for n in range(1000):
        thread = TrackedThread(
            api_key=keys[n % 35], thread_id=f"thread_many{n}", label=f"needle {n}"
        )
        thread.search_text = thread.build_search_text()  # bulk_create does not save() each
        rows.append(thread)
    matches = TrackedThread.objects.bulk_create(rows)
    for n, key in enumerate(keys):
        track(key, f"thread_hay{n}", label="hay")

    with django_assert_max_num_queries(6):
        response = user_client.get("/", {"q": "NEEDLE"})

    listed = [int(pk) for pk in re.findall(r'<tr id="thread-(\d+)"', response.content.decode())]
    assert listed == sorted((thread.pk for thread in matches), reverse=True)[:25]
