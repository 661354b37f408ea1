"""Background work: a real `manage.py db_worker` runs queued tasks from the database.

Each test here commits (the worker is another process) and runs a worker subprocess
(tests/worker_fixtures.py) against the test database, SQLite or PostgreSQL.
"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.test_settings import manage  # a manage.py subprocess with production settings
from tests.worker_fixtures import wait_for
from tests.worker_tasks import explode, sleep_for
from threads_app import tasks
from threads_app.models import TrackedThread, WorkerHeartbeat

State = TrackedThread.State
FINISHED = (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
worker_test = pytest.mark.django_db(transaction=True)


def finished(result):
    result.refresh()
    return result.status in FINISHED


def wait_until_running(result):
    wait_for(
        lambda: DBTaskResult.objects.filter(pk=result.id, status="RUNNING").exists(),
        what="the task to start",
    )


@worker_test
def test_the_worker_runs_reconcile_all_and_the_threads_are_reconciled(
    start_worker, api_key, make_thread, emulator
):
    live = make_thread(api_key, label="live", metadata={"stage": "old"})
    gone = make_thread(api_key, label="gone")
    emulator.remove_thread(gone.thread_id)

    result = tasks.reconcile_all_task.enqueue()
    assert DBTaskResult.objects.get(pk=result.id).status == TaskResultStatus.READY
    start_worker()
    wait_for(lambda: finished(result), what="the reconcile task")

    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.return_value == {
        "checked": 2,
        "gone": 1,
        "skipped": 0,
        "keys_failing": 0,
        "errors": 0,
    }
    live.refresh_from_db()
    gone.refresh_from_db()
    assert (live.state, gone.state) == (State.ACTIVE, State.GONE)
    assert live.last_checked_at is not None


@worker_test
def test_a_task_that_raises_is_recorded_as_failed_with_its_error(start_worker):
    result = explode.enqueue("the upstream caught fire")
    start_worker()
    wait_for(lambda: finished(result), what="the failing task")

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "tests.worker_tasks.Boom"
    assert "the upstream caught fire" in error.traceback


@worker_test
def test_a_worker_beats_while_a_long_task_runs_and_removes_its_row_when_stopped(start_worker):
    result = sleep_for.enqueue(2.5)
    worker = start_worker("beater")
    wait_until_running(result)
    first = WorkerHeartbeat.objects.get(worker_id="beater")
    assert first.pid == worker.pid
    wait_for(
        lambda: WorkerHeartbeat.objects.get(worker_id="beater").beat_at > first.beat_at,
        timeout=3,
        what="a beat during the task",
    )
    assert DBTaskResult.objects.get(pk=result.id).status == TaskResultStatus.RUNNING

    worker.stop()  # SIGTERM: the task finishes first
    assert finished(result) and result.status == TaskResultStatus.SUCCESSFUL
    assert not WorkerHeartbeat.objects.filter(worker_id="beater").exists()


@worker_test
def test_a_task_whose_worker_was_killed_is_swept_by_another_worker(start_worker):
    result = sleep_for.enqueue(60)
    doomed = start_worker("doomed")
    wait_until_running(result)
    doomed.kill()  # kill -9: the task stays RUNNING, the heartbeat stops
    survivor = start_worker("survivor")
    wait_for(lambda: finished(result), timeout=15, what="the sweep")
    wait_for(lambda: "Abandoned: worker doomed" in survivor.output, timeout=5, what="its log")

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "threads_app.tasks.WorkerLost"
    assert "worker doomed stopped beating" in error.traceback
    # The dead worker's heartbeat is cleared; the survivor's beats on.
    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == {"survivor"}


def _running_task(worker_id, *, started_ago):
    result = sleep_for.enqueue(1)
    DBTaskResult.objects.filter(pk=result.id).update(
        status=TaskResultStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=started_ago),
        worker_ids=[worker_id],
    )
    return result.id


def _beat(worker_id, *, ago):
    at = timezone.now() - timedelta(seconds=ago)
    WorkerHeartbeat.objects.create(
        worker_id=worker_id, hostname="h", pid=1, started_at=at, beat_at=at
    )


@pytest.mark.django_db
def test_sweep_fails_only_tasks_whose_worker_stopped_beating_for_the_lease(settings):
    settings.WORKER_LEASE_SECONDS = 30
    _beat("alive", ago=5)
    _beat("dead", ago=60)
    alive = _running_task("alive", started_ago=120)
    dead = _running_task("dead", started_ago=120)
    never_beat = _running_task("ghost", started_ago=120)  # a worker from before heartbeats
    just_claimed = _running_task("ghost", started_ago=1)  # within the lease: not yet
    queued = sleep_for.enqueue(1).id

    swept = tasks.sweep()

    assert {str(result.pk) for result in swept} == {dead, never_beat}
    statuses = {str(pk): status for pk, status in DBTaskResult.objects.values_list("pk", "status")}
    assert statuses[alive] == statuses[just_claimed] == TaskResultStatus.RUNNING
    assert statuses[dead] == statuses[never_beat] == TaskResultStatus.FAILED
    assert statuses[queued] == TaskResultStatus.READY
    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == {"alive"}
    assert tasks.sweep() == []  # once only


def test_manage_py_db_worker_is_threads_apps_worker():
    result = manage("help", "db_worker")
    assert result.returncode == 0, result.stderr
    assert "with a heartbeat every WORKER_HEARTBEAT_SECONDS" in " ".join(result.stdout.split())


def _worker_exit(database_url):
    database = {"DATABASE_URL": database_url}
    return manage("db_worker", "--no-reload", "--no-startup-delay", env_overrides=database)


@pytest.mark.parametrize(
    "database_url",
    [
        "postgres://nobody:pw@127.0.0.1:9/threads",  # a closed port
        "sqlite:////nonexistent-threads-console-dir/worker.sqlite3",  # a missing directory
    ],
)
def test_a_worker_that_cannot_reach_the_database_exits_with_a_clear_error(database_url):
    result = _worker_exit(database_url)
    assert result.returncode == 1
    assert "db_worker cannot reach the database" in result.stderr
    assert "check DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert ":pw@" not in result.stderr


def test_a_worker_on_an_unmigrated_database_says_to_migrate(tmp_path):
    result = _worker_exit(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert result.returncode == 1
    assert "run `python manage.py migrate` first" in result.stderr


@pytest.mark.django_db
def test_reconcile_threads_enqueue_queues_the_task_instead_of_running_it(
    api_key, make_thread, emulator
):
    make_thread(api_key)
    out = StringIO()
    call_command("reconcile_threads", "--enqueue", "--workers", "2", stdout=out)

    queued = DBTaskResult.objects.get()
    assert queued.task_path == "threads_app.tasks.reconcile_all_task"
    assert queued.status == TaskResultStatus.READY
    assert queued.args_kwargs == {"args": [], "kwargs": {"batch_size": 200, "workers": 2}}
    assert f"Queued: task {queued.pk}" in out.getvalue()
    assert emulator.request_log == []  # nothing was checked yet


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"TASKS_BACKEND": "celery"}, "TASKS_BACKEND must be one of database, immediate"),
        ({"WORKER_LEASE_SECONDS": "5"}, "WORKER_LEASE_SECONDS must be at least twice"),
        ({"METRICS_PATH": "/"}, "METRICS_PATH must name a path"),
    ],
)
def test_bad_task_and_metrics_settings_are_clear_errors(overrides, message):
    result = manage("check", env_overrides=overrides)
    assert result.returncode != 0
    assert message in result.stderr
