"""`manage.py demo`: a complete local demo with nothing to configure and no network.

Starts the Threads API emulator in-process on a free loopback port, points the app at it,
resets and seeds the demo database (users, a team with every role, keys and threads) and
serves on http://127.0.0.1:8000, with a background worker (`manage.py db_worker`) beside the
dev server: a subprocess with the same environment plus the emulator's URL, as production
runs it, stopped when the demo stops. Demo mode only: it refuses to run unless DJANGO_DEBUG
is on.

SIGTERM (what a process manager, or a terminal being closed, sends) stops it as Ctrl+C does:
the dev server stops, then the worker. Should the demo die without that (SIGKILL), the worker
notices its parent is gone and stops on its own (`db_worker --parent-pid`).
"""

import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from emulator import Emulator
from threads_app import demo_data, demo_sso


class Command(BaseCommand):
    help = "Run the demo: emulator + seeded SQLite database + dev server on 127.0.0.1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-serve", action="store_true", help="Seed and exit (used by the tests)."
        )
        parser.add_argument(
            "--sso",
            action="store_true",
            help="Also start a local OpenID Connect provider: sso-sam logs in with Demo SSO.",
        )

    def handle(self, *args: Any, port: int, no_serve: bool, sso: bool, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("The demo runs only with DJANGO_DEBUG=1 (use `make demo`).")
        # SIGTERM as Ctrl+C: a KeyboardInterrupt, so every `finally` below runs.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        self._reset_demo_database()
        call_command("migrate", verbosity=0, interactive=False)
        call_command("createcachetable", verbosity=0)
        emulator = Emulator(keys=list(demo_data.DEMO_SECRETS.values()), latency=0.05)
        emulator.start()
        settings.UMAMIAI_BASE_URL = emulator.base_url
        # Webhook receivers on this machine are welcome in the demo (README, "Webhooks").
        settings.WEBHOOK_ALLOW_PRIVATE = True
        try:
            seeded = demo_data.seed()
            self.stdout.write(self.style.SUCCESS(f"Emulator at {emulator.base_url}"))
            for username, password, role in demo_data.DEMO_LOGINS:
                self.stdout.write(f"  log in as {username} / {password}  ({role})")
            self.stdout.write(
                f"  {demo_data.TWO_FACTOR_USER}'s two-factor (TOTP) secret: {seeded.totp_secret}\n"
                "    add it to an authenticator app (or `oathtool --totp -b SECRET`) for the code"
                " the log-in asks for after the password"
            )
            self.stdout.write("  emails sent (password resets, invitations): /accounts/dev/emails/")
            self.stdout.write(
                f'  demo\'s API token (every scope; README, "The automation API"):\n'
                f"    export TOKEN={seeded.api_token}"
            )
            with ExitStack() as stack:
                if sso:
                    bases = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
                    provider = stack.enter_context(demo_sso.demo_sso(settings, bases))
                    self.stdout.write(
                        f'  single sign-on: "Log in with {demo_sso.PROVIDER_NAME}" as '
                        f"{demo_sso.USERNAME} / {demo_sso.PASSWORD} at the provider "
                        f"({provider.issuer}); group {demo_sso.GROUP} makes them a member of "
                        f"{demo_sso.TEAM}"
                    )
                if not no_serve:
                    self._serve(port, emulator.base_url)
        finally:
            emulator.close()

    def _serve(self, port: int, base_url: str) -> None:
        """The dev server in this process, the worker in a child that reaches the emulator."""
        worker = subprocess.Popen(  # noqa: S603 (this interpreter, our own arguments)
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--no-reload",
                "--interval",
                "0.5",
                "--parent-pid",
                str(os.getpid()),
            ],
            cwd=settings.BASE_DIR,
            env={**os.environ, "UMAMIAI_BASE_URL": base_url, "WEBHOOK_ALLOW_PRIVATE": "1"},
            # Its own process group: Ctrl+C stops the demo, which then stops the worker once
            # (a second signal would make the worker abandon its task).
            start_new_session=True,
        )
        try:
            self.stdout.write(self.style.SUCCESS(f"Worker running (pid {worker.pid})"))
            self.stdout.write(self.style.SUCCESS(f"Serving on http://127.0.0.1:{port}/"))
            # Out now, not when a buffer fills: stdout may be a pipe (`make demo | tee`, tests).
            self.stdout.flush()
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            worker.terminate()  # SIGTERM: it finishes its task, then exits
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()

    def _reset_demo_database(self) -> None:
        """The emulator forgets everything on exit, so the demo starts from a clean database.

        Only an SQLite file whose name contains "demo" is removed, never a real database.
        """
        database = settings.DATABASES["default"]
        name = Path(str(database["NAME"]))
        if database["ENGINE"] != "django.db.backends.sqlite3" or "demo" not in name.name:
            raise CommandError(
                "The demo needs its own SQLite database: DATABASE_URL=sqlite:///demo.sqlite3"
            )
        connections.close_all()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)
