"""The thread list at 100, 100,000 and 1,000,000 tracked threads: queries and time per request.

Run with `make bench`, or:

    .venv/bin/python bench/list_page.py                      # SQLite, a throwaway file
    .venv/bin/python bench/list_page.py --database-url postgres://user:pass@host:5432/db

With a PostgreSQL URL it runs in a database of its own (`test_<name>_<pid>`, created and
dropped: the role needs CREATEDB, and CREATE on it for pg_trgm, as `migrate` does). The world:
an owner with a personal key and a team key (their rows alternate between the two), a
colleague in the team, a neighbour whose key holds 100 threads older than all of them, and a
superuser. The owner's oldest RARE_ROWS are gone upstream and were tracked by the colleague:
the state and tracked-by filters find those. The owner's rows are seeded by a bulk load
(SQLite: the indexes built again after the insert) or COPY (PostgreSQL), to 100, then
100,000, then 1,000,000 in all, and at each size every request of `REQUESTS` is made through
the test client RUNS times, interleaved. One more request is one more row of `REQUESTS`.

It prints the queries per request, the best and median times, the ratio of the best time at
the largest size to the one at 100 rows, the Django admin changelist of the same table (the
superuser's) against the dashboard's superuser page, the seeding time, and the query plan of
each request's main query at the largest size. Exits 1 when a target is missed: at most
MAX_QUERIES queries a page, best-time ratio at most MAX_RATIO for every targeted request, the
dashboard at least ADMIN_SPEEDUP times faster than the admin at the largest size, seeding 1M
rows in at most SEED_SECONDS.
"""

import argparse
import gc
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument(
        "--sizes",
        default="100,100000,1000000",
        help="comma-separated row counts, ascending (default: 100,100000,1000000)",
    )
    parser.add_argument("--runs", type=int, default=30, help="counted rounds per size")
    # Known ones only: bench/api.py imports this module for its world and seeding, and takes
    # these arguments plus its own.
    return parser.parse_known_args()[0]


ARGS = _arguments()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-list-page-")
os.environ["DATABASE_URL"] = ARGS.database_url or f"sqlite:///{Path(WORKDIR.name) / 'db.sqlite3'}"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint  # noqa: E402
from threads_app.models import ApiKey, Membership, Team, ThreadCount, TrackedThread  # noqa: E402

SIZES = [int(size) for size in ARGS.sizes.split(",")]
RUNS = ARGS.runs
# Rounds not counted: the first requests of a process are slower (templates, caches, database
# pages, the interpreter's own warming up), which would flatter the ratios.
WARM_UP = 20
MAX_QUERIES = 6
MAX_RATIO = 1.3
ADMIN_SPEEDUP = 3.0
SEED_SECONDS = 120
NEIGHBOUR_ROWS = 100
# The owner's oldest rows are the rare ones the state and tracked-by filters pick: as many at
# every size (a full page and more), and last in the list's order, where only an index that
# starts with the filter's column finds them without reading all the others first.
RARE_ROWS = 30
CHANNELS = ("email", "chat", "phone")  # metadata values: "chat" matches a third of the rows
WORDS = ("Refund", "Invoice", "Shipping", "Password", "Login")
START = datetime(2025, 1, 1, tzinfo=UTC)  # row n was created n minutes after this
TABLE = TrackedThread._meta.db_table
COLUMNS = (
    "thread_id",
    "api_key_id",
    "label",
    "tracked_by_id",
    "tracked_at",
    "upstream_created_at",
    "metadata",
    "tool_resources",
    "state",
    "state_before_deletion",
    "search_text",
)


@dataclass(frozen=True)
class Request:
    """One measured request: `url_name` (reversed) with `params`, as `user`.

    `page=2` follows the first page's "Older" link. `targeted=False` is measured to be seen,
    with no target of its own: the Django admin, and a short search that matches nothing,
    which reads every visible row (README, "Search and the list's indexes").
    """

    label: str
    user: str  # "owner", "neighbour" or "superuser"
    params: dict
    url_name: str = "threads_app:thread_list"
    page: int = 1
    targeted: bool = True


