"""The API's thread list: its time at 100 and 1,000,000 rows, and its requests per second
against the HTML list page's under gunicorn, on the same data.

Run with `make bench`, or:

    .venv/bin/python bench/api.py                      # SQLite, a throwaway file
    .venv/bin/python bench/api.py --database-url postgres://user:pass@host:5432/db

It reuses bench/list_page.py's world and seeding (the same owner, keys and rows, its
`--database-url`, `--sizes` and `--runs`), with an access token for the owner. At each size
it times `GET /api/v1/threads` (the first page, page 2 by cursor, a search, a filter, a sort)
through the test client, RUNS times each after a warm-up, and prints the best and median times
and the ratio of the best at the largest size to the best at 100 rows (and the same for this
thread's CPU time, which waiting for a busy machine's CPU does not inflate), then each request's
queries and its main query's plan at the largest size. Then, at the largest
size, `gunicorn dashboard.wsgi` (WORKERS workers) serves the same database, and CLIENTS
threads request the API's first page (with the token) and the HTML list's first page (with a
session), SECONDS each, in halves ordered API, page, page, API so that a change of load on a
shared machine weighs on both alike: it prints both rates and their ratio. Exits 1 when the
ratio of times is over MAX_RATIO or the API answers fewer than MIN_SPEEDUP times the requests
per second of the page.
"""

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import list_page


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per page, under gunicorn")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    return parser.parse_known_args()[0]


ARGS = _arguments()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from threads_app.models import ApiToken  # noqa: E402
from threads_app.services import tokens  # noqa: E402

MAX_RATIO = 1.3
MIN_SPEEDUP = 1.5
WARM_UP = list_page.WARM_UP
WARM_UP_SECONDS = 5.0
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
URL = "/api/v1/threads"
# (label, params): the list's usual requests; "{before}" is the first page's `older` cursor.
REQUESTS = [
    ("first page", {}),
    ("page 2 by cursor", {"before": "{before}"}),
    ("search, a third", {"q": "chat"}),
    ("filter: state gone", {"state": "gone"}),
    ("sort: label A-Z", {"sort": "label"}),
]


def owner_token(world):
    owner = list_page.get_user_model().objects.get(pk=world.owner_id)
    _row, token = tokens.create_token(
        actor=owner, label="bench", scopes=list(ApiToken.Scope.values)
    )
    return token


def measure(client):
    """{label: (median ms, best ms)} over RUNS rounds after WARM_UP, interleaved; and
    {label: (queries, main SQL)} of each request (read once more, after the timed rounds)."""
    first = client.get(URL).json()
    planned = [
        (label, {k: str(v).format(before=first["older"]) for k, v in params.items()})
        for label, params in REQUESTS
    ]
    gc.collect()
    timings = {label: [] for label, _ in REQUESTS}
    cpu = {label: [] for label, _ in REQUESTS}
    for _ in range(WARM_UP + list_page.RUNS):
        for label, params in planned:
            start, start_cpu = time.perf_counter(), time.thread_time()
            response = client.get(URL, params)
            timings[label].append(time.perf_counter() - start)
            cpu[label].append(time.thread_time() - start_cpu)
            assert response.status_code == 200, (label, response.content)
    sql = {}
    for label, params in planned:
        with CaptureQueriesContext(connection) as queries:
            client.get(URL, params)
        sql[label] = (len(queries), list_page.main_query(queries))
    figures = {
        label: (
            statistics.median(t[WARM_UP:]) * 1000,
            min(t[WARM_UP:]) * 1000,
            min(cpu[label][WARM_UP:]) * 1000,
        )
        for label, t in timings.items()
    }
    return figures, sql


def database_url():
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    )


def start_gunicorn(log):
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_LOG_LEVEL": "WARNING",
        "API_RATE_LIMIT": str(10**9),  # the bench measures the list, not the limit
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", "127.0.0.1:0"]
    command += ["--workers", str(ARGS.workers), "--no-control-socket", "--timeout", "60"]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=list_page.ROOT, env=env, stdout=output, stderr=output
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text())
        if match:
            time.sleep(1.0)  # every worker booted
            return process, match[1]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    sys.exit(f"gunicorn did not start:\n{log.read_text()}")


