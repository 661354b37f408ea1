"""`manage.py resume_jobs [--resume]`: list the bulk-delete jobs nothing is running; resume them.

A job is stuck when it is not finished and no task will finish it: its task is gone or ended,
or the worker running it stopped beating for WORKER_LEASE_SECONDS; or its task raised (the job
failed) with items still pending. The workers' sweep resumes the jobs of a worker that stopped
on its own; this is for the rest, and for a deployment with no worker running the sweep.
`--resume` sweeps first (as a worker would), then queues a new task for each job still stuck:
its interrupted items are checked upstream first, the others sent. Exits 1 when it lists
stuck jobs without `--resume` (for a cron check).
"""

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from threads_app import tasks
from threads_app.models import BulkDeleteJob


class Command(BaseCommand):
    help = "List the bulk-delete jobs that nothing is running (stuck); --resume queues them again."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Resume every stuck job: a new task for each (a db_worker runs it).",
        )

    def handle(self, *, resume: bool, **options: Any) -> None:
        if resume:
            for result in tasks.sweep():
                self.stdout.write(
                    f"Swept task {result.pk} ({result.task_path}): its worker stopped."
                )
        stuck = tasks.stuck_jobs(lease_seconds=settings.WORKER_LEASE_SECONDS)
        if not stuck:
            self.stdout.write("No stuck bulk-delete jobs.")
            return
        for job in stuck:
            progress = job.job.progress_at
            saved = f", progress last saved {progress:%Y-%m-%d %H:%M:%S} UTC" if progress else ""
            self.stdout.write(
                f"Job #{job.job.pk} ({job.job.state}, {job.pending} pending): {job.reason}{saved}"
            )
            if resume:
                if tasks.resume_stuck_job(job):
                    self.stdout.write(
                        f"  resumed: task {BulkDeleteJob.objects.get(pk=job.job.pk).task_id}"
                    )
                else:
                    self.stdout.write("  changed meanwhile, left as it is")
        if not resume:
            raise CommandError(f"{len(stuck)} stuck job(s); run with --resume to resume them.")
