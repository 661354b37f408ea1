"""Start and drive the test OpenID Connect provider (see tests/oidc_provider/__init__.py)."""

import json
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Provider:
    """A running provider: its issuer URL, and its admin API."""

    issuer: str
    process: subprocess.Popen[str]
    admin_token: str
    workdir: tempfile.TemporaryDirectory[str] = field(repr=False)

    def _admin(self, endpoint: str, /, **data: Any) -> dict[str, Any]:
        response = requests.post(
            f"{self.issuer.removesuffix('/o')}/__admin__/{endpoint}",
            json=data,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def user(self, username: str, password: str = "provider-password", **claims: Any) -> str:
        """Create or update a user at the provider, with these claims (groups, amr, acr,
        preferred_username, email, email_verified, name); returns its subject."""
        return str(self._admin("user", username=username, password=password, **claims)["sub"])

    def client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        self._admin(
            "client", client_id=client_id, client_secret=client_secret, redirect_uris=redirect_uris
        )

    def misbehave(self, mode: str) -> None:
        """Make the next ID tokens carry a fault (see validator.MODES); "" to stop."""
        self._admin("misbehave", mode=mode)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.workdir.cleanup()

    def __enter__(self) -> "Provider":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_provider(timeout: float = 60.0) -> Provider:
    """Start the provider in a subprocess on a free loopback port; return once it answers."""
    workdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
    token = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "OIDC_PROVIDER_DATABASE": str(Path(workdir.name) / "provider.sqlite3"),
        "OIDC_PROVIDER_ADMIN_TOKEN": token,
        "OIDC_PROVIDER_SECRET_KEY": secrets.token_urlsafe(32),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oidc_provider.serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the JSON line once it listens (or EOF if it died)
    if not line:
        process.wait(timeout)
        workdir.cleanup()
        raise RuntimeError(f"the OIDC provider exited with {process.returncode}")
    return Provider(json.loads(line)["issuer"], process, token, workdir)
