"""`manage.py verify_audit`: recompute the audit chain; exit status 1 when it is broken."""

import sys

from django.core.management.base import BaseCommand

from threads_app.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of the audit log and report the first broken event."

    def handle(self, *args, **options):
        result = verify_chain()
        if not result.ok:
            self.stderr.write(f"BROKEN at event #{result.bad_sequence}: {result.reason}")
            sys.exit(1)
        self.stdout.write(f"OK: {result.count} events, chain intact")
