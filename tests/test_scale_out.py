"""Scale-out (issue 9 item 5): two app instances and two workers on one database, one emulator.

Two gunicorn instances (`gunicorn dashboard.wsgi`, 2 workers of 4 threads each) and two
`manage.py db_worker` processes run against the pytest-django test database, which on
PostgreSQL is a real database that every process can open; the test commits
(`transaction=True`). They all reach the session's emulator (tests/conftest.py) over
loopback HTTP, with 50 ms of latency on every answer.

One login over HTTP on the first instance; the session lives in the database, so the second
instance knows it too. Then, at once: a bulk job of 200 threads, and 200 single deletes
spread over both instances by 16 clients, some threads POSTed on both instances (a retried
POST) and some racing the bulk job. The job is polled on both instances until its page says
it is finished, wherever it runs (a web process's thread or a worker's task). Then:

- every thread was DELETEd upstream exactly once (the emulator's request log), and is gone
  there and deleted here;
- every deletion has one intent and one outcome (success, 200) naming it, and the audit
  chain verifies;
- no answer was a 5xx.

PostgreSQL only (SQLite serializes every writer, which is not what scale-out is about): when
the database is not PostgreSQL, tests/conftest.py lists this module in `collect_ignore`, so
it is not collected at all (never a skip). pytest still collects a file named on its command
line: then this module stops the run with a usage error saying to set DATABASE_URL. `make
test` runs it in its PostgreSQL pass (the whole suite again on PostgreSQL); on its own:

    DATABASE_URL=postgres://user:pass@127.0.0.1:5432/db .venv/bin/python -m pytest -q \
        tests/test_scale_out.py
"""

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.db import connection

from tests.conftest import TEST_KEY
from tests.threads_helpers import url
from tests.worker_fixtures import ROOT, wait_for, worker_environment
from threads_app import audit
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteJob,
    Membership,
    TrackedThread,
    WorkerHeartbeat,
)

if connection.vendor != "postgresql":  # named on the command line (conftest ignores it otherwise)
    raise pytest.UsageError(
        "tests/test_scale_out.py runs on PostgreSQL only: set DATABASE_URL=postgres://…"
    )

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome

LATENCY = 0.05  # seconds before each emulator answer
SINGLES = 200  # threads deleted one by one, over both instances
BULK = 200  # threads of the bulk job
TWICE = 40  # single-delete threads POSTed a second time, on the other instance
RACED = 10  # bulk-job threads also sent a single delete while the job runs
CLIENTS = 16  # concurrent HTTP clients
REQUEST_TIMEOUT = 15.0  # seconds for one HTTP request to an instance
START_TIMEOUT = 30.0  # seconds for an instance to answer /health/
JOB_TIMEOUT = 40.0  # seconds for the bulk job to finish
LISTENING = re.compile(r"Listening at: (http://127\.0\.0\.1:\d+)")
FINISHED = re.compile(r'id="progress-title">Finished<')


