"""`manage.py db_worker`: django-tasks-db's worker with a heartbeat and a sweep.

Why this file wins the name: Django takes a management command from the first app in
INSTALLED_APPS that has one of that name, and threads_app is listed before django_tasks_db
(dashboard/settings.py), so `manage.py db_worker` is this subclass; `manage.py help
db_worker` shows the help text below. The options are the base command's.

What it adds to the base worker, which has no lease (a worker killed with -9 leaves its task
RUNNING for ever):
- it checks the database first, and exits with a clear error (status 1) if it cannot reach
  it or the migrations are not applied;
- a heartbeat: a `WorkerHeartbeat` row written at start and then every
  WORKER_HEARTBEAT_SECONDS by a daemon thread, so it keeps beating while a long task runs;
  removed when the worker stops cleanly;
- a sweep between tasks, at most every WORKER_SWEEP_SECONDS: `threads_app.tasks.sweep()`
  fails the tasks of workers that stopped beating, so their work can be resumed;
- `--parent-pid PID`: it stops (as on SIGTERM: its task first) once that process is no longer
  its parent, so a worker started by another process (the demo) never outlives it, however
  that process ended (SIGKILL included). A worker in its own session gets no signal when its
  parent dies: it polls.
"""

import logging
import os
import signal
import socket
import threading
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.utils import timezone
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker

from threads_app import selectors, tasks
from threads_app.models import WorkerHeartbeat

logger = logging.getLogger(__name__)
# How often a worker started with --parent-pid looks for its parent.
PARENT_POLL_SECONDS = 0.5


class Heartbeat:
    """This process's `WorkerHeartbeat` row, beaten by a daemon thread until `stop()`."""

    def __init__(self, worker_id: str, *, every: float) -> None:
        self.worker_id = worker_id
        self.every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Write the first beat here (so a claim never precedes it), then beat in a thread."""
        now = timezone.now()
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={"beat_at": now},
            create_defaults={
                "beat_at": now,
                "started_at": now,
                "hostname": socket.gethostname()[:255],
                "pid": os.getpid(),
            },
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove the row; also after a `start()` that a signal cut short."""
        self._stopped.set()
        if self._thread.ident is not None:
            self._thread.join()
        WorkerHeartbeat.objects.filter(worker_id=self.worker_id).delete()

    def _run(self) -> None:
        try:
            while not self._stopped.wait(self.every):
                try:
                    self.beat()
                except DatabaseError:
                    logger.exception("Worker %s could not write its heartbeat", self.worker_id)
                    connection.close()  # a lost connection: the next beat opens a new one
        finally:
            connection.close()  # this thread's connection

    def beat(self) -> None:
        now = timezone.now()
        beaten = WorkerHeartbeat.objects.filter(worker_id=self.worker_id).update(beat_at=now)
        if not beaten:  # swept while the database was out of reach: this worker is back
            WorkerHeartbeat.objects.create(
                worker_id=self.worker_id,
                beat_at=now,
                started_at=now,
                hostname=socket.gethostname()[:255],
                pid=os.getpid(),
            )


class Worker(db_worker.Worker):
    """The base worker, with a heartbeat around its loop and a sweep between its tasks.

    The hook for the sweep is the `running` flag: the base loop reads it at the top of every
    turn (before it looks for the next task) and before each idle sleep, never while a task
    runs. The signal handler reads it too, so `shutdown` marks the worker as stopping first.
    """

    def __init__(
        self,
        *,
        heartbeat_seconds: float,
        sweep_seconds: float,
        parent_pid: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._running = True
        self._parent_pid = parent_pid
        self._stopping = False
        self._heartbeat_seconds = heartbeat_seconds
        self._sweep_seconds = sweep_seconds
        self._next_sweep = 0.0
        super().__init__(**kwargs)

    @property
    def running(self) -> bool:
        if self._running and not self._stopping and time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self._sweep_seconds
            self.sweep()
        return self._running

    @running.setter
    def running(self, value: bool) -> None:
        self._running = value

    def sweep(self) -> None:
        """`tasks.sweep()` (it logs what it finds); a database error is logged, not fatal."""
        try:
            tasks.sweep()
        except DatabaseError:
            logger.exception("Worker %s could not sweep for abandoned tasks", self.worker_id)

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        """The first signal stops the loop at its next turn: after the task, or after the idle
        sleep (`--interval`). The base exits at once when idle, raising SystemExit wherever the
        worker is, in the middle of a database call too (a sweep's commit), which could leave
        its heartbeat behind. A second signal still stops it at once."""
        self._stopping = True
        if not self.running:
            super().shutdown(signum, frame)
            return
        logger.warning("Received %s - stopping after this turn", signal.strsignal(signum))
        self.running = False

    def watch_parent(self, parent_pid: int) -> None:
        """Once `parent_pid` is no longer this process's parent (it ended, and this one was
        re-parented), stop as on SIGTERM. Runs in a daemon thread."""
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        logger.warning("Worker %s: its parent %d is gone, stopping", self.worker_id, parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    def run(self) -> None:
        if self._parent_pid is not None:
            watch = threading.Thread(
                target=self.watch_parent, args=(self._parent_pid,), name="parent", daemon=True
            )
            watch.start()
        heartbeat = Heartbeat(self.worker_id, every=self._heartbeat_seconds)
        try:
            # Inside the `try`: a SIGTERM right after the first beat is written (its handler
            # raises SystemExit wherever the worker is) must still remove it.
            heartbeat.start()
            super().run()
        finally:
            heartbeat.stop()


def check_database() -> None:
    """Exit (CommandError, status 1) when the worker could not use the database."""
    problem = selectors.database_problem()
    database = settings.DATABASES["default"]
    where = database.get("HOST") or database.get("NAME")
    if problem == "unreachable":
        raise CommandError(
            f"db_worker cannot reach the database ({database['ENGINE'].rsplit('.', 1)[-1]} at "
            f"{where}): check DATABASE_URL and that the database server is up."
        )
    if problem is not None:
        raise CommandError(
            "db_worker found the database's migrations not applied: run "
            "`python manage.py migrate` first."
        )


class Command(db_worker.Command):
    help = (
        "Run a database background worker (django-tasks-db's, with a heartbeat every "
        "WORKER_HEARTBEAT_SECONDS and a sweep for tasks whose worker stopped beating)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--parent-pid",
            type=int,
            default=None,
            help="Stop (finishing the task first) once this process is no longer the "
            "worker's parent. Needs --no-reload.",
        )

    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        exclude_queues: str,
        reload: bool,
        **options: Any,
    ) -> None:
        self.configure_logging(verbosity)
        parent_pid: int | None = options["parent_pid"]
        if parent_pid is not None and reload and not options["batch"]:
            raise CommandError("--parent-pid needs --no-reload (the reloader is the parent).")
        check_database()
        queue_names = queue_name.split(",")
        excluded = exclude_queues.split(",") if exclude_queues else []
        if excluded and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        worker = Worker(
            queue_names=queue_names,
            excluded_queue_names=excluded,
            heartbeat_seconds=settings.WORKER_HEARTBEAT_SECONDS,
            sweep_seconds=settings.WORKER_SWEEP_SECONDS,
            parent_pid=parent_pid,
            **{name: options[name] for name in WORKER_OPTIONS},
        )
        if reload and not options["batch"]:
            if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                worker.configure_signals()  # only the reloaded child handles signals
            run_with_reloader(worker.run)
        else:
            worker.configure_signals()
            worker.run()


# The base command's options that the worker takes as they are.
WORKER_OPTIONS = ("interval", "batch", "backend_name", "startup_delay", "max_tasks", "worker_id")
