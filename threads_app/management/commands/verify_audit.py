"""`manage.py verify_audit [--checkpoints FILE]`: recompute the audit chain, and hold it to
signed checkpoints written earlier; exit status 1 when either finds it broken."""

import sys
from argparse import ArgumentParser
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError

from threads_app.audit import Verification, verify_chain, verify_checkpoints


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log and report the first broken event."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            help="also check the log against the checkpoints in FILE "
            "(AUDIT_CHECKPOINT_FILE, or the lines of the checkpoint logger)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = verify_chain()
        if not result.ok:
            self._broken(result)
        path = options["checkpoints"]
        if path is None:
            self.stdout.write(f"OK: {result.count} events, chain intact")
            return
        try:
            with open(path, encoding="utf-8") as lines:
                checked = verify_checkpoints(lines)
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read the checkpoints in {path}: {error}") from error
        if not checked.ok:
            self._broken(checked)
        self.stdout.write(f"OK: {result.count} events, chain intact")
        self.stdout.write(f"OK: {checked.count} checkpoints match the log")

    def _broken(self, result: Verification) -> NoReturn:
        where = "" if result.bad_sequence is None else f" at event #{result.bad_sequence}"
        self.stderr.write(f"BROKEN{where}: {result.reason}")
        sys.exit(1)
