"""`manage.py demo` seeds what the README promises, and runs only in debug mode."""

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from threads_app.crypto import decrypt_secret

ROOT = Path(__file__).resolve().parent.parent


def demo_environment(tmp_path, debug="1", database_name="demo.sqlite3"):
    # Without PYTHONUNBUFFERED, as `make demo` from a plain shell: the demo's stdout to a pipe
    # is block-buffered, and its "Serving on" line must come out all the same (issue 16: with
    # it unset, the test waited for a line that sat in the buffer).
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DJANGO_DEBUG=debug,
        DATABASE_URL=f"sqlite:///{tmp_path / database_name}",
    )
    return env


def run_demo(tmp_path, debug="1", database_name="demo.sqlite3"):
    return subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve"],
        cwd=ROOT,
        env=demo_environment(tmp_path, debug, database_name),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_seeds_users_team_keys_and_threads_afresh_each_time(tmp_path):
    assert run_demo(tmp_path).returncode == 0
    result = run_demo(tmp_path)  # the second start rebuilds, it does not add to the first
    assert result.returncode == 0, result.stderr
    for login in ("demo / demo-password", "mia / mia-password", "victor / victor-password"):
        assert login in result.stdout
    assert "sk-demo" not in result.stdout + result.stderr
    assert re.search(r"export TOKEN=tc_\S{43}\n", result.stdout)

    db = sqlite3.connect(tmp_path / "demo.sqlite3")
    users = {row[0] for row in db.execute("SELECT username FROM auth_user")}
    assert users == {"demo", "mia", "victor", "admin", "tess"}
    roles = dict(
        db.execute(
            "SELECT u.username, m.role FROM threads_app_membership m "
            "JOIN auth_user u ON u.id = m.user_id JOIN threads_app_team t ON t.id = m.team_id "
            "WHERE t.name = 'Demo team'"
        )
    )
    assert roles == {"demo": "owner", "mia": "member", "victor": "viewer", "tess": "member"}
    key_rows = db.execute("SELECT label, hint, secret_encrypted FROM threads_app_apikey").fetchall()
    assert len(key_rows) == 2
    assert all("sk-demo" not in secret for _, _, secret in key_rows)
    assert db.execute("SELECT count(*) FROM threads_app_trackedthread").fetchone()[0] == 5
    actions = [row[0] for row in db.execute("SELECT action FROM threads_app_auditevent")]
    assert actions.count("thread.created") == 5


def test_demo_never_touches_a_database_not_named_for_it(tmp_path):
    real = tmp_path / "production.sqlite3"
    real.write_bytes(b"precious")
    result = run_demo(tmp_path, database_name="production.sqlite3")
    assert result.returncode != 0
    assert "needs its own SQLite database" in result.stderr
    assert real.read_bytes() == b"precious"


def test_demo_refuses_outside_debug_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 60)
    monkeypatch.setenv("AUDIT_HMAC_KEY", "audit")
    monkeypatch.setenv("CREDENTIAL_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZlcm5ldC1rZXktbnVtYmVyLW9uZS0=")
    result = run_demo(tmp_path, debug="0")
    assert result.returncode != 0
    assert "The demo runs only with DJANGO_DEBUG=1" in result.stderr
    assert not (tmp_path / "demo.sqlite3").exists()


