"""`manage.py demo` seeds what the README promises, and runs only in debug mode."""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from threads_app.crypto import decrypt_secret

ROOT = Path(__file__).resolve().parent.parent


def demo_environment(tmp_path, debug="1", database_name="demo.sqlite3"):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
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


def test_demo_serves_with_a_worker_that_reaches_the_emulator_and_stops_with_it(tmp_path):
    env = demo_environment(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = ""
        while "Serving on" not in output:
            line = demo.stdout.readline()
            assert line, output
            output += line
        worker_pid = int(re.search(r"Worker running \(pid (\d+)\)", output).group(1))
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
        _the_readmes_curl_examples_work(output, port)
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl+C on the demo alone
        demo.communicate(timeout=60)
    with pytest.raises(ProcessLookupError):  # the worker stopped with the demo
        os.kill(worker_pid, 0)
    assert db.execute("SELECT count(*) FROM threads_app_workerheartbeat").fetchone()[0] == 0


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
