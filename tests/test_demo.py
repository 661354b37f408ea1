"""`manage.py demo` seeds what the README promises, and runs only in debug mode."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_demo(tmp_path, debug="1", database_name="demo.sqlite3"):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        DJANGO_DEBUG=debug,
        DATABASE_URL=f"sqlite:///{tmp_path / database_name}",
    )
    return subprocess.run(
        [sys.executable, "manage.py", "demo", "--no-serve"],
        cwd=ROOT,
        env=env,
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

    db = sqlite3.connect(tmp_path / "demo.sqlite3")
    users = {row[0] for row in db.execute("SELECT username FROM auth_user")}
    assert users == {"demo", "mia", "victor", "admin"}
    roles = dict(
        db.execute(
            "SELECT u.username, m.role FROM threads_app_membership m "
            "JOIN auth_user u ON u.id = m.user_id JOIN threads_app_team t ON t.id = m.team_id "
            "WHERE t.name = 'Demo team'"
        )
    )
    assert roles == {"demo": "owner", "mia": "member", "victor": "viewer"}
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
