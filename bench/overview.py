"""The overview at 100 and at 100,000 threads (and as many audit events): queries and time.

Run with `make bench` (or `.venv/bin/python bench/overview.py`; with `DATABASE_URL=postgres://…`
it runs on a throwaway PostgreSQL database, `test_<name>_<pid>`, dropped at the end). An owner's
key holds the threads, bulk-inserted, and the audit log holds a creation for each, spread over
the last 60 days, and a deletion for every tenth (appended through the audit chain, as the app
does); a neighbour has 100 threads and their events; a superuser sees everything. Each of the
three asks for `/overview/` RUNS times, interleaved, at each size. Prints the queries per
request, the median and best times, the best-time ratio 100k/100 and the plans of the two
queries that read the counters. Exits 1 when a request takes more than MAX_QUERIES queries or
its best-time ratio is over MAX_RATIO.
"""

import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-overview-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import (  # noqa: E402
    CaptureQueriesContext,
    setup_databases,
    teardown_databases,
)
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from threads_app import audit  # noqa: E402
from threads_app.models import AuditEvent, TrackedThread  # noqa: E402
from threads_app.services.keys import add_key  # noqa: E402

SIZES = (100, 100_000)
BATCH = 5_000
DAYS = 60  # the events' spread: twice what the chart shows
RUNS = 30
WARM_UP = 20
MAX_QUERIES = 6
MAX_RATIO = 1.3
COUNTER_TABLES = ("threads_app_threadcount", "threads_app_dailythreadactivity")
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome


def make_user_with_key(username, **extra):
    user = get_user_model().objects.create_user(username, **extra)
    secret = f"sk-bench-{username}"
    api_key = add_key(actor=user, label=f"{username}'s key", secret=secret, verify=False)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return api_key, client


def seed(api_key, start, stop):
    """Threads start…stop-1 and their events: a creation each, a deletion every tenth."""
    now = timezone.now()
    for first in range(start, stop, BATCH):
        numbers = range(first, min(first + BATCH, stop))
        TrackedThread.objects.bulk_create(
            TrackedThread(thread_id=f"thread_ov{n:08d}", api_key=api_key) for n in numbers
        )
        # One day's events per append: the chain stamps them with "now".
        day = now - timedelta(days=(first // BATCH) % DAYS)
        events = [
            audit.event(action=action, outcome=Outcome.SUCCESS, api_key=api_key, thread_id=f"t{n}")
            for n in numbers
            for action in (
                (Action.THREAD_CREATED, Action.THREAD_DELETED)
                if n % 10 == 0
                else (Action.THREAD_CREATED,)
            )
        ]
        with mock.patch("threads_app.audit.timezone.now", return_value=day):
            audit.record_many(events)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(clients):
    url = reverse("threads_app:overview")
    gc.collect()
    timings = {name: [] for name in clients}
    counts, sql = {}, {}
    for _ in range(WARM_UP + RUNS):
        for name, client in clients.items():
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = client.get(url)
                timings[name].append(time.perf_counter() - start)
            assert response.status_code == 200, response.status_code
            counts[name] = len(queries)
            sql[name] = [q["sql"] for q in queries if any(t in q["sql"] for t in COUNTER_TABLES)]
    figures = {
        name: (counts[name], statistics.median(t[WARM_UP:]) * 1000, min(t[WARM_UP:]) * 1000)
        for name, t in timings.items()
    }
    return figures, sql


def query_plan(sql):
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql)
        return " / ".join(str(row[-1]).strip() for row in cursor.fetchall())


def main():
    logging.getLogger("axes").setLevel(logging.WARNING)
    logging.getLogger("threads_app.audit.checkpoints").setLevel(logging.WARNING)  # one a 1,000
    databases = setup_databases(verbosity=0, interactive=False)
    try:
        return run()
    finally:
        connection.close()
        teardown_databases(databases, verbosity=0)


def run():
    neighbour_key, neighbour = make_user_with_key("neighbour")
    owner_key, owner = make_user_with_key("owner")
    _, superuser = make_user_with_key("root", is_superuser=True)
    clients = {"owner (N rows)": owner, "neighbour (100 of N)": neighbour, "superuser": superuser}
    seed(neighbour_key, 0, SIZES[0])
    results, seeded = {}, 0
    for size in SIZES:
        start = time.perf_counter()
        seed(owner_key, SIZES[0] + seeded, SIZES[0] + size)
        seeded = size
        print(f"seeded {size:,} threads and their events in {time.perf_counter() - start:.1f} s")
        results[size], plans = measure(clients)

    small, large = SIZES
    print(
        f"\nOverview on {connection.vendor} at {small:,} and {large:,} threads (and events), "
        f"{RUNS} requests each. Target: at most {MAX_QUERIES} queries, best-time ratio at most "
        f"{MAX_RATIO}."
    )
    print(f"{'as':<22}{'queries':>8}{'median @100':>12}{'@100k':>8}{'best @100':>11}{'@100k':>8}")
    failed = False
    for name in clients:
        queries, median, best = results[small][name]
        queries_large, median_large, best_large = results[large][name]
        ratio = best_large / best
        ok = max(queries, queries_large) <= MAX_QUERIES and ratio <= MAX_RATIO
        failed |= not ok
        print(
            f"{name:<22}{queries_large:>8}{median:>12.1f}{median_large:>8.1f}{best:>11.1f}"
            f"{best_large:>8.1f}  ratio {ratio:.2f} {'ok' if ok else 'MISSED'}"
        )
    print(f"\nPlans of the queries that read the counters, at {large:,}:")
    for name, queries in plans.items():
        for sql in queries:
            print(f"  {name}: {query_plan(sql)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
