"""`manage.py enforce_retention`: delete the threads that enabled retention policies let go.

For cron, with the app's environment, e.g. nightly:

    15 3 * * * cd /srv/threads-console && .venv/bin/python manage.py enforce_retention

Each key's threads go in bulk-delete jobs (the audited pipeline), which `db_worker` runs. By
default the command waits for them (at most `--wait-seconds`) and reports their outcomes; a
job still running then is an error (exit 1) that names it, so cron mails it. `--no-wait`
returns once the jobs are queued.
`--dry-run` prints, per key, how many threads would go and their ids, and changes nothing.
`--enqueue` queues `enforce_retention_task` for a `manage.py db_worker` instead.
"""

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from threads_app import selectors
from threads_app.models import BulkDeleteJob
from threads_app.services.retention import Enforcement, enforce_retention
from threads_app.tasks import enforce_retention_task

POLL_SECONDS = 0.5
WAIT_SECONDS = 600.0


class Command(BaseCommand):
    help = (
        "Delete the threads older than their key's enabled retention policy allows, through "
        "audited bulk-delete jobs started in the name of whoever set the policy."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print what would be deleted (per key: how many threads, and their ids).",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Queue the enforcement for a worker (manage.py db_worker) and return.",
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="Return once the jobs are queued, without waiting for their outcomes.",
        )
        parser.add_argument(
            "--wait-seconds",
            type=float,
            default=WAIT_SECONDS,
            help=f"How long to wait for the jobs before giving up (default {WAIT_SECONDS:g}).",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool,
        enqueue: bool,
        no_wait: bool,
        wait_seconds: float,
        **options: Any,
    ) -> None:
        if enqueue:
            queued = enforce_retention_task.enqueue()
            self.stdout.write(f"Queued: task {queued.id} (a db_worker runs it).")
            return
        done = enforce_retention(dry_run=dry_run)
        if dry_run:
            self.stdout.write("Dry run: nothing is deleted.")
        if not done:
            self.stdout.write("No retention policy is enabled.")
        for enforcement in done:
            self._report(enforcement, dry_run=dry_run)
        jobs = [enforcement.job for enforcement in done if enforcement.job is not None]
        if jobs and not no_wait:
            self._wait(jobs, deadline=time.monotonic() + wait_seconds)

    def _report(self, enforcement: Enforcement, *, dry_run: bool) -> None:
        policy = enforcement.policy
        key = policy.api_key
        owner = f"team {key.team.name}" if key.team else f"personal, {key.owner}"
        setter = policy.set_by.get_username() if policy.set_by else "(gone)"
        heading = (
            f"Key “{key.label}” ({key.hint}, {owner}): policy #{policy.pk}, "
            f"{policy.max_age_days} days, set by {setter}"
        )
        if enforcement.not_enforced:
            self.stdout.write(f"{heading}: NOT ENFORCED: {enforcement.not_enforced}")
            return
        count = enforcement.count
        verb = "would go" if dry_run else "to delete"
        job = f", job #{enforcement.job.pk}" if enforcement.job is not None else ""
        self.stdout.write(f"{heading}: {count} thread{'s' if count != 1 else ''} {verb}{job}")
        for thread_id in enforcement.thread_ids:
            self.stdout.write(f"  {thread_id}")

    def _wait(self, jobs: list[BulkDeleteJob], *, deadline: float) -> None:
        """Until the jobs are finished, then what became of each one's threads; past the
        deadline, a CommandError naming the jobs still running."""
        for job in jobs:
            job.refresh_from_db(fields=["state"])
            while job.state in BulkDeleteJob.ACTIVE_STATES:
                if time.monotonic() >= deadline:
                    still = BulkDeleteJob.objects.filter(
                        pk__in=[j.pk for j in jobs], state__in=BulkDeleteJob.ACTIVE_STATES
                    ).order_by("pk")
                    running = ", ".join(f"#{pk}" for pk in still.values_list("pk", flat=True))
                    raise CommandError(
                        f"Still running after the wait: job {running}. They go on in the "
                        "background: is a worker (manage.py db_worker) running? "
                        "`manage.py resume_jobs` lists stuck jobs."
                    )
                time.sleep(POLL_SECONDS)
                job.refresh_from_db(fields=["state"])
            counts = selectors.job_progress(job).counts
            outcomes = ", ".join(f"{label.lower()}: {n}" for _, label, n in counts if n)
            self.stdout.write(f"Job #{job.pk} {job.get_state_display().lower()}: {outcomes}.")
