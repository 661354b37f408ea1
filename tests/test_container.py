"""What the container image relies on: the secrets generator, the wait for the database and its
migrations, the HTTPS switch, the web container's healthcheck, and the files that configure
the stack. `.ci/image.sh` builds the image and runs the stack itself (README, "Run it with
Docker Compose")."""

import io
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.test_settings import PRODUCTION_ENV, ROOT, manage

SECRETS = ["DJANGO_SECRET_KEY", "CREDENTIAL_ENCRYPTION_KEYS", "AUDIT_HMAC_KEY"]


def generated() -> dict[str, str]:
    out = io.StringIO()
    call_command("generate_secrets", stdout=out)
    lines = out.getvalue().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_generate_secrets_prints_fresh_env_lines_safe_to_paste():
    first, second = generated(), generated()

    assert list(first) == [*SECRETS, "POSTGRES_PASSWORD"]
    for name, value in first.items():
        # No quoting needed in .env, a shell or compose: no $, #, quotes or spaces.
        assert re.fullmatch(r"[A-Za-z0-9_=-]+", value), name
        assert value != second[name], name
    assert len(first["DJANGO_SECRET_KEY"]) >= 50
    assert len(set(first["DJANGO_SECRET_KEY"])) >= 5
    assert (
        Fernet(first["CREDENTIAL_ENCRYPTION_KEYS"]).decrypt(
            Fernet(first["CREDENTIAL_ENCRYPTION_KEYS"]).encrypt(b"sk-secret")
        )
        == b"sk-secret"
    )
    assert re.fullmatch(r"[0-9a-f]{48}", first["POSTGRES_PASSWORD"])


