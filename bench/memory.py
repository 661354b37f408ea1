"""Memory: one gunicorn worker's RSS after 10,000 thread-list and thread-page requests.

Run with `make bench` (or `.venv/bin/python bench/memory.py [--requests N]`): a throwaway
SQLite database seeded here (a user, a key, 50 threads with 10 messages each in the emulator
and 2,000 more rows tracked), the emulator in a process of its own (no latency), and
`gunicorn dashboard.wsgi --workers 1` with the test settings (debug off, plain HTTP). One
client logs in through the login form, then sends REQUESTS requests in turn: the list's first
page, a search, the next page by cursor and a thread's page (each of the 50 in turn). Prints
the worker's RSS after the first WARM_UP requests and at the end, and its peak (VmHWM), from
/proc; exits 1 when the final RSS is over MAX_RSS_MB or a request failed.
"""

import argparse
import itertools
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-memory-")
DATABASE_URL = f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}"
os.environ["DATABASE_URL"] = DATABASE_URL

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.rate_limited import emulator_process  # noqa: E402
from threads_app.models import TrackedThread  # noqa: E402
from threads_app.services.keys import add_key  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

REQUESTS = 10_000
WARM_UP = 200
MAX_RSS_MB = 120
LIVE_THREADS = 50
MESSAGES = 10
MORE_ROWS = 2_000
SECRET = "sk-bench-memory-0001"
PASSWORD = "bench-memory-password"
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")


def seed(base_url: str) -> list[int]:
    """The user, their key and threads; returns the pks of the threads the emulator has."""
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    api_key = add_key(actor=user, label="bench key", secret=SECRET, verify=False)
    rows = [
        TrackedThread(thread_id=f"thread_memory{n:06d}", api_key=api_key, label=f"Row {n}")
        for n in range(MORE_ROWS)
    ]
    for row in rows:
        row.search_text = row.build_search_text()
    TrackedThread.objects.bulk_create(rows)
    upstream = ThreadsClient(SECRET, base_url=base_url)
    pks = []
    for n in range(LIVE_THREADS):
        live = upstream.create_thread(metadata={"customer": f"c{n}"})
        for m in range(MESSAGES):
            upstream.create_message(live.id, "user", f"message {m} of thread {n}")
        thread = TrackedThread.objects.create(
            thread_id=live.id, api_key=api_key, tracked_by=user, label=f"Live {n}"
        )
        pks.append(thread.pk)
    return pks


def start_gunicorn(base_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "UMAMIAI_BASE_URL": base_url,
        "DJANGO_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", "127.0.0.1:0"]
    command += ["--workers", "1", "--no-control-socket", "--timeout", "30"]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text())
        if match:
            return process, match[1]
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    sys.exit(f"gunicorn did not start:\n{log.read_text()}")


def worker_pid(master: int) -> int:
    """The master's one child: the worker."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    sys.exit("gunicorn started no worker")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of the process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return {name: int(kb) / 1024 for name, kb in fields.items()}


def log_in(session: requests.Session, app: str) -> None:
    form = session.get(app + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "the login page has a CSRF token"
    answer = session.post(
        app + "/accounts/login/",
        data={"csrfmiddlewaretoken": token[1], "login": "bench", "password": PASSWORD},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, f"login failed: {answer.status_code}"
    assert answer.headers["Location"] == "/overview/", "the log-in did not land on the overview"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS, help=f"default {REQUESTS}")
    args = parser.parse_args()
    logging.getLogger("threads_app.upstream").setLevel(logging.WARNING)  # a line per call
    with emulator_process(None, 0.0, SECRET) as base_url:
        pks = seed(base_url)
        process, app = start_gunicorn(base_url, Path(WORKDIR.name) / "gunicorn.log")
        try:
            pid = worker_pid(process.pid)
            session = requests.Session()
            log_in(session, app)
            first = session.get(app + "/", timeout=10).text
            older = re.search(r'href="/\?before=(\d+)"', first)
            assert older, "the first page links to the next one"
            kinds = itertools.cycle(["/", "/?q=row+1", f"/?before={older[1]}", "detail"])
            threads = itertools.cycle(pks)
            failures, started = 0, time.perf_counter()
            warm: dict[str, float] = {}
            for n in range(1, args.requests + 1):
                kind = next(kinds)
                path = f"/threads/{next(threads)}/" if kind == "detail" else kind
                response = session.get(app + path, timeout=10)
                failures += response.status_code != 200 or (
                    kind == "detail" and "message 9 of" not in response.text
                )
                if n == WARM_UP:
                    warm = memory_mb(pid)
            elapsed = time.perf_counter() - started
            end = memory_mb(pid)
        finally:
            process.terminate()
            process.wait(timeout=10)
    print(
        f"One gunicorn worker, {args.requests:,} requests (list, search, next page, thread "
        f"page in turn) in {elapsed:.0f} s; target: RSS under {MAX_RSS_MB} MB at the end"
    )
    print(f"RSS after {WARM_UP} requests: {warm['VmRSS']:.1f} MB")
    print(f"RSS after {args.requests:,} requests: {end['VmRSS']:.1f} MB (peak {end['VmHWM']:.1f})")
    print(f"failed requests: {failures}")
    ok = end["VmRSS"] < MAX_RSS_MB and failures == 0
    print("ok" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
