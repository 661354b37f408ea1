"""`manage.py wait_for_database [--migrations] [--timeout S]`: wait until the database answers
(with --migrations: and every migration is applied), then exit 0; exit 1 naming what is
missing once the timeout passes.

The image's entrypoint runs it before the web migrates (the database container may still be
starting) and before the worker starts (it waits for the web's migrations): compose's
`depends_on` conditions are not honoured by every engine, so each container waits on its own.
"""

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from threads_app import selectors

POLL_SECONDS = 2.0
SAY_EVERY_SECONDS = 10.0


class Command(BaseCommand):
    help = (
        "Wait until the database answers (with --migrations: and every migration is applied); "
        "exit 1 after --timeout seconds."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--migrations", action="store_true", help="also wait until no migration is pending"
        )
        parser.add_argument(
            "--timeout", type=float, default=300.0, help="seconds to wait at most (default 300)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        timeout: float = options["timeout"]
        if timeout < 0:
            raise CommandError("--timeout cannot be negative.")
        started = time.monotonic()
        said_at: float | None = None
        while (problem := self._problem(options["migrations"])) is not None:
            waited = time.monotonic() - started
            if waited >= timeout:
                raise CommandError(f"Gave up after {waited:.0f} s: {problem}.")
            if said_at is None or waited - said_at >= SAY_EVERY_SECONDS:
                self.stdout.write(f"Waiting: {problem} ({waited:.0f} s so far)")
                said_at = waited
            connection.close()  # a fresh connection next time, not a broken one
            time.sleep(min(POLL_SECONDS, max(0.0, timeout - waited)))
        self.stdout.write("The database is ready.")

    @staticmethod
    def _problem(migrations: bool) -> str | None:
        problem = selectors.database_problem()
        if problem == "unreachable":
            return "the database does not answer (DATABASE_URL, and is its server up?)"
        if problem is not None and migrations:
            return "migrations are not applied yet (the web container applies them)"
        return None