class Demo:
    """`manage.py demo` serving, as a subprocess; its output is read all along by a thread
    (a pipe nobody reads would block it once full)."""

    def __init__(self, tmp_path, *options):
        self.env = demo_environment(tmp_path)
        self.database = tmp_path / "demo.sqlite3"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", *options, "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = queue.Queue()
        self.output = []
        self.worker_pid = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text, timeout=120):
        """The output up to the line holding `text`; fails with what came if it never does."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.output):
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no {text!r} within {timeout} s:\n{''.join(self.output)}")
            if line is None:
                pytest.fail(f"the demo ended before {text!r}:\n{''.join(self.output)}")
            self.output.append(line)
        return "".join(self.output)

    def serving(self):
        """Wait until it serves and its worker beats; the worker's pid."""
        output = self.wait_for("Serving on")
        worker_pid = int(re.search(r"Worker running \(pid (\d+)\)", output).group(1))
        self.worker_pid = worker_pid
        db = sqlite3.connect(self.database, timeout=20)
        deadline = time.monotonic() + 60
        while db.execute("SELECT count(*) FROM threads_app_workerheartbeat").fetchone()[0] != 1:
            assert time.monotonic() < deadline, "the worker never beat"
            time.sleep(0.1)
        return worker_pid

    def stop(self, signum=signal.SIGINT):
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def kill(self):
        """Whatever a failed test left running: the demo, its worker."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.worker_pid is not None and alive(self.worker_pid):
            os.kill(self.worker_pid, signal.SIGKILL)


@pytest.fixture
def demo(tmp_path):
    started = Demo(tmp_path)
    yield started
    started.kill()


def alive(pid):
    """Whether the process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid, seconds):
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def heartbeats(database):
    db = sqlite3.connect(database, timeout=20)
    return db.execute("SELECT count(*) FROM threads_app_workerheartbeat").fetchone()[0]


