"""Deleting threads under a rate limit: the adaptive loop against `python -m emulator --rate R`.

Run with `make bench` (or `.venv/bin/python bench/rate_limited.py [--threads 1000]`). The
emulator runs in a process of its own with `--rate R` (per key: R requests a second, a burst
of R, else 429 with Retry-After) and LATENCY before each answer. The threads are created with
the limit lifted through the control API (that is not what is measured), then the limit is set
again, buckets full, and every thread is deleted through `ThreadsClient(retry_rate_limited=
False)` by `services.concurrency.run_adaptively` with an `AdaptiveConcurrency` (start 8, AIMD):
the loop the bulk delete uses. Prints the time against the floor N / R, the share of requests
answered 429 and how the limit moved. Exits 1 when a thread is not deleted or a target is
missed (at most MAX_RATIO times the floor, at most MAX_SHARE of requests answered 429).
"""

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threads_app.services.concurrency import AdaptiveConcurrency, run_adaptively  # noqa: E402
from threads_app.upstream import ThreadsClient  # noqa: E402

THREADS = 200
RATE = 20.0  # requests a second per key
LATENCY = 0.05  # seconds before each answer, as in bench/bulk_delete.py
MAX_RATIO = 1.25
MAX_SHARE = 0.05
SECRET = "sk-bench-limited-0001"


@contextmanager
def emulator_process(rate: float | None, latency: float, secret: str = SECRET) -> Iterator[str]:
    """`python -m emulator --rate R` (no limit when R is None) on a free port; yields its
    base URL."""
    command = [sys.executable, "-m", "emulator", "--key", secret, "--latency", str(latency)]
    if rate is not None:
        command += ["--rate", str(rate)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def control(base_url: str, method: str, name: str, body: object = None) -> dict[str, object]:
    """One call to the emulator's control API (`/__emulator__/<name>`)."""
    url = base_url.removesuffix("/v1") + "/__emulator__/" + name
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        result: dict[str, object] = json.load(answer)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=THREADS, help=f"default {THREADS}")
    parser.add_argument("--rate", type=float, default=RATE, help=f"requests/s, default {RATE:g}")
    parser.add_argument(
        "--latency", type=float, default=LATENCY, help=f"seconds, default {LATENCY:g}"
    )
    args = parser.parse_args()

    with emulator_process(args.rate, args.latency) as base_url:
        client = ThreadsClient(
            SECRET, base_url=base_url, connect_timeout=5, read_timeout=30, retry_rate_limited=False
        )
        control(base_url, "DELETE", "rate_limit")
        with ThreadPoolExecutor(16) as pool:
            thread_ids = list(pool.map(lambda _: client.create_thread().id, range(args.threads)))
        control(base_url, "POST", "rate_limit", {"rate": args.rate})
        before = control(base_url, "GET", "stats")

        failed: list[str] = []

        def delete(thread_id: str) -> None:
            result = client.delete_thread(thread_id)
            if not result.deleted or result.already_gone:
                failed.append(thread_id)

        controller = AdaptiveConcurrency()
        started = time.perf_counter()
        run = run_adaptively(thread_ids, delete, controller)
        elapsed = time.perf_counter() - started
        after = control(base_url, "GET", "stats")

    emulator_429s = int(str(after["rate_limited"])) - int(str(before["rate_limited"]))
    failed += [thread_id for thread_id, _ in run.gave_up]
    floor = args.threads / args.rate
    ratio = elapsed / floor
    share = run.rate_limited_share
    print(
        f"rate_limited: {args.threads} threads deleted under {args.rate:g} requests/s per key, "
        f"{args.latency * 1000:.0f} ms upstream latency"
    )
    print(f"  elapsed:       {elapsed:6.2f} s   floor {floor:.2f} s (N / rate)")
    print(f"  ratio:         {ratio:6.3f}x   (target <= {MAX_RATIO}x)")
    print(
        f"  requests:      {run.sent:6d}     429s {run.rate_limited} (emulator counted "
        f"{emulator_429s}), share {share:.1%} (target <= {MAX_SHARE:.0%})"
    )
    print(
        f"  concurrency:   start 8, peak {run.peak_limit}, end {controller.limit}; "
        f"failed {len(failed)}"
    )
    if failed:
        sys.exit(f"rate_limited: {len(failed)} threads not deleted")
    if ratio > MAX_RATIO or share > MAX_SHARE:
        sys.exit(f"rate_limited: a target is missed ({ratio:.3f}x, {share:.1%} answered 429)")


if __name__ == "__main__":
    main()
