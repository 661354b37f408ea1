"""Selections at scale: starting a delete job at 1M threads, deleting 20,000 threads (one
worker, then two on one key) and exporting 20,000 under the emulator's rate limit.

    .venv/bin/python bench/selection.py                                  # SQLite, a throwaway file
    .venv/bin/python bench/selection.py --database-url postgres://user:pass@host:5432/db
    .venv/bin/python bench/selection.py --parts start --threads 1000000  # one part only
    .venv/bin/python bench/selection.py --parts export --export 20000 --rate 100

Parts (all by default):

- `start`: an owner's key with `--threads` tracked threads (1M), of which 1,000 and 100,000
  match two searches. Each filter is selected (`create_selection`: its count, not timed in the
  target) and its delete job started RUNS times through the test client, as the page does (the
  POST with the typed count), the two filters interleaved: best and median time of that
  request, and the larger's best against the smaller's. Targets: at most START_MS, at most
  START_RATIO.
- `rate`: `--delete` threads (20,000) deleted by one real `manage.py db_worker` (already
  running, idle) against `python -m emulator --rate R` (100/s; floor N / R = 200 s). Time
  from the job's start to its end against the floor (target at most RATE_RATIO), the share
  of requests answered 429 (at most RATE_SHARE), items not deleted (0), the audit chain
  verified, and the worker's RSS growth over the job (less than RSS_MB).
- `two`: two jobs of `--delete`/2 threads each on one key, two workers at once, same limit:
  together against the floor (at most TWO_RATIO), 429s at most TWO_SHARE.
- `receipt`: a finished job of `--receipt-lines` threads (20,000), each with its intent and
  outcome events in the audit log: the time to generate its receipt (CSV and JSON, streamed
  to a file, with the peak of Python memory allocated meanwhile) and to verify it
  (`manage.py verify_audit --receipt`), against `verify_chain` over the same log, timed in
  the same process (the baseline: a verification recomputes the chain up to its checkpoint).
  No target: the times are printed.
- `export`: `--export` threads (20,000) of 5 messages each exported by one real worker
  against the same limit (two requests a thread: floor 2N / R = 400 s): time against the
  floor (at most EXPORT_RATIO), 429s at most RATE_SHARE, the file read back as a stream
  (every thread once, each with its 5 messages), and the worker's RSS sampled every second,
  printed at each tenth of the run (growth less than RSS_MB).

With a PostgreSQL URL it runs in a database of its own (`test_<name>`, created and dropped).
Prints the figures; exits 1 when a target is missed.
"""

import argparse
import gzip
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument(
        "--parts", default="start,rate,two,export,receipt", help="start, rate, two, export, receipt"
    )
    parser.add_argument("--threads", type=int, default=1_000_000, help="tracked, for `start`")
    parser.add_argument("--delete", type=int, default=20_000, help="threads deleted, `rate`")
    parser.add_argument("--export", type=int, default=20_000, help="threads exported, `export`")
    parser.add_argument("--rate", type=float, default=100.0, help="emulator requests/s per key")
    parser.add_argument("--runs", type=int, default=15, help="timed starts per filter")
    parser.add_argument("--receipt-lines", type=int, default=20_000, help="threads, `receipt`")
    return parser.parse_args()


ARGS = _arguments()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings_test"
WORKDIR = tempfile.TemporaryDirectory(prefix="bench-selection-")
os.environ["DATABASE_URL"] = ARGS.database_url or f"sqlite:///{Path(WORKDIR.name) / 'db.sqlite3'}"

import django  # noqa: E402

django.setup()

from allauth.account.internal.flows import login as login_flows  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402
from rate_limited import control, emulator_process  # noqa: E402

from threads_app import audit  # noqa: E402
from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint  # noqa: E402
from threads_app.models import (  # noqa: E402
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    TrackedThread,
)
from threads_app.selectors import ThreadFilters  # noqa: E402
from threads_app.services import exports, jobs  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

WARM_UP = 3
RECEIPT_BATCH = 1000
RECEIPT_RUNS = 3
START_MS = 200.0
START_RATIO = 1.3
RATE_RATIO, RATE_SHARE, RSS_MB = 1.1, 0.03, 50.0
TWO_RATIO, TWO_SHARE = 1.15, 0.05
EXPORT_RATIO, EXPORT_MESSAGES = 1.15, 5
SECRET = "sk-bench-limited-0001"  # the key `rate_limited.emulator_process` accepts
TABLE = TrackedThread._meta.db_table
COLUMNS = ("thread_id", "api_key_id", "label", "tracked_at", "metadata", "tool_resources")
COLUMNS += ("state", "state_before_deletion", "search_text")
FAILED: list[str] = []