def test_demo_serves_with_a_worker_that_reaches_the_emulator_and_stops_with_it(demo, tmp_path):
    env = demo.env
    try:
        worker_pid = demo.serving()
        queued = subprocess.run(
            [sys.executable, "manage.py", "reconcile_threads", "--enqueue"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert queued.returncode == 0, queued.stderr
        db = sqlite3.connect(tmp_path / "demo.sqlite3", timeout=20)
        deadline = time.monotonic() + 60
        status = None
        while status != "SUCCESSFUL" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = db.execute("SELECT status FROM django_tasks_database_dbtaskresult").fetchone()
            status = status and status[0]
        assert status == "SUCCESSFUL"  # the worker reached the in-process emulator
        checked = db.execute(
            "SELECT count(*) FROM threads_app_trackedthread WHERE last_checked_at IS NOT NULL"
        ).fetchone()[0]
        assert checked == 5
        assert db.execute("SELECT count(*) FROM threads_app_workerheartbeat").fetchone()[0] == 1
        _the_readmes_curl_examples_work(demo.wait_for("Serving on"), demo.port)
    finally:
        demo.stop(signal.SIGINT)  # Ctrl+C on the demo alone
    with pytest.raises(ProcessLookupError):  # the worker stopped with the demo
        os.kill(worker_pid, 0)
    assert db.execute("SELECT count(*) FROM threads_app_workerheartbeat").fetchone()[0] == 0


def test_sigterm_stops_the_demo_and_its_worker_as_ctrl_c_does(demo):
    worker_pid = demo.serving()
    status = demo.stop(signal.SIGTERM)  # a process manager, a terminal being closed
    assert status == 0, "".join(demo.output)
    assert gone_within(worker_pid, 5)
    assert heartbeats(demo.database) == 0  # it stopped cleanly, not killed


def test_the_worker_stops_when_the_demo_dies_without_a_word(demo):
    """SIGKILL leaves the demo no chance to stop its worker: the worker sees its parent go."""
    worker_pid = demo.serving()
    demo.process.kill()
    demo.process.wait(timeout=10)
    assert gone_within(worker_pid, 5)
    assert heartbeats(demo.database) == 0  # it stopped cleanly: its parent going is a SIGTERM


def test_the_demo_prints_the_two_factor_user_s_secret_and_its_codes_log_in(tmp_path):
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tess / tess-password" in result.stdout
    secret = re.search(r"tess's two-factor \(TOTP\) secret: ([A-Z2-7]+)", result.stdout).group(1)
    db = sqlite3.connect(tmp_path / "demo.sqlite3")
    types = {
        row[0]
        for row in db.execute(
            "SELECT a.type FROM mfa_authenticator a JOIN auth_user u ON u.id = a.user_id "
            "WHERE u.username = 'tess'"
        )
    }
    assert types == {"totp", "recovery_codes"}
    # The printed secret is the one the log-in checks codes against (encrypted at rest under
    # CREDENTIAL_ENCRYPTION_KEYS, as API keys are: the demo has this process's).
    [data] = db.execute(
        "SELECT a.data FROM mfa_authenticator a JOIN auth_user u ON u.id = a.user_id "
        "WHERE u.username = 'tess' AND a.type = 'totp'"
    ).fetchone()
    stored = json.loads(data)["secret"]
    assert secret not in stored
    assert decrypt_secret(stored) == secret


def test_a_worker_watching_its_parent_refuses_the_reloader(tmp_path):
    """Under the reloader the worker's parent is the reloader, never the process named."""
    result = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--reload", "--parent-pid", str(os.getpid())],
        cwd=ROOT,
        env=demo_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--parent-pid needs --no-reload" in result.stderr


def test_the_demo_with_sso_logs_sso_sam_in_through_its_provider(tmp_path):
    """`manage.py demo --sso` (what `make demo` runs): "Log in with Demo SSO" on the log-in
    page, the provider's log-in as sso-sam, and back on the overview as a member of Demo team
    through the mapping; the provider stops with the demo."""
    import requests

    from tests.oidc_fixtures import provider_log_in

    demo = Demo(tmp_path, "--sso")
    base = f"http://127.0.0.1:{demo.port}"
    try:
        output = demo.wait_for("Serving on")
        assert '"Log in with Demo SSO" as sso-sam / sso-sam-password' in output
        issuer = re.search(r"at the provider \((http://127\.0\.0\.1:\d+/o)\)", output).group(1)
        browser = requests.Session()
        for _ in range(100):  # the dev server starts listening just after it says so
            try:
                page = browser.get(f"{base}/accounts/login/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert "Log in with Demo SSO" in page.text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        start = browser.post(
            f"{base}/accounts/oidc/demo-sso/login/",
            data={"csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
            allow_redirects=False,
            timeout=10,
        )
        assert start.headers["Location"].startswith(f"{issuer}/authorize/")
        back = provider_log_in(browser, start.headers["Location"], "sso-sam", "sso-sam-password")
        landed = browser.get(back, allow_redirects=False, timeout=10)
        assert landed.headers["Location"] == "/overview/"
        overview = browser.get(f"{base}/overview/", timeout=10)
        assert "sso-sam" in overview.text
        db = sqlite3.connect(tmp_path / "demo.sqlite3", timeout=20)
        [(role, managed_by)] = db.execute(
            "SELECT m.role, m.managed_by FROM threads_app_membership m "
            "JOIN auth_user u ON u.id = m.user_id JOIN threads_app_team t ON t.id = m.team_id "
            "WHERE u.username = 'sso-sam' AND t.name = 'Demo team'"
        ).fetchall()
        assert (role, managed_by) == ("member", "demo-sso")
    finally:
        demo.stop()
        demo.kill()
    with pytest.raises(requests.ConnectionError):  # the provider stopped with the demo
        requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5)


def _the_readmes_curl_examples_work(output, port):
    """The three curl examples of the README, as written, against the served demo with the
    token it printed: the list, a delete (twice: the same answer), the audit stream."""
    token = re.search(r"export TOKEN=(tc_\S+)", output).group(1)
    readme = (ROOT / "README.md").read_text()
    examples = [line for line in readme.splitlines() if line.startswith("curl ")]
    assert len(examples) == 3

    def run(command):
        command = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        done = subprocess.run(
            ["sh", "-c", command],
            env={**os.environ, "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listed, deletion, stream = examples
    threads = json.loads(run(listed))["threads"]
    assert [t["label"] for t in threads] == ["Support tickets summary"]
    first, again = json.loads(run(deletion)), json.loads(run(deletion))
    assert (first["outcome"], first["repeated"], again["repeated"]) == ("success", False, True)
    events = [json.loads(line) for line in run(stream).splitlines()]
    assert [e["action"] for e in events[:2]] == ["thread.deleted", "thread.delete_intent"]
