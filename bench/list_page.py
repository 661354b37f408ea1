"""The thread list at 100 and at 100,000 tracked threads: SQL queries and time per request.

Run with `make bench` (or `.venv/bin/python bench/list_page.py`): a throwaway SQLite file, an
owner whose key holds 100 tracked threads, then 100,000 (bulk-inserted), and a neighbour with
100 threads older than all of them. Through the test client it requests the owner's first
page of `/`, a search that matches a third of the rows, a search that matches nothing, and the
neighbour's first page (their 100 rows among the whole table), RUNS times each, interleaved.
It prints the queries per request, the median and best times, the ratios 100k/100, and
SQLite's plan for the list's main query. Exits 1 when a targeted request misses the target
(at most MAX_QUERIES queries, best-time ratio at most MAX_RATIO); the search that matches
nothing is printed but not targeted: a substring search without a text index reads every row.
"""

import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-list-page-")
os.environ["DATABASE_URL"] = f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402

from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint  # noqa: E402
from threads_app.models import ApiKey, ThreadCount, TrackedThread  # noqa: E402

SIZES = (100, 100_000)
BATCH = 5_000
RUNS = 30
# Rounds not counted: the first few hundred requests of a process are slower (templates,
# caches, SQLite pages, the interpreter's own warming up), which would flatter the 100k ratio.
WARM_UP = 20
MAX_QUERIES = 6
MAX_RATIO = 1.3
CHANNELS = ("email", "chat", "phone")  # metadata values: "chat" matches a third of the rows
MAIN_TABLE = TrackedThread._meta.db_table
COUNTS_TABLE = ThreadCount._meta.db_table


@dataclass(frozen=True)
class Measurement:
    label: str
    user: str  # "owner": the table's rows are theirs; "neighbour": 100 rows, the oldest
    params: dict
    targeted: bool = True  # counted in the exit status
    view: str = "threads_app:thread_list"
    table: str = MAIN_TABLE  # its main query is the one that reads this table


MEASUREMENTS = [
    Measurement("first page", "owner", {}),
    Measurement("search, a third", "owner", {"q": "chat"}),
    Measurement("search, no rows", "owner", {"q": "nosuchthreadanywhere"}, targeted=False),
    Measurement("first page, 100 of N", "neighbour", {}),
    Measurement("overview", "owner", {}, view="threads_app:overview", table=COUNTS_TABLE),
]


def make_user_with_key(username):
    user = get_user_model().objects.create_user(username)
    secret = f"sk-bench-{username}"
    api_key = ApiKey.objects.create(
        owner=user,
        label=f"{username}'s key",
        secret_encrypted=encrypt_secret(secret),
        hint=secret_hint(secret),
        fingerprint=secret_fingerprint(secret),
        created_by=user,
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return api_key, client


def seed_threads(api_key, start, stop):
    """Threads number start…stop-1, in batches; `search_text` by hand (bulk_create skips save)."""
    created = datetime(2025, 1, 1, tzinfo=UTC)
    for first in range(start, stop, BATCH):
        rows = []
        for number in range(first, min(first + BATCH, stop)):
            thread = TrackedThread(
                thread_id=f"thread_bench{number:08d}",
                api_key=api_key,
                label=f"Support chat {number}",
                tracked_by=api_key.owner,
                upstream_created_at=created + timedelta(minutes=number),
                metadata={"customer": f"cust{number}", "channel": CHANNELS[number % 3]},
            )
            thread.search_text = thread.build_search_text()
            rows.append(thread)
        TrackedThread.objects.bulk_create(rows)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # the statistics a production database would have


def measure(clients):
    """{label: (queries per request, median ms, best ms)} over RUNS rounds of every
    measurement (interleaved, so a burst of load elsewhere hits them alike), and the main SQL
    of each."""
    gc.collect()  # the seeding's garbage is not the list's cost
    timings = {m.label: [] for m in MEASUREMENTS}
    counts, sql = {}, {}
    for _ in range(WARM_UP + RUNS):
        for m in MEASUREMENTS:
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = clients[m.user].get(reverse(m.view), m.params)
                timings[m.label].append(time.perf_counter() - start)
            assert response.status_code == 200, response.status_code
            counts[m.label] = len(queries)
            sql[m.label] = next(q["sql"] for q in queries if f'"{m.table}"' in q["sql"])
    figures = {}
    for label, times in timings.items():
        counted = times[WARM_UP:]
        figures[label] = (counts[label], statistics.median(counted) * 1000, min(counted) * 1000)
    return figures, sql


def query_plan(sql):
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return " / ".join(row[-1] for row in cursor.fetchall())


def main():
    logging.getLogger("axes").setLevel(logging.WARNING)  # one line per login otherwise
    call_command("migrate", verbosity=0)
    # The neighbour's 100 threads come first: at N rows they are the table's oldest.
    neighbour_key, neighbour = make_user_with_key("neighbour")
    owner_key, owner = make_user_with_key("owner")
    clients = {"owner": owner, "neighbour": neighbour}
    seed_threads(neighbour_key, 0, SIZES[0])

    results, seeded = {}, 0
    for size in SIZES:
        start = time.perf_counter()
        seed_threads(owner_key, SIZES[0] + seeded, SIZES[0] + size)
        seeded = size
        print(f"seeded {size:,} threads in {time.perf_counter() - start:.1f} s", flush=True)
        results[size], plans = measure(clients)

    small, large = SIZES
    print(
        f"\nThread list at {small:,} and {large:,} rows, {RUNS} requests each. Target: at most"
        f" {MAX_QUERIES} queries, 100k/100 ratio at most {MAX_RATIO}, judged on the best time"
        " (the median also counts whatever else the machine is doing)."
    )
    print(
        f"{'request':<22}{'queries':>8}{'median ms':>10}{'median ms':>10}{'ratio':>7}"
        f"{'best ms':>9}{'best ms':>9}{'ratio':>7}  verdict"
    )
    print(f"{'':<30}{'@100':>10}{'@100k':>10}{'':>7}{'@100':>9}{'@100k':>9}")
    failed = False
    for m in MEASUREMENTS:
        queries, median, best = results[small][m.label]
        queries_large, median_large, best_large = results[large][m.label]
        ratio = best_large / best
        ok = max(queries, queries_large) <= MAX_QUERIES and ratio <= MAX_RATIO
        failed |= m.targeted and not ok
        verdict = "ok" if ok else ("MISSED" if m.targeted else "not flat (informational)")
        print(
            f"{m.label:<22}{queries_large:>8}{median:>10.1f}{median_large:>10.1f}"
            f"{median_large / median:>7.2f}{best:>9.1f}{best_large:>9.1f}{ratio:>7.2f}  {verdict}"
        )
    print(f"\nQuery plans of the list's main query at {large:,} rows:")
    for label, sql in plans.items():
        print(f"  {label}: {query_plan(sql)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
