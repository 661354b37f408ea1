"""Bulk delete, timed: (a) against one-by-one at 50 ms, (b) 1,000 threads under 20 requests/s.

Run with `make bench` (or `.venv/bin/python bench/bulk_delete.py [--quick]`): a throwaway
SQLite database, and the emulator in a process of its own, as the real API is remote (in this
process its request handling would compete with the job for the GIL). The job runs here, as
its task (django-tasks' immediate backend: the run is what is measured, not a worker's poll).

(a) 200 threads, 50 ms of upstream latency per request, no limit: deleted one after the other
    with `services.deletions.delete_thread`, then 200 others as one bulk job; the bulk job
    must be at least SPEEDUP_TARGET times faster.
(b) 1,000 threads (200 with `--quick`, for CI) as one bulk job against `python -m emulator
    --rate 20 --latency 0.05`: the floor is N / 20 seconds; the run must take at most
    MAX_RATIO times that, with no item failed and at most MAX_SHARE of the requests answered
    429. One job of 1,000 is over the 500 a selection may hold (`MAX_BULK_DELETE`, a limit of
    the page): its items are created here as `start_bulk_delete` creates them.
Exits 1 when a target is missed.
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
# A file, not memory: the job's threads each open their own connection to it.
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-bulk-delete-")
os.environ["DATABASE_URL"] = f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from bench.rate_limited import control  # noqa: E402  (the emulator's control API)
from threads_app import audit  # noqa: E402
from threads_app.models import ApiKey, BulkDeleteItem, BulkDeleteJob, TrackedThread  # noqa: E402
from threads_app.services import bulk, deletions  # noqa: E402
from threads_app.services.keys import add_key  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

THREADS = 200  # (a), and (b) with --quick
LATENCY = 0.05  # seconds per upstream request
SPEEDUP_TARGET = 6
RATE_LIMITED_THREADS = 1000
RATE = 20.0  # requests a second per key, in (b)
MAX_RATIO = 1.25
MAX_SHARE = 0.05
SECRET = "sk-bench-key-0001"
IMMEDIATE = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


@contextmanager
def emulator_process(*options: str) -> Iterator[str]:
    """`python -m emulator` on a free port, LATENCY before each answer; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--key", SECRET, "--latency", str(LATENCY), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def tracked_threads(
    client: ThreadsClient, api_key: ApiKey, user: User, count: int
) -> list[TrackedThread]:
    """`count` threads created upstream (16 at a time: this is not what is measured) and
    tracked here."""
    with ThreadPoolExecutor(16) as pool:
        thread_ids = list(pool.map(lambda _: client.create_thread().id, range(count)))
    return [
        TrackedThread.objects.create(thread_id=thread_id, api_key=api_key, tracked_by=user)
        for thread_id in thread_ids
    ]


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) that `action()` took."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def check_deleted(what: str, threads: list[TrackedThread]) -> None:
    """Exit unless every thread's item is deleted and the audit chain holds."""
    pks = [thread.pk for thread in threads]
    items = BulkDeleteItem.objects.filter(tracked_thread__in=pks)
    outcomes = set(items.values_list("outcome", flat=True))
    left = TrackedThread.objects.filter(pk__in=pks).exclude(state=TrackedThread.State.DELETED)
    chain = audit.verify_chain()
    if outcomes != {BulkDeleteItem.Outcome.DELETED} or left.exists() or not chain.ok:
        failed = items.exclude(outcome=BulkDeleteItem.Outcome.DELETED).count()
        sys.exit(f"bulk_delete {what}: {failed} items not deleted ({outcomes}, {chain})")