class Instance:
    """One app instance: a gunicorn master with its workers, on a free loopback port."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "dashboard.wsgi",
                "--bind",
                "127.0.0.1:0",
                "--workers",
                "2",
                "--threads",
                "4",
                "--preload",
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
                # Gunicorn's control socket defaults to one path per user: two instances on one
                # host would fight over it.
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=worker_environment(DJANGO_LOG_LEVEL="WARNING"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = ""

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        """Until gunicorn says its port and /health/ answers 200 (database, migrations)."""

        def listening() -> str | None:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output}")
            match = LISTENING.search(self.output)
            return match[1] if match else None

        self.base_url = wait_for(listening, timeout=START_TIMEOUT, what=f"{self.name}'s port")
        wait_for(self._healthy, timeout=START_TIMEOUT, what=f"{self.name}'s /health/")

    def _healthy(self) -> bool:
        try:
            return requests.get(self.base_url + "/health/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM (gunicorn's graceful stop), then SIGKILL if it takes too long."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class Visitor:
    """A logged-in user's cookies, shared by many concurrent requests; every status is kept."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.statuses: Counter[int] = Counter()
        self.answers: list[tuple[str, str, int]] = []  # (method, URL, status), for failures

    def log_in(self, instance: Instance, username: str, password: str) -> None:
        """The login form over HTTP: GET it for the CSRF cookie and token, then POST."""
        with requests.Session() as session:
            page = session.get(instance.base_url + "/accounts/login/", timeout=REQUEST_TIMEOUT)
            self._note("GET", page)
            match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert match, "the login page has a CSRF token"
            answer = session.post(
                instance.base_url + "/accounts/login/",
                data={"csrfmiddlewaretoken": match[1], "login": username, "password": password},
                allow_redirects=False,
                timeout=REQUEST_TIMEOUT,
            )
            self._note("POST", answer)
            assert answer.status_code == 302, f"login failed: {answer.status_code}"
            # Logging in rotates the CSRF secret: keep the new cookie, and the session's.
            self.cookies = session.cookies.get_dict()
        assert {"sessionid", "csrftoken"} <= set(self.cookies)

    def get(self, instance: Instance, path: str) -> requests.Response:
        answer = requests.get(
            instance.base_url + path,
            cookies=self.cookies,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        return self._note("GET", answer)

    def post(self, instance: Instance, path: str, data: dict[str, Any]) -> requests.Response:
        # The CSRF cookie's secret is a valid token too (Django accepts it unmasked).
        data = {"csrfmiddlewaretoken": self.cookies["csrftoken"], **data}
        answer = requests.post(
            instance.base_url + path,
            data=data,
            cookies=self.cookies,
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        )
        return self._note("POST", answer)

    def _note(self, method: str, answer: requests.Response) -> requests.Response:
        self.statuses[answer.status_code] += 1
        self.answers.append((method, answer.url, answer.status_code))
        return answer


@pytest.fixture
def instances(transactional_db: None, tmp_path: Path) -> Iterator[list[Instance]]:
    """Two app instances on the test database (stopped before its flush)."""
    started = [Instance(name, tmp_path / f"{name}.log") for name in ("web-1", "web-2")]
    try:
        for instance in started:
            instance.wait_ready()
        yield started
    finally:
        for instance in started:
            instance.stop()


@pytest.fixture
def slow_emulator(emulator: Any) -> Any:
    emulator.set_latency(LATENCY)  # the next test's `emulator` fixture resets it
    return emulator


def seed_threads(api_key: ApiKey, emulator: Any, count: int) -> list[TrackedThread]:
    """`count` threads in the emulator under TEST_KEY, tracked under `api_key`."""
    threads = []
    for number in range(count):
        upstream = emulator.seed_thread(TEST_KEY, metadata={"n": str(number)})
        threads.append(
            TrackedThread(
                thread_id=upstream["id"],
                api_key=api_key,
                label=f"thread {number}",
                tracked_by=api_key.created_by,
                upstream_created_at=datetime.fromtimestamp(upstream["created_at"], tz=UTC),
                metadata=upstream["metadata"],
            )
        )
    return TrackedThread.objects.bulk_create(threads)


def single_deletes(
    singles: list[TrackedThread], raced: list[TrackedThread]
) -> list[tuple[int, int]]:
    """(instance index, thread pk) of each single-delete POST, in the order sent: the raced
    bulk-job threads first (the job reaches them last), then every single thread once on
    alternate instances, the first TWICE of them again on the other one a few requests later
    (while the first POST may be in flight)."""
    posts = [(number % 2, thread.pk) for number, thread in enumerate(singles)]
    for offset, (index, pk) in enumerate(posts[:TWICE]):
        posts.insert(2 * offset + 5, (1 - index, pk))
    return [(number % 2, thread.pk) for number, thread in enumerate(raced)] + posts


def deletes_sent(emulator: Any) -> Counter[str]:
    """DELETE /v1/threads/<id> requests the emulator received, per thread id."""
    return Counter(
        target.rsplit("/", 1)[1]
        for method, target in emulator.request_log
        if method == "DELETE" and target.startswith("/v1/threads/") and target.count("/") == 3
    )


def gone_upstream(emulator: Any, thread_ids: list[str]) -> list[str]:
    """The thread ids the emulator answers 404 for."""
    emulator.set_latency(0)
    headers = {"Authorization": f"Bearer {TEST_KEY}", "OpenAI-Beta": "assistants=v2"}
    with requests.Session() as session:
        statuses = {
            thread_id: session.get(
                f"{emulator.base_url}/threads/{thread_id}", headers=headers, timeout=5
            ).status_code
            for thread_id in thread_ids
        }
    return [thread_id for thread_id, status in statuses.items() if status == 404]


def wait_for_job(visitor: Visitor, instances: list[Instance], job_path: str) -> str:
    """Poll the job's page, alternating instances, until it says it is finished."""
    polls = iter(range(10**6))

    def finished() -> str | None:
        page = visitor.get(instances[next(polls) % 2], job_path)
        assert page.status_code == 200, f"the job page answered {page.status_code}"
        return page.text if FINISHED.search(page.text) else None

    return wait_for(finished, timeout=JOB_TIMEOUT, what="the bulk job to finish")


@pytest.mark.django_db(transaction=True)
def test_two_instances_and_two_workers_delete_each_thread_upstream_exactly_once(
    make_user: Callable[..., User],
    make_team: Callable[..., Any],
    make_key: Callable[..., ApiKey],
    slow_emulator: Any,
    start_worker: Callable[..., Any],
    instances: list[Instance],
) -> None:
    emulator = slow_emulator
    owner = make_user("owner")
    team = make_team("Scale-out", {owner: Membership.Role.OWNER})
    key = make_key(team=team, label="team key", created_by=owner)
    threads = seed_threads(key, emulator, SINGLES + BULK)
    singles, bulk_threads = threads[:SINGLES], threads[SINGLES:]
    workers = [start_worker("scale-out-1"), start_worker("scale-out-2")]
    wait_for(
        lambda: WorkerHeartbeat.objects.count() == 2, timeout=START_TIMEOUT, what="two workers"
    )
    visitor = Visitor()
    visitor.log_in(instances[0], "owner", "pw-owner")
    # One session, both instances: the second one reads it from the database.
    assert visitor.get(instances[1], url("thread_list")).status_code == 200

    started = visitor.post(
        instances[1], url("thread_bulk_delete"), {"thread": [t.pk for t in bulk_threads]}
    )
    assert started.status_code == 302, started.text
    job_path = started.headers["Location"]
    # The job's items go in the order of the confirmation (newest first): it reaches the
    # oldest threads last, and single deletes race it for those.
    posts = single_deletes(singles, bulk_threads[:RACED])
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(
            pool.map(
                lambda post: visitor.post(instances[post[0]], url("thread_delete", post[1]), {}),
                posts,
            )
        )
    job_page = wait_for_job(visitor, instances, job_path)

    failures = [answer for answer in visitor.answers if answer[2] >= 500]
    assert not failures, f"5xx answers: {failures[:10]}"
    assert all(answer.status_code == 302 for answer in answers)  # deleted, or already (being) so
    thread_ids = [thread.thread_id for thread in threads]
    assert deletes_sent(emulator) == dict.fromkeys(thread_ids, 1)
    assert set(TrackedThread.objects.values_list("state", flat=True)) == {"deleted"}
    assert gone_upstream(emulator, thread_ids) == thread_ids
    intents = {
        event.sequence: event.thread_id
        for event in AuditEvent.objects.filter(action=Action.THREAD_DELETE_INTENT)
    }
    outcomes = list(AuditEvent.objects.filter(action=Action.THREAD_DELETED))
    assert sorted(intents.values()) == sorted(thread_ids)  # one intent per thread
    assert len(outcomes) == len(intents)
    assert {outcome.details["intent"] for outcome in outcomes} == set(intents)
    for outcome in outcomes:
        assert intents[outcome.details["intent"]] == outcome.thread_id
        assert (outcome.outcome, outcome.http_status) == (Outcome.SUCCESS, 200)
    verification = audit.verify_chain()
    assert verification.ok, verification
    job = BulkDeleteJob.objects.get(pk=int(job_path.rstrip("/").rsplit("/", 1)[1]))
    assert job.state == BulkDeleteJob.State.FINISHED
    assert f"{BULK} of {BULK} threads done" in job_page
    assert all(worker.process.poll() is None for worker in workers)  # alive all along
    print(  # for the record: pytest -s shows what was asserted
        f"\nscale-out: {len(posts)} single POSTs + 1 bulk job of {BULK}; "
        f"statuses {dict(visitor.statuses)}; DELETEs {sum(deletes_sent(emulator).values())} "
        f"for {len(thread_ids)} threads; intents {len(intents)}, outcomes {len(outcomes)}; "
        f"chain {verification.count} events; job items "
        f"{dict(Counter(job.items.values_list('outcome', flat=True)))}"
    )