# The world's ids are known once it is made: "{team}" and "{key}" are filled in then.
REQUESTS = [
    Request("first page", "owner", {}),
    Request("page 2 by cursor", "owner", {}, page=2),
    Request("search, a third", "owner", {"q": "chat"}),
    Request("search, no rows", "owner", {"q": "nosuchthreadanywhere"}),
    Request("filter: team", "owner", {"team": "{team}"}),
    Request("filter: key", "owner", {"key": "{key}"}),
    Request("filter: tracked by", "owner", {"tracked_by": "colleague"}),
    Request("filter: created dates", "owner", {"date_from": "2025-01-01", "date_to": "2025-01-02"}),
    Request("filter: state gone", "owner", {"state": "gone"}),
    Request("sort: oldest", "owner", {"sort": "oldest"}),
    Request("sort: label A-Z", "owner", {"sort": "label"}),
    Request("search + team", "owner", {"q": "chat", "team": "{team}"}),
    Request("search + state gone", "owner", {"q": "chat", "state": "gone"}),
    Request("search + sort label", "owner", {"q": "chat", "sort": "label"}),
    Request("search none + sort", "owner", {"q": "nosuchthreadanywhere", "sort": "label"}),
    Request("search, 2 letters", "owner", {"q": "ch"}),
    Request("search, 2 letters, none", "owner", {"q": "zq"}, targeted=False),
    Request("100 threads among N", "neighbour", {}),
    Request("superuser, first page", "superuser", {}),
    Request("overview", "owner", {}, url_name="threads_app:overview"),
    Request(
        "admin changelist",
        "superuser",
        {},
        url_name="admin:threads_app_trackedthread_changelist",
        targeted=False,
    ),
]
DASHBOARD_SUPERUSER = "superuser, first page"
ADMIN = "admin changelist"


def make_user(username, **fields):
    user = get_user_model().objects.create_user(username, **fields)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return user, client


def make_key(label, *, owner=None, team=None, created_by):
    secret = f"sk-bench-{label}-0123456789"
    return ApiKey.objects.create(
        owner=owner,
        team=team,
        label=label,
        secret_encrypted=encrypt_secret(secret),
        hint=secret_hint(secret),
        fingerprint=secret_fingerprint(secret),
        created_by=created_by,
    )


@dataclass
class World:
    clients: dict
    owner_keys: tuple  # (personal, team)
    owner_id: int
    colleague_id: int
    team_id: int


def make_world():
    owner, owner_client = make_user("owner")
    colleague, _ = make_user("colleague")
    neighbour, neighbour_client = make_user("neighbour")
    _, superuser_client = make_user("root", is_superuser=True, is_staff=True)
    team = Team.objects.create(name="Support")
    Membership.objects.create(team=team, user=owner, role=Membership.Role.OWNER)
    Membership.objects.create(team=team, user=colleague, role=Membership.Role.MEMBER)
    personal = make_key("owner-personal", owner=owner, created_by=owner)
    team_key = make_key("support", team=team, created_by=owner)
    neighbour_key = make_key("neighbour", owner=neighbour, created_by=neighbour)
    seed((n, neighbour_key.pk, neighbour.pk) for n in range(NEIGHBOUR_ROWS))
    clients = {"owner": owner_client, "neighbour": neighbour_client, "superuser": superuser_client}
    return World(clients, (personal.pk, team_key.pk), owner.pk, colleague.pk, team.pk)


def owner_rows(world, start, stop):
    """(number, key, tracker, rare) of the owner's rows start…stop-1: the keys alternate; the
    oldest RARE_ROWS are `rare` (gone upstream, tracked by the colleague)."""
    for n in range(start, stop):
        rare = n < NEIGHBOUR_ROWS + RARE_ROWS
        yield n, world.owner_keys[n % 2], world.colleague_id if rare else world.owner_id, rare


def row(number, key_id, tracker_id, rare=False):
    created = START + timedelta(minutes=number)
    label = f"{WORDS[number % len(WORDS)]} {number}"
    thread_id = f"thread_bench{number:08d}"
    metadata = {"customer": f"cust{number}", "channel": CHANNELS[number % 3]}
    state = "gone" if rare else "deleted" if number % 50 == 1 else "active"
    return (
        thread_id,
        key_id,
        label,
        tracker_id,
        created,
        None if number % 7 == 0 else created,  # not checked upstream yet: tracked_at counts
        json.dumps(metadata),
        "{}",
        state,
        "",
        TrackedThread.search_text_of(thread_id, label, metadata),
    )