def against_one_by_one(user: User, api_key: ApiKey) -> list[str]:
    """(a): the bulk job against deleting one by one, no limit. Returns what missed."""
    with emulator_process() as base_url:
        client = ThreadsClient(SECRET, base_url=base_url)
        one_by_one = tracked_threads(client, api_key, user, THREADS)
        in_bulk = tracked_threads(client, api_key, user, THREADS)
        with override_settings(UMAMIAI_BASE_URL=base_url, TASKS=IMMEDIATE):
            sequential, sequential_cpu = timed(
                lambda: [deletions.delete_thread(thread, actor=user) for thread in one_by_one]
            )
            concurrent, concurrent_cpu = timed(
                lambda: bulk.start_bulk_delete(
                    actor=user, thread_ids=[thread.pk for thread in in_bulk]
                )
            )
    check_deleted("(a)", in_bulk)

    ratio = sequential / concurrent
    per_thread = 1000 / THREADS
    print(f"bulk_delete (a): {THREADS} threads, {LATENCY * 1000:.0f} ms upstream latency")
    print(
        f"  one by one:           {sequential:6.2f} s"
        f"  (CPU {sequential_cpu * per_thread:.1f} ms per thread)"
    )
    print(
        f"  bulk, adaptive:       {concurrent:6.2f} s"
        f"  (CPU {concurrent_cpu * per_thread:.1f} ms per thread)"
    )
    print(f"  ratio:                {ratio:6.1f}x  (target >= {SPEEDUP_TARGET}x)")
    if ratio < SPEEDUP_TARGET:
        return [f"(a) {ratio:.1f}x is below the {SPEEDUP_TARGET}x target"]
    return []


def under_a_rate_limit(user: User, api_key: ApiKey, count: int) -> list[str]:
    """(b): one job of `count` threads under RATE requests/s. Returns what missed."""
    with emulator_process("--rate", str(RATE)) as base_url:
        client = ThreadsClient(SECRET, base_url=base_url)
        control(base_url, "DELETE", "rate_limit")  # creating the threads is not measured
        threads = tracked_threads(client, api_key, user, count)
        control(base_url, "POST", "rate_limit", {"rate": RATE})  # buckets full
        job = BulkDeleteJob.objects.create(created_by=user)
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(job=job, tracked_thread=thread, thread_id=thread.thread_id)
            for thread in threads
        )
        before = control(base_url, "GET", "stats")
        with override_settings(UMAMIAI_BASE_URL=base_url):
            elapsed, _ = timed(lambda: bulk.run_bulk_delete(job.pk))
        after = control(base_url, "GET", "stats")
    check_deleted("(b)", threads)

    requests = int(str(after["requests"])) - int(str(before["requests"]))
    rate_limited = int(str(after["rate_limited"])) - int(str(before["rate_limited"]))
    failed = job.items.exclude(outcome=BulkDeleteItem.Outcome.DELETED).count()
    floor = count / RATE
    ratio = elapsed / floor
    share = rate_limited / requests if requests else 0.0
    print(
        f"bulk_delete (b): one job of {count} threads under {RATE:g} requests/s per key, "
        f"{LATENCY * 1000:.0f} ms upstream latency"
    )
    print(f"  elapsed:              {elapsed:6.2f} s  floor {floor:.2f} s (N / rate)")
    print(f"  ratio:                {ratio:6.3f}x  (target <= {MAX_RATIO}x)")
    print(
        f"  requests:             {requests:6d}    429s {rate_limited}, share {share:.1%} "
        f"(target <= {MAX_SHARE:.0%}); failed items {failed}"
    )
    missed = []
    if ratio > MAX_RATIO:
        missed.append(f"(b) {ratio:.3f}x the floor is over {MAX_RATIO}x")
    if share > MAX_SHARE:
        missed.append(f"(b) {share:.1%} of requests answered 429 is over {MAX_SHARE:.0%}")
    if failed:
        missed.append(f"(b) {failed} items failed")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"(b) with {THREADS} threads instead of {RATE_LIMITED_THREADS} (for CI)",
    )
    args = parser.parse_args()
    logging.getLogger("threads_app.upstream").setLevel(logging.WARNING)  # a line per request
    logging.getLogger("django_tasks").setLevel(logging.WARNING)  # a line per task state
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    api_key = add_key(actor=user, label="bench key", secret=SECRET, verify=False)
    missed = against_one_by_one(user, api_key)
    missed += under_a_rate_limit(user, api_key, THREADS if args.quick else RATE_LIMITED_THREADS)
    chain = audit.verify_chain()
    print(f"  audit: {chain.count} events, chain intact; load average {os.getloadavg()[0]:.1f}")
    if missed:
        sys.exit("bulk_delete: " + "; ".join(missed))


if __name__ == "__main__":
    with WORKDIR:
        main()
