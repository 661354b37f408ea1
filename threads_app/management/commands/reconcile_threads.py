"""`manage.py reconcile_threads`: check every tracked thread against the upstream.

Inline by default (from cron, it reports when done); `--enqueue` queues `reconcile_all_task`
for a `manage.py db_worker` instead and returns at once.
"""

from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand

from threads_app.services.reconcile import reconcile_all
from threads_app.tasks import reconcile_all_task


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ArgumentTypeError(f"must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Refresh every tracked thread's cached details from the Threads API, mark the threads "
        "it no longer has as gone and the keys it rejects as failing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--workers", type=positive_int, default=4, help="Threads checked at once (default 4)."
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=200,
            help="Threads read per query (default 200).",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Queue the reconciliation for a worker (manage.py db_worker) and return.",
        )

    def handle(
        self, *args: Any, workers: int, batch_size: int, enqueue: bool, **options: Any
    ) -> None:
        if enqueue:
            queued = reconcile_all_task.enqueue(batch_size=batch_size, workers=workers)
            self.stdout.write(f"Queued: task {queued.id} (a db_worker runs it).")
            return
        summary = reconcile_all(batch_size=batch_size, workers=workers)
        self.stdout.write(
            f"Checked: {summary.checked} threads. Gone upstream: {summary.gone}. "
            f"Keys failing: {len(summary.rejected_keys)}. Errors: {len(summary.errors)}. "
            f"Skipped (key rejected): {summary.skipped}."
        )
        for result in summary.rejected_keys.values():
            self.stdout.write(f"Key failing: {result.message}")
        for result in summary.errors:
            self.stdout.write(f"Error: {result.message}")