def _bulk_insert_sqlite(cursor, names, rows):
    """A bulk load: the table's secondary indexes and triggers go, the rows go in, and the
    indexes come back built in one pass each (the search table rebuilt, the overview's counters
    counted), as they were: checked against sqlite_master, and the search table against the
    rows' text."""
    cursor.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL"
        " AND type IN ('index', 'trigger') ORDER BY name",
        [TABLE],
    )
    schema = cursor.fetchall()
    for kind, name, _ in schema:
        cursor.execute(f'DROP {kind} "{name}"')
    marks = ", ".join(["%s"] * len(COLUMNS))
    cursor.executemany(f"INSERT INTO {TABLE} ({names}) VALUES ({marks})", rows)  # noqa: S608
    for *_, sql in schema:
        cursor.execute(sql)
    search = TrackedThread.SEARCH_TABLE
    cursor.execute(f"INSERT INTO {search}({search}) VALUES ('rebuild')")  # noqa: S608
    # The overview's counters: their triggers went with the others, so count the rows again.
    counts = ThreadCount._meta.db_table
    cursor.execute(f"DELETE FROM {counts}")  # noqa: S608
    cursor.execute(
        f"INSERT INTO {counts} (api_key_id, state, shard, threads) "  # noqa: S608
        f"SELECT api_key_id, state, 0, COUNT(*) FROM {TABLE} GROUP BY api_key_id, state"
    )
    cursor.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = %s AND sql IS NOT NULL"
        " AND type IN ('index', 'trigger') ORDER BY name",
        [TABLE],
    )
    assert cursor.fetchall() == schema, "the bulk load did not restore the schema"
    cursor.execute(f"SELECT count(*) FROM {search} WHERE {search} MATCH '\"chat\"'")  # noqa: S608
    indexed = cursor.fetchone()[0]
    cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE instr(search_text, 'chat')")  # noqa: S608
    assert indexed == cursor.fetchone()[0], "the search table does not match the rows"


