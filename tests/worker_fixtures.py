"""A real `manage.py db_worker` against the test database, as a subprocess.

Imported by tests/conftest.py. The worker reads what the test wrote, so a test that uses it
commits: mark it `@pytest.mark.django_db(transaction=True)`. The test database must be one
another process can open: settings_test gives SQLite a file (never the in-memory database),
and a PostgreSQL test database is a real database already. Workers are stopped before the
test's flush (the fixture depends on `transactional_db`).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Fast beats for tests; the lease stays well over two beats (settings refuse less).
WORKER_ENV = {
    "WORKER_HEARTBEAT_SECONDS": "0.3",
    "WORKER_LEASE_SECONDS": "2",
    "WORKER_SWEEP_SECONDS": "0.3",
}


def database_url():
    """The test database (the live connection's settings) as a DATABASE_URL."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    credentials = f"{quote(db['USER'])}:{quote(db['PASSWORD'])}@" if db["USER"] else ""
    return f"postgres://{credentials}{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_environment(**overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings_test",
        DATABASE_URL=database_url(),
        UMAMIAI_BASE_URL=settings.UMAMIAI_BASE_URL,
        UMAMIAI_READ_TIMEOUT=str(settings.UMAMIAI_READ_TIMEOUT),
        PYTHONUNBUFFERED="1",
        **WORKER_ENV,
    )
    env.update(overrides)
    return env


class WorkerProcess:
    def __init__(self, worker_id, log_path, **env):
        self.worker_id = worker_id
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--no-reload",
                "--no-startup-delay",
                "--interval",
                "0.1",
                "--worker-id",
                worker_id,
            ],
            cwd=ROOT,
            env=worker_environment(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self):
        return self.process.pid

    @property
    def output(self):
        return Path(self.log_path).read_text()

    def kill(self):
        """kill -9: no clean-up at all, as a crash or an OOM kill."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self):
        """SIGTERM, as a deploy does: the worker finishes its task and removes its heartbeat."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def immediate_tasks(settings):
    """Tasks run inside the caller as they are queued (django-tasks' immediate backend): for
    tests of a task's own logic. The queue path is tested with `start_worker`."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def start_worker(transactional_db, tmp_path, upstream_at_emulator):
    """start_worker(worker_id="w1", **env) -> a running WorkerProcess; all stopped after."""
    workers = []

    def start(worker_id=None, **env):
        worker_id = worker_id or f"test-worker-{len(workers) + 1}"
        worker = WorkerProcess(worker_id, tmp_path / f"{worker_id}.log", **env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout=30.0, what="the condition"):
    """Poll until predicate() is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