def check(ok: bool, what: str) -> str:
    if not ok:
        FAILED.append(what)
    return "ok" if ok else "MISSED"


def owner() -> tuple[object, ApiKey, Client]:
    user = get_user_model().objects.create_user("owner", password="bench-password-1")
    key = ApiKey.objects.create(
        owner=user,
        label="bench",
        secret_encrypted=encrypt_secret(SECRET),
        hint=secret_hint(SECRET),
        fingerprint=secret_fingerprint(SECRET),
        created_by=user,
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    session = client.session  # a password entered just now: deleting asks for no other
    session[login_flows.AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "password", "at": time.time() + 3600, "username": user.get_username()}
    ]
    session[login_flows._AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
    return user, key, client


def load(key: ApiKey, rows: list[tuple[str, str]]) -> None:
    """Track (thread id, label) rows under the key: COPY on PostgreSQL, one executemany on
    SQLite (the search index's triggers run)."""
    now = datetime.now(UTC)
    values = (
        (thread_id, key.pk, label, now, "{}", "{}", "active", "",
         TrackedThread.search_text_of(thread_id, label, {}))
        for thread_id, label in rows
    )  # fmt: skip
    names = ", ".join(COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {TABLE} ({names}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(COLUMNS))
            cursor.executemany(f"INSERT INTO {TABLE} ({names}) VALUES ({marks})", values)  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- start: the request that starts a job, at 1M threads -----------------------------------


def part_start() -> None:
    user, key, client = owner()
    small, large = 1_000, 100_000
    total = max(ARGS.threads, small + large)
    started = time.perf_counter()
    labels = ["camp-small"] * small + ["camp-large"] * large + ["other"] * (total - small - large)
    load(key, [(f"thread_sel{n:08d}", f"{label} {n}") for n, label in enumerate(labels)])
    print(f"start: seeded {total:,} threads in {time.perf_counter() - started:.1f} s")
    filters = {"camp-small": small, "camp-large": large}
    selections, select_ms = {}, {}
    for q, count in filters.items():
        select_started = time.perf_counter()
        selections[q] = [
            jobs.create_selection(user=user, filters=ThreadFilters(q=q))
            for _ in range(WARM_UP + ARGS.runs)
        ]
        select_ms[q] = (time.perf_counter() - select_started) * 1000 / len(selections[q])
        assert {s.count for s in selections[q]} == {count}
    times: dict[str, list[float]] = {q: [] for q in filters}
    for run in range(WARM_UP + ARGS.runs):  # interleaved: the machine's moods hit both alike
        for q, count in filters.items():
            url = reverse("threads_app:selection_detail", args=[selections[q][run].pk])
            began = time.perf_counter()
            response = client.post(url, {"typed_count": str(count)})
            if run >= WARM_UP:
                times[q].append((time.perf_counter() - began) * 1000)
            assert response.status_code == 302, response.status_code
    best = {q: min(values) for q, values in times.items()}
    for q, count in filters.items():
        print(
            f"  start a job of {count:>7,}: best {best[q]:6.1f} ms, median "
            f"{statistics.median(times[q]):6.1f} ms  ({check(best[q] <= START_MS, q)}: "
            f"<= {START_MS:g} ms); selecting it (its count): {select_ms[q]:.0f} ms"
        )
    ratio = best["camp-large"] / best["camp-small"]
    print(f"  100,000 / 1,000: {ratio:.2f}x  ({check(ratio <= START_RATIO, 'ratio')}: "
          f"<= {START_RATIO}x)")  # fmt: skip
    BulkDeleteJob.objects.update(state=BulkDeleteJob.State.CANCELLED)  # no worker runs them


# --- rate, two: real workers against the rate-limited emulator -----------------------------


def worker(worker_id: str, base_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "UMAMIAI_BASE_URL": base_url,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings_test",
    }
    command = [sys.executable, "manage.py", "db_worker", "--no-reload", "--worker-id", worker_id]
    command += ["--interval", "0.1", "--no-startup-delay"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )


def database_url() -> str:
    """The bench's own database (the live connection's settings) as a DATABASE_URL."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}@" if db["USER"] else ""
    return f"postgres://{user}{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Watched:
    """A run of jobs as `watch` saw it: seconds from its start, the workers' RSS (MB) at the
    first sample and at the highest, and every sample (one a second)."""

    elapsed: float
    first_rss: float
    peak_rss: float
    samples: list[float]


def watch(name: str, job_ids: list[int], workers: list[subprocess.Popen[bytes]],
          started: float) -> Watched:  # fmt: skip
    """Wait for the jobs to finish, sampling the workers' RSS every second; stop the workers."""
    samples: list[float] = []
    try:
        while BulkDeleteJob.objects.filter(pk__in=job_ids).exclude(state="finished").exists():
            time.sleep(1.0)
            samples.append(max(rss_mb(w.pid) for w in workers))
            if any(w.poll() is not None for w in workers):
                sys.exit(f"{name}: a worker exited; see {WORKDIR.name}")
        elapsed = time.perf_counter() - started
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
    return Watched(elapsed, samples[0] if samples else 0.0, max(samples, default=0.0), samples)


def deletion_run(name: str, base_url: str, key: ApiKey, user: object, sizes: list[int],
                 ratio_target: float, share_target: float) -> None:  # fmt: skip
    client = ThreadsClient(SECRET, base_url=base_url, connect_timeout=5, read_timeout=30)
    control(base_url, "DELETE", "rate_limit")
    labels = []
    for index, size in enumerate(sizes):
        with ThreadPoolExecutor(16) as pool:  # not what is measured
            ids = list(pool.map(lambda _: client.create_thread().id, range(size)))
        labels.append(f"{name}-{index}")
        load(key, [(thread_id, f"{labels[-1]} {n}") for n, thread_id in enumerate(ids)])
    control(base_url, "POST", "rate_limit", {"rate": ARGS.rate})
    selections = [
        jobs.create_selection(user=user, filters=ThreadFilters(q=label)) for label in labels
    ]
    logs = Path(WORKDIR.name)  # the workers run already, idle, as in production
    workers = [
        worker(f"{name}-w{n}", base_url, logs / f"{name}-w{n}.log") for n in range(len(sizes))
    ]
    time.sleep(5)
    before = control(base_url, "GET", "stats")
    started = time.perf_counter()
    job_ids = [
        jobs.start_selection_job(user=user, selection=selection, typed_count=size).pk
        for selection, size in zip(selections, sizes, strict=True)
    ]
    watched = watch(name, job_ids, workers, started)
    elapsed, first_rss, peak_rss = watched.elapsed, watched.first_rss, watched.peak_rss
    after = control(base_url, "GET", "stats")
    requests = int(str(after["requests"])) - int(str(before["requests"]))
    limited = int(str(after["rate_limited"])) - int(str(before["rate_limited"]))
    total = sum(sizes)
    floor = total / ARGS.rate
    lost = TrackedThread.objects.filter(label__startswith=name).exclude(state="deleted").count()
    chain = audit.verify_chain().ok
    print(f"{name}: {total:,} threads in {len(sizes)} job(s), {len(sizes)} worker(s), "
          f"emulator --rate {ARGS.rate:g}")  # fmt: skip
    ratio = elapsed / floor
    print(f"  elapsed {elapsed:7.1f} s, floor {floor:.1f} s: {ratio:.3f}x  "
          f"({check(ratio <= ratio_target, name + ' time')}: <= {ratio_target}x)")  # fmt: skip
    share = limited / requests if requests else 0.0
    print(f"  requests {requests:,}, answered 429: {limited:,} = {share:.2%}  "
          f"({check(share <= share_target, name + ' 429s')}: <= {share_target:.0%})")  # fmt: skip
    print(f"  items not deleted: {lost}  ({check(lost == 0, name + ' lost')}); audit chain "
          f"{'intact' if chain else 'BROKEN'}  ({check(chain, name + ' chain')})")  # fmt: skip
    if len(sizes) == 1:
        growth = peak_rss - first_rss
        print(f"  worker RSS: {first_rss:.1f} MB at the first second, peak {peak_rss:.1f} MB: "
              f"+{growth:.1f} MB  ({check(growth < RSS_MB, 'rss')}: < {RSS_MB:g} MB)")  # fmt: skip


# --- receipt: generating and verifying a 20,000-line receipt ---------------------------------


def finished_job(user: object, key: ApiKey, lines: int) -> BulkDeleteJob:
    """A finished job of `lines` items, each with an intent and an outcome in the audit log
    (appended RECEIPT_BATCH at a time, as a job's run does), the items naming them."""
    job = BulkDeleteJob.objects.create(
        created_by=user, state=BulkDeleteJob.State.FINISHED, total=lines, done=lines
    )
    Outcome = AuditEvent.Outcome
    for start in range(0, lines, RECEIPT_BATCH):
        ids = [f"thread_receipt_{n:06d}" for n in range(start, min(start + RECEIPT_BATCH, lines))]
        intents = audit.record_many(
            [
                audit.event(
                    action=AuditEvent.Action.THREAD_DELETE_INTENT,
                    outcome=Outcome.PENDING,
                    actor=user,
                    api_key=key,
                    thread_id=thread_id,
                    details={"label": "", "job": job.pk},
                )
                for thread_id in ids
            ]
        )
        outcomes = audit.record_many(
            [
                audit.event(
                    action=AuditEvent.Action.THREAD_DELETED,
                    outcome=Outcome.SUCCESS,
                    actor=user,
                    api_key=key,
                    thread_id=intent.thread_id,
                    http_status=200,
                    request_id=f"req_{intent.sequence}",
                    details={"intent": intent.sequence, "job": job.pk},
                )
                for intent in intents
            ]
        )
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(
                job=job,
                thread_id=intent.thread_id,
                outcome=BulkDeleteItem.Outcome.DELETED,
                message="Deleted.",
                request_id=outcome.request_id,
                intent_sequence=intent.sequence,
                outcome_sequence=outcome.sequence,
            )
            for intent, outcome in zip(intents, outcomes, strict=True)
        )
    return job


def write_receipt(user: object, job: BulkDeleteJob, format: str, path: Path) -> None:
    """Issue the job's receipt and stream it to `path`, as a download does."""
    from threads_app.services import receipts

    issued = receipts.issue_receipt(user=user, job=job, format=format)  # type: ignore[arg-type]
    with path.open("w", encoding="utf-8", newline="") as file:
        for chunk in issued.chunks():
            file.write(chunk)


def part_receipt() -> None:
    from django.conf import settings
    from django.core.management import call_command

    logging.getLogger(audit.CHECKPOINT_LOGGER.name).setLevel(logging.WARNING)  # a line each
    user = get_user_model().objects.filter(username="owner").first()
    key = ApiKey.objects.filter(owner=user).first()
    if user is None or key is None:
        user, key, _ = owner()
    lines = ARGS.receipt_lines
    settings.AUDIT_CHECKPOINT_FILE = str(Path(WORKDIR.name) / "checkpoints.log")
    started = time.perf_counter()
    job = finished_job(user, key, lines)
    print(f"receipt: a finished job of {lines:,} threads, {2 * lines:,} audit events "
          f"written in {time.perf_counter() - started:.1f} s")  # fmt: skip
    for format in ("csv", "json"):
        path = Path(WORKDIR.name) / f"receipt.{format}"
        baseline, generated, verified, outputs = [], [], [], []
        for _ in range(RECEIPT_RUNS):  # interleaved: a busy moment slows all three alike
            baseline.append(timed(audit.verify_chain))
            generated.append(timed(lambda: write_receipt(user, job, format, path)))  # noqa: B023
            out = io.StringIO()
            verified.append(
                timed(lambda: call_command("verify_audit", "--receipt", str(path), stdout=out))  # noqa: B023
            )
            outputs.append(out.getvalue())
        tracemalloc.start()  # one more run, for its memory (tracing slows it down)
        write_receipt(user, job, format, path)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        said = all(f"{lines} lines, {lines} with their" in output for output in outputs)
        ok = check(said, f"receipt {format}")
        size = path.stat().st_size / 2**20
        chain = min(baseline)
        print(f"  {format.upper()} ({size:.1f} MB), best of {RECEIPT_RUNS}: generated in "
              f"{min(generated):.2f} s (peak {peak:.1f} MB allocated meanwhile), verified in "
              f"{min(verified):.2f} s = {min(verified) / chain:.2f}x verify_chain over the "
              f"{2 * lines:,} events ({chain:.2f} s)  ({ok})")  # fmt: skip


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# --- export: a selection exported under the rate limit ---------------------------------------


def export_run(base_url: str, key: ApiKey, user: object) -> None:
    """`--export` threads of EXPORT_MESSAGES messages each, exported by one real worker
    against the rate-limited emulator (two requests a thread: the thread, one page of
    messages). Time against the floor, 429s, the file read back as a stream (every thread once,
    with all its messages) and the worker's RSS sampled every second."""
    client = ThreadsClient(SECRET, base_url=base_url, connect_timeout=5, read_timeout=30)
    control(base_url, "DELETE", "rate_limit")
    messages = [
        {"role": ("user", "assistant")[n % 2], "content": f"message {n}: " + "lorem ipsum " * 20}
        for n in range(EXPORT_MESSAGES)
    ]
    with ThreadPoolExecutor(16) as pool:  # not what is measured
        ids = list(pool.map(lambda _: client.create_thread(messages=messages).id,
                            range(ARGS.export)))  # fmt: skip
    load(key, [(thread_id, f"exported {n}") for n, thread_id in enumerate(ids)])
    control(base_url, "POST", "rate_limit", {"rate": ARGS.rate})
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="exported"))
    workers = [worker("export-w0", base_url, Path(WORKDIR.name) / "export-w0.log")]
    time.sleep(5)  # the worker runs already, idle, as in production
    before = control(base_url, "GET", "stats")
    started = time.perf_counter()
    job = jobs.start_selection_job(
        user=user, selection=selection, action="export", typed_count=ARGS.export
    )
    watched = watch("export", [job.pk], workers, started)
    after = control(base_url, "GET", "stats")
    job.refresh_from_db()
    requests = int(str(after["requests"])) - int(str(before["requests"]))
    limited = int(str(after["rate_limited"])) - int(str(before["rate_limited"]))
    lines, whole, seen = 0, 0, set()
    with exports.export_storage().open(job.export_file, "rb") as raw, gzip.open(raw) as file:
        for line in file:
            data = json.loads(line)
            lines += 1
            seen.add(data["thread"]["id"])
            whole += len(data["messages"]) == EXPORT_MESSAGES
    floor = 2 * ARGS.export / ARGS.rate
    ratio = watched.elapsed / floor
    print(f"export: {ARGS.export:,} threads of {EXPORT_MESSAGES} messages, one worker, emulator "
          f"--rate {ARGS.rate:g}")  # fmt: skip
    print(f"  elapsed {watched.elapsed:7.1f} s, floor {floor:.1f} s: {ratio:.3f}x  "
          f"({check(ratio <= EXPORT_RATIO, 'export time')}: <= {EXPORT_RATIO}x)")  # fmt: skip
    share = limited / requests if requests else 0.0
    print(f"  requests {requests:,}, answered 429: {limited:,} = {share:.2%}  "
          f"({check(share <= RATE_SHARE, 'export 429s')}: <= {RATE_SHARE:.0%})")  # fmt: skip
    ok = lines == len(seen) == whole == ARGS.export and seen == set(ids)
    print(f"  file {job.export_size or 0:,} bytes: {lines:,} lines, {len(seen):,} threads, "
          f"{whole:,} with every message  ({check(ok, 'export file')})")  # fmt: skip
    samples = watched.samples
    tenths = [samples[min(len(samples) - 1, len(samples) * n // 10)] for n in range(10)]
    growth = watched.peak_rss - watched.first_rss
    print("  worker RSS (MB) at each tenth of the run: "
          + " ".join(f"{mb:.0f}" for mb in tenths))  # fmt: skip
    print(f"  worker RSS: {watched.first_rss:.1f} MB at the first second, peak "
          f"{watched.peak_rss:.1f} MB: +{growth:.1f} MB  ({check(growth < RSS_MB, 'export rss')}"
          f": < {RSS_MB:g} MB)")  # fmt: skip


def main() -> int:
    logging.getLogger("axes").setLevel(logging.WARNING)
    logging.getLogger("threads_app.upstream").setLevel(logging.WARNING)  # a line per call
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        parts = ARGS.parts.split(",")
        if "start" in parts:
            part_start()
        if "receipt" in parts:
            part_receipt()
        if {"rate", "two", "export"} & set(parts):
            user = get_user_model().objects.filter(username="owner").first()
            key = ApiKey.objects.filter(owner=user).first()
            if user is None or key is None:
                user, key, _ = owner()
            with emulator_process(ARGS.rate, 0.0) as base_url:
                if "rate" in parts:
                    deletion_run("rate", base_url, key, user, [ARGS.delete], RATE_RATIO, RATE_SHARE)
                if "two" in parts:
                    half = ARGS.delete // 2
                    deletion_run("two", base_url, key, user, [half, half], TWO_RATIO, TWO_SHARE)
                if "export" in parts:
                    export_run(base_url, key, user)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    if FAILED:
        print("missed: " + ", ".join(FAILED))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