def rate(url, *, seconds, headers=None, cookies=None):
    """Requests per second that CLIENTS threads get from `url` in `seconds` (after a
    warm-up)."""
    done, failed = [0], []
    counting_from = time.monotonic() + WARM_UP_SECONDS  # each worker's first answers are slow
    stop = counting_from + seconds

    def client():
        session = requests.Session()
        session.headers.update(headers or {})
        session.cookies.update(cookies or {})
        while (now := time.monotonic()) < stop:
            try:
                response = session.get(url, timeout=30)
            except requests.RequestException as error:
                failed.append(repr(error))
                return
            if response.status_code != 200:
                failed.append(f"{response.status_code} {response.text[:200]}")
            elif now >= counting_from:
                done[0] += 1

    workers = [threading.Thread(target=client) for _ in range(ARGS.clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failed, f"{url}: {len(failed)} failed requests ({failed[:3]})"
    return done[0] / seconds


def throughput(world, token):
    """(API requests/s, HTML page requests/s) under gunicorn, on the seeded database."""
    session = world.clients["owner"].cookies[settings.SESSION_COOKIE_NAME].value
    process, app = start_gunicorn(Path(list_page.WORKDIR.name) / "gunicorn.log")
    half = ARGS.seconds / 2
    api_rates, page_rates = [], []
    try:
        # API, page, page, API: a load that rises or falls on the shared machine meanwhile
        # weighs on both alike.
        for rates in (api_rates, page_rates, page_rates, api_rates):
            if rates is api_rates:
                headers = {"Authorization": f"Bearer {token}"}
                rates.append(rate(app + URL, seconds=half, headers=headers))
            else:
                cookies = {settings.SESSION_COOKIE_NAME: session}
                rates.append(rate(app + "/", seconds=half, cookies=cookies))
    except AssertionError:
        print((Path(list_page.WORKDIR.name) / "gunicorn.log").read_text()[-3000:])
        raise
    finally:
        process.terminate()
        process.wait(timeout=30)
    return statistics.mean(api_rates), statistics.mean(page_rates)


def main():
    list_page.logging.getLogger("axes").setLevel(list_page.logging.WARNING)
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    failed = False
    try:
        world = list_page.make_world()
        token = owner_token(world)
        client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {token}")
        results, seeded = {}, 0
        sizes = list_page.SIZES
        for size in sizes:
            start = list_page.NEIGHBOUR_ROWS + seeded
            list_page.seed(list_page.owner_rows(world, start, list_page.NEIGHBOUR_ROWS + size))
            seeded = size
            print(f"seeded {size:,} threads in all", flush=True)
            results[size], sql = measure(client)
        small, large = sizes[0], sizes[-1]
        name = list_page.size_name
        print(f"\nGET {URL} on {connection.vendor}, best of {list_page.RUNS} (median), ms:")
        print(f"  {'request':<20} {name(small):>16} {name(large):>16}  ratio  CPU ms, ratio")
        for label, _ in REQUESTS:
            (median_s, best_s, cpu_s), (median_l, best_l, cpu_l) = (
                results[small][label],
                results[large][label],
            )
            ratio = best_l / best_s
            failed |= ratio > MAX_RATIO
            mark = "" if ratio <= MAX_RATIO else f"  over {MAX_RATIO}"
            print(
                f"  {label:<20} {best_s:7.1f} ({median_s:5.1f}) {best_l:7.1f} ({median_l:5.1f})"
                f"  {ratio:.2f}  {cpu_s:5.1f} {cpu_l:5.1f}, {cpu_l / cpu_s:.2f}{mark}"
            )
        print(
            "  (CPU: this thread's CPU time, best of the same rounds: the request's own work,"
            " waiting for the CPU left out; on SQLite the queries' work is in it, on PostgreSQL"
            " not: the target is on the elapsed time)"
        )
        print(f"\nQueries per request and the main query's plan at {name(large)} rows:")
        for label, (queries, main) in sql.items():
            print(f"  {label}: {queries} queries\n{list_page.query_plan(main)}")
        api, page = throughput(world, token)
        speedup = api / page
        failed |= speedup < MIN_SPEEDUP
        print(
            f"\nUnder gunicorn ({ARGS.workers} workers, {ARGS.clients} clients, "
            f"{ARGS.seconds:g} s each) at {name(large)} rows: API list {api:.1f} req/s, "
            f"HTML list {page:.1f} req/s: {speedup:.2f}x (target {MIN_SPEEDUP}x)"
        )
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
