"""A thread's page against one bare round trip to the API, at 50 ms of upstream latency.

Run with `make bench` (or `.venv/bin/python bench/detail_page.py [--runs N]`): a throwaway
SQLite database, and the emulator in a process of its own (`python -m emulator --latency
0.05`), holding one thread with 30 messages. The thread's page (`/threads/<pk>/`, through
Django's test client: every middleware, the selectors, the two upstream calls, the template)
and a bare `requests.Session` GET of the same thread at the same emulator are timed in turn,
interleaved, RUNS times each after WARM_UP rounds. The page asks for the thread and its
first messages at once, so it should cost one round trip plus its own work. Prints the
medians, the best times and the ratio of the medians; exits 1 when the ratio is over
MAX_RATIO.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-detail-page-")
os.environ["DATABASE_URL"] = f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}"

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from bench.rate_limited import emulator_process  # noqa: E402
from threads_app.models import TrackedThread  # noqa: E402
from threads_app.services.keys import add_key  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

LATENCY = 0.05  # seconds before each emulator answer
RUNS = 100
WARM_UP = 10
MAX_RATIO = 1.25
MESSAGES = 30
SECRET = "sk-bench-detail-0001"


def tracked_thread(base_url: str) -> TrackedThread:
    """A user, their key and one thread with MESSAGES messages, created upstream."""
    user = get_user_model().objects.create_user("reader")
    api_key = add_key(actor=user, label="reader's key", secret=SECRET, verify=False)
    upstream = ThreadsClient(SECRET, base_url=base_url)
    live = upstream.create_thread(metadata={"customer": "ACME"})
    for n in range(MESSAGES):
        upstream.create_message(live.id, "user", f"message {n}")
    return TrackedThread.objects.create(thread_id=live.id, api_key=api_key, tracked_by=user)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"default {RUNS}")
    args = parser.parse_args()
    logging.getLogger("threads_app.upstream").setLevel(logging.WARNING)  # a line per call
    logging.getLogger("axes").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)

    with emulator_process(None, LATENCY, SECRET) as base_url:
        settings.UMAMIAI_BASE_URL = base_url
        thread = tracked_thread(base_url)
        page = Client(HTTP_HOST="localhost")
        page.force_login(thread.tracked_by)
        page_url = reverse("threads_app:thread_detail", args=[thread.pk])
        bare = requests.Session()
        bare_url = f"{base_url}/threads/{thread.thread_id}"
        headers = {"Authorization": f"Bearer {SECRET}", "OpenAI-Beta": "assistants=v2"}

        def page_get() -> None:
            response = page.get(page_url)
            assert response.status_code == 200 and b"message 29" in response.content

        def bare_get() -> None:
            response = bare.get(bare_url, headers=headers, timeout=5)
            assert response.status_code == 200

        times: dict[str, list[float]] = {"page": [], "bare": []}
        for n in range(WARM_UP + args.runs):
            for name, get in (("page", page_get), ("bare", bare_get)):
                start = time.perf_counter()
                get()
                if n >= WARM_UP:
                    times[name].append(time.perf_counter() - start)

    page_median, bare_median = (statistics.median(times[name]) * 1000 for name in times)
    ratio = page_median / bare_median
    print(
        f"Thread page against one bare GET of the thread, {LATENCY * 1000:.0f} ms upstream "
        f"latency, {args.runs} runs each, interleaved (target: median ratio at most {MAX_RATIO})"
    )
    print(f"{'':<28}{'median ms':>10}{'best ms':>10}")
    print(f"{'thread page (2 calls)':<28}{page_median:>10.1f}{min(times['page']) * 1000:>10.1f}")
    print(f"{'bare requests GET':<28}{bare_median:>10.1f}{min(times['bare']) * 1000:>10.1f}")
    verdict = "ok" if ratio <= MAX_RATIO else "MISSED"
    print(f"ratio of the medians: {ratio:.2f}  {verdict}")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
