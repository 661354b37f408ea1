"""Bulk delete against one-by-one: 200 threads, 50 ms of upstream latency per request.

Run with `make bench` (or `.venv/bin/python bench/bulk_delete.py`): a throwaway SQLite
database, and the emulator in a process of its own, as the real API is remote (in this
process its request handling would compete with the job's workers for the GIL). Deletes 200
threads one after the other with `services.deletions.delete_thread`, then 200 others as one bulk
job (run to completion here, its workers included), and prints both times and their ratio.
Exits 1 when the bulk job is less than TARGET times faster.
"""

import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
# A file, not memory: the job's workers each open their own connection to it.
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-bulk-delete-")
os.environ["DATABASE_URL"] = f"sqlite:///{Path(WORKDIR.name) / 'bench.sqlite3'}"

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from threads_app import audit  # noqa: E402
from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint  # noqa: E402
from threads_app.models import ApiKey, BulkDeleteItem, TrackedThread  # noqa: E402
from threads_app.services import bulk, deletions  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

THREADS = 200
LATENCY = 0.05  # seconds per upstream request
TARGET = 6
SECRET = "sk-bench-key-0001"


@contextmanager
def emulator_process():
    """`python -m emulator` on a free port, LATENCY before each answer; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--key", SECRET, "--latency", str(LATENCY)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def tracked_threads(client, api_key, user, count):
    """`count` threads created upstream (16 at a time: this is not what is measured) and
    tracked here."""
    with ThreadPoolExecutor(16) as pool:
        thread_ids = list(pool.map(lambda _: client.create_thread().id, range(count)))
    return [
        TrackedThread.objects.create(thread_id=thread_id, api_key=api_key, tracked_by=user)
        for thread_id in thread_ids
    ]


def timed(action):
    """(wall seconds, CPU seconds of this process) that `action()` took."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    logging.getLogger("threads_app.upstream").setLevel(logging.WARNING)  # a line per request
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    api_key = ApiKey.objects.create(
        owner=user,
        label="bench key",
        secret_encrypted=encrypt_secret(SECRET),
        hint=secret_hint(SECRET),
        fingerprint=secret_fingerprint(SECRET),
        created_by=user,
    )
    with emulator_process() as base_url:
        client = ThreadsClient(SECRET, base_url=base_url)
        one_by_one = tracked_threads(client, api_key, user, THREADS)
        in_bulk = tracked_threads(client, api_key, user, THREADS)
        with override_settings(
            UMAMIAI_BASE_URL=base_url,
            BULK_DELETE_RUNNER="threads_app.services.bulk.run_bulk_delete",  # in this process
        ):
            sequential, sequential_cpu = timed(
                lambda: [deletions.delete_thread(thread, actor=user) for thread in one_by_one]
            )
            concurrent, concurrent_cpu = timed(
                lambda: bulk.start_bulk_delete(
                    actor=user, thread_ids=[thread.pk for thread in in_bulk]
                )
            )

    outcomes = set(BulkDeleteItem.objects.values_list("outcome", flat=True))
    left = TrackedThread.objects.exclude(state=TrackedThread.State.DELETED).count()
    chain = audit.verify_chain()
    if outcomes != {BulkDeleteItem.Outcome.DELETED} or left or not chain.ok:
        sys.exit(f"bulk_delete: not every thread was deleted ({outcomes}, {left} left, {chain})")

    ratio = sequential / concurrent
    per_thread = 1000 / THREADS
    print(f"bulk_delete: {THREADS} threads, {LATENCY * 1000:.0f} ms upstream latency")
    print(
        f"  one by one:           {sequential:6.2f} s"
        f"  (CPU {sequential_cpu * per_thread:.1f} ms per thread)"
    )
    print(
        f"  bulk, {bulk.WORKERS} workers:      {concurrent:6.2f} s"
        f"  (CPU {concurrent_cpu * per_thread:.1f} ms per thread)"
    )
    print(f"  ratio:                {ratio:6.1f}x  (target >= {TARGET}x)")
    print(f"  audit: {chain.count} events, chain intact; load average {os.getloadavg()[0]:.1f}")
    if ratio < TARGET:
        sys.exit(f"bulk_delete: {ratio:.1f}x is below the {TARGET}x target")


if __name__ == "__main__":
    with WORKDIR:
        main()