def seed(numbered):
    """Insert the rows: COPY on PostgreSQL (into the indexes as they are), a bulk load on
    SQLite (`_bulk_insert_sqlite`)."""
    rows = (row(*spec) for spec in numbered)
    names = ", ".join(COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {TABLE} ({names}) FROM STDIN") as copy:
                for values in rows:
                    copy.write_row(values)
        else:
            _bulk_insert_sqlite(cursor, names, rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # the statistics a production database would have


def resolved(params, world):
    values = {"team": world.team_id, "key": world.owner_keys[0]}
    return {name: str(value).format(**values) for name, value in params.items()}


def second_page(client, url, params):
    """The params of the page the first page's "Older" link leads to."""
    text = client.get(url, params).content.decode()
    before = re.search(r'href="[^"]*before=(\d+)[^"]*"[^>]*rel="next"', text)
    assert before, "the first page has no Older link"
    return {**params, "before": before.group(1)}


def main_query(queries):
    """The request's main query: the longest that reads the threads table."""
    reads = [q["sql"] for q in queries if f'"{TABLE}"' in q["sql"]]
    return max(reads, key=len, default="")


def measure(world):
    """{label: (queries, median ms, best ms)} over RUNS rounds (after WARM_UP) of every
    request, interleaved so that a burst of load elsewhere hits them alike; and the main SQL
    of each."""
    planned = []
    for request in REQUESTS:
        client = world.clients[request.user]
        url = reverse(request.url_name)
        params = resolved(request.params, world)
        if request.page == 2:
            params = second_page(client, url, params)
        planned.append((request, client, url, params))
    gc.collect()  # the seeding's garbage is not the list's cost
    timings = {request.label: [] for request in REQUESTS}
    counts, sql = {}, {}
    for _ in range(WARM_UP + RUNS):
        for request, client, url, params in planned:
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url, params)
                timings[request.label].append(time.perf_counter() - start)
            assert response.status_code == 200, (request.label, response.status_code)
            counts[request.label] = len(queries)
            sql[request.label] = main_query(queries)
    figures = {}
    for label, times in timings.items():
        counted = times[WARM_UP:]
        figures[label] = (counts[label], statistics.median(counted) * 1000, min(counted) * 1000)
    return figures, sql


def query_plan(sql):
    if not sql:
        return "      (no query of the table: the search index found no match)"
    explain = (
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
        if connection.vendor == "postgresql"
        else "EXPLAIN QUERY PLAN "
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(explain + sql)
            return "\n".join("      " + str(line[-1]) for line in cursor.fetchall())
    except Exception as exc:  # the SQL as logged is not always runnable again
        return f"      (no plan: {exc}) {sql[:2000]}"


def size_name(size):
    return (
        f"{size // 1_000_000}M"
        if size >= 1_000_000
        else f"{size // 1000}k"
        if size >= 1000
        else str(size)
    )


def report(results, seeding, plans, seeding_cpu):
    small, large = SIZES[0], SIZES[-1]
    print(
        f"\nThread list on {connection.vendor}, {RUNS} requests each. Targets: at most"
        f" {MAX_QUERIES} queries; best time at {size_name(large)} at most {MAX_RATIO}x the one"
        f" at {small} (the median also counts whatever else the machine is doing)."
    )
    header = f"{'request':<24}{'queries':>8}"
    header += "".join(f"{'best@' + size_name(size):>11}" for size in SIZES)
    header += f"{'median@' + size_name(large):>13}{'ratio':>7}  verdict"
    print(header)
    failed = False
    for request in REQUESTS:
        queries = max(results[size][request.label][0] for size in SIZES)
        best = [results[size][request.label][2] for size in SIZES]
        ratio = best[-1] / best[0]
        ok = queries <= MAX_QUERIES and ratio <= MAX_RATIO
        if request.targeted:
            failed |= not ok
            verdict = "ok" if ok else "MISSED"
        else:
            verdict = "not targeted"
        line = f"{request.label:<24}{queries:>8}" + "".join(f"{ms:>11.1f}" for ms in best)
        print(line + f"{results[large][request.label][1]:>13.1f}{ratio:>7.2f}  {verdict}")
    admin = results[large][ADMIN][2]
    dashboard = results[large][DASHBOARD_SUPERUSER][2]
    speedup = admin / dashboard
    ok = speedup >= ADMIN_SPEEDUP
    failed |= not ok
    print(
        f"\nAt {size_name(large)} rows the superuser's first page takes {dashboard:.1f} ms, the"
        f" Django admin changelist {admin:.1f} ms: {speedup:.1f}x faster (target at least"
        f" {ADMIN_SPEEDUP}x) {'ok' if ok else 'MISSED'}"
    )
    total = sum(seeding.values())
    line = ", ".join(f"to {size_name(size)}: {seconds:.1f} s" for size, seconds in seeding.items())
    ok = large < 1_000_000 or total <= SEED_SECONDS
    failed |= not ok
    print(
        f"Seeding ({line}): {total:.1f} s for {large:,} rows (target for 1M: at most"
        f" {SEED_SECONDS} s) {'ok' if ok else 'MISSED'}; this process's CPU time in it:"
        f" {seeding_cpu:.1f} s (on SQLite, all of the work, less any wait for a CPU)"
    )
    print(f"\nQuery plans of each request's main query at {size_name(large)} rows:")
    for label, sql in plans.items():
        print(f"  {label}:\n{query_plan(sql)}")
    return failed


def main():
    logging.getLogger("axes").setLevel(logging.WARNING)  # one line per login otherwise
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        world = make_world()
        results, seeding, seeded, cpu = {}, {}, 0, 0.0
        for size in SIZES:
            start, start_cpu = time.perf_counter(), time.process_time()
            seed(owner_rows(world, NEIGHBOUR_ROWS + seeded, NEIGHBOUR_ROWS + size))
            seeding[size] = time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            seeded = size
            print(f"seeded {size:,} threads in all ({seeding[size]:.1f} s for these)", flush=True)
            results[size], plans = measure(world)
        failed = report(results, seeding, plans, cpu)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