def test_generated_secrets_start_production_and_pass_the_deploy_check():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=dict(generated()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("blank", ["unset", "empty"])
def test_generate_secrets_runs_before_the_secrets_exist_in_debug_mode(blank):
    """As .env.example says: `-e DJANGO_DEBUG=1 web manage generate_secrets`, while its
    secret lines are still empty (or missing)."""
    empty = dict.fromkeys(SECRETS, "") if blank == "empty" else {}
    result = manage(
        "generate_secrets",
        env_overrides={"DJANGO_DEBUG": "1", **empty},
        drop=SECRETS if blank == "unset" else (),
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("=", 1)[0] for line in result.stdout.splitlines()] == [
        *SECRETS,
        "POSTGRES_PASSWORD",
    ]


# --- wait_for_database -------------------------------------------------------------------


@pytest.mark.django_db
def test_wait_for_database_returns_at_once_when_ready():
    out = io.StringIO()
    call_command("wait_for_database", "--migrations", "--timeout", "0", stdout=out)
    assert out.getvalue() == "The database is ready.\n"


def test_wait_for_database_refuses_a_negative_timeout():
    with pytest.raises(CommandError, match="--timeout cannot be negative"):
        call_command("wait_for_database", "--timeout", "-1")


def test_wait_for_database_gives_up_on_an_unreachable_database_without_a_traceback():
    url = "postgres://someone:hunter2-password@127.0.0.1:1/nothing"
    result = manage("wait_for_database", "--timeout", "0", env_overrides={"DATABASE_URL": url})
    assert result.returncode == 1
    assert "Gave up after 0 s: the database does not answer" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_wait_for_database_with_migrations_waits_for_them(tmp_path):
    """An empty database answers but is not migrated: the web may go on (it migrates), the
    worker waits; once the migrations are applied, the waiting worker goes on."""
    database = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}

    answers = manage("wait_for_database", "--timeout", "0", env_overrides=database)
    too_early = manage(
        "wait_for_database", "--migrations", "--timeout", "0", env_overrides=database
    )
    assert answers.returncode == 0, answers.stderr
    assert too_early.returncode == 1
    assert "migrations are not applied yet" in too_early.stderr

    waiting = subprocess.Popen(
        [sys.executable, "manage.py", "wait_for_database", "--migrations", "--timeout", "120"],
        cwd=ROOT,
        env=manage_env(database),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "Waiting: migrations are not applied yet" in waiting.stdout.readline()
        migrated = manage("migrate", "--noinput", env_overrides=database)
        assert migrated.returncode == 0, migrated.stderr
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
        waiting.communicate()
    assert waiting.returncode == 0, stderr
    assert stdout.endswith("The database is ready.\n")


def manage_env(overrides: dict[str, str]) -> dict[str, str]:
    """The environment `tests.test_settings.manage` gives its command, for a Popen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUDIT_"))}
    env.pop("CREDENTIAL_ENCRYPTION_KEYS", None)
    return {**env, **PRODUCTION_ENV, **overrides}


# --- the HTTPS switch ----------------------------------------------------------------------

SHOW_HTTPS = (
    "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, "
    "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, "
    "s.SECURE_REDIRECT_EXEMPT, s.SECURE_PROXY_SSL_HEADER)"
)


@pytest.mark.parametrize(
    ("overrides", "printed"),
    [
        (
            {},
            "True True True 31536000 ['^health/$'] ('HTTP_X_FORWARDED_PROTO', 'https')",
        ),
        ({"DJANGO_HTTPS": "0"}, "False False False 0 [] None"),
        ({"DJANGO_DEBUG": "1"}, "False False False 0 [] None"),
    ],
    ids=["production", "plain-http", "debug"],
)
def test_https_is_on_in_production_unless_turned_off(overrides, printed):
    result = manage("shell", "--no-imports", "-c", SHOW_HTTPS, env_overrides=overrides)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == printed


# --- the web container's healthcheck -------------------------------------------------------


class HealthServer(ThreadingHTTPServer):
    status = 200
    hosts: list[str]


class _Health(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        body = b'{"status": "fail"}' if self.server.status != 200 else b'{"status": "ok"}'
        self.send_response(self.server.status if self.path == "/health/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server():
    server = HealthServer(("127.0.0.1", 0), _Health)
    server.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def healthcheck(port: int, allowed_hosts: str | None) -> subprocess.CompletedProcess[str]:
    env = {"BIND": f"0.0.0.0:{port}"}
    if allowed_hosts is not None:
        env["DJANGO_ALLOWED_HOSTS"] = allowed_hosts
    return subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("allowed_hosts", "host"),
    [
        (None, "localhost"),
        ("console.example.com,localhost", "console.example.com"),
        ("*,.example.com", "example.com"),
    ],
)
def test_healthcheck_asks_an_allowed_host_and_passes_on_200(health_server, allowed_hosts, host):
    result = healthcheck(health_server.server_address[1], allowed_hosts)
    assert result.returncode == 0, result.stderr
    assert health_server.hosts == [host]


def test_healthcheck_fails_on_503_saying_what_health_said(health_server):
    health_server.status = 503
    result = healthcheck(health_server.server_address[1], None)
    assert result.returncode == 1
    assert '/health/ answered 503: {"status": "fail"}' in result.stderr


def test_healthcheck_fails_when_nothing_listens():
    with socket.socket() as bound:  # bound, not listening: the connection is refused
        bound.bind(("127.0.0.1", 0))
        result = healthcheck(bound.getsockname()[1], None)
    assert result.returncode == 1
    assert "/health/ did not answer" in result.stderr
    assert "Traceback" not in result.stderr


# --- the files that configure the stack ----------------------------------------------------


def documented_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_documents_every_variable_the_stack_reads():
    settings = (ROOT / "dashboard" / "settings.py").read_text()
    read = set(
        re.findall(r'(?:env(?:_bool|_int|_float|_list)?|_secret)\(\s*"([A-Z0-9_]+)"', settings)
    )
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", entrypoint))
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", (ROOT / "compose.yaml").read_text()))
    # Read by libraries: dj-database-url, prometheus_client and gunicorn.
    read |= {"DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS"}
    assert len(read) > 30
    assert read - documented_variables() == set()


def test_ci_stack_stays_on_loopback():
    """Every service of the CI override on the host network, and no address but 127.0.0.1."""
    text = (ROOT / ".ci" / "compose.host.yaml").read_text()
    base = yaml.safe_load((ROOT / "compose.yaml").read_text())
    override = yaml.load(text, Loader=_ComposeTags)  # noqa: S506 (a SafeLoader)

    assert set(override["services"]) == set(base["services"])
    for name, service in override["services"].items():
        assert service["network_mode"] == "host", name
    addresses = set(re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", text))
    assert addresses == {"127.0.0.1"}


class _ComposeTags(yaml.SafeLoader):
    """compose's !reset and !override tags, read as their plain value."""


_ComposeTags.add_constructor("!reset", lambda loader, node: None)
_ComposeTags.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))


def test_dockerignore_keeps_secrets_and_state_out():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :][:1] == ["*"]  # everything out, then what runs back in
    kept_in = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert kept_in.isdisjoint({".git", ".venv", ".env", "tests", "sent-emails"})
    assert (ROOT / "docker" / "entrypoint.sh").stat().st_mode & 0o111
