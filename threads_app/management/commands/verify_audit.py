"""`manage.py verify_audit [--checkpoints FILE] [--receipt FILE]`: recompute the audit chain,
hold it to signed checkpoints written earlier, or prove a deletion receipt against both;
exit status 1 when any finds a problem."""

import sys
from argparse import ArgumentParser
from typing import Any, NoReturn

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from threads_app.audit import Verification, verify_chain, verify_checkpoints
from threads_app.receipts import ReceiptError, read_receipt, verify_receipt


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log and report the first broken event."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            help="also check the log against the checkpoints in FILE "
            "(AUDIT_CHECKPOINT_FILE, or the lines of the checkpoint logger)",
        )
        parser.add_argument(
            "--receipt",
            metavar="FILE",
            help="check a job's deletion receipt (CSV or JSON) against the log, and its "
            "checkpoint against the checkpoint log (--checkpoints, else AUDIT_CHECKPOINT_FILE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["receipt"] is not None:
            self._receipt(options["receipt"], options["checkpoints"])
            return
        result = verify_chain()
        if not result.ok:
            self._broken(result)
        path = options["checkpoints"]
        if path is None:
            self.stdout.write(f"OK: {result.count} events, chain intact")
            return
        checked = verify_checkpoints(self._lines(path, "the checkpoints"))
        if not checked.ok:
            self._broken(checked)
        self.stdout.write(f"OK: {result.count} events, chain intact")
        self.stdout.write(f"OK: {checked.count} checkpoints match the log")

    def _receipt(self, path: str, checkpoints: str | None) -> None:
        log = checkpoints or settings.AUDIT_CHECKPOINT_FILE
        if not log:
            raise CommandError(
                "A receipt is checked against the checkpoint log: pass --checkpoints FILE "
                "(or set AUDIT_CHECKPOINT_FILE)."
            )
        lines = self._lines(log, "the checkpoint log")
        try:
            with open(path, encoding="utf-8", newline="") as file:
                receipt = read_receipt(file)
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read the receipt {path}: {error}") from error
        except ReceiptError as error:
            self.stderr.write(f"BROKEN: {path} is not a receipt: {error}")
            sys.exit(1)
        result = verify_receipt(receipt, lines)
        if not result.ok:
            self._broken(result)
        sequence = receipt.checkpoint.sequence
        self.stdout.write(
            f"OK: receipt of job {receipt.job}: {len(receipt.lines)} lines, "
            f"{result.count} with their outcome events in the log"
        )
        self.stdout.write(
            f"OK: chain intact up to its checkpoint at event #{sequence}, "
            "which is signed and in the checkpoint log"
        )

    def _lines(self, path: str, what: str) -> list[str]:
        try:
            with open(path, encoding="utf-8") as file:
                return file.readlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read {what} in {path}: {error}") from error

    def _broken(self, result: Verification) -> NoReturn:
        where = "" if result.bad_sequence is None else f" at event #{result.bad_sequence}"
        self.stderr.write(f"BROKEN{where}: {result.reason}")
        sys.exit(1)
