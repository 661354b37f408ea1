"""`manage.py audit_checkpoint`: sign the audit chain's end and write it outside the database.

Run it from cron (and before a backup): `verify_audit --checkpoints FILE` then finds a log
whose tail was removed, even with the chain head set back and its triggers dropped.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from threads_app.audit import CHECKPOINT_LOGGER, checkpoint_head


class Command(BaseCommand):
    help = (
        "Write a signed checkpoint of the audit chain's last event to the "
        f'"{CHECKPOINT_LOGGER.name}" logger and to AUDIT_CHECKPOINT_FILE (if set).'
    )

    def handle(self, *args: Any, **options: Any) -> None:
        path = settings.AUDIT_CHECKPOINT_FILE
        try:
            checkpoint = checkpoint_head()
        except OSError as error:
            raise CommandError(f"Could not append the checkpoint to {path}: {error}") from error
        if checkpoint is None:
            self.stdout.write("The audit log is empty: no checkpoint written.")
            return
        logger = f'the "{CHECKPOINT_LOGGER.name}" logger'
        where = f"{logger} and {path}" if path else f"{logger} (AUDIT_CHECKPOINT_FILE is not set)"
        self.stdout.write(f"Checkpoint at event #{checkpoint.sequence} written to {where}")
