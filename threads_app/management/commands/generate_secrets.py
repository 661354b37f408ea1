"""`manage.py generate_secrets`: fresh random values for the three secrets (and the compose
file's PostgreSQL password), as `.env` lines.

Each value is URL-safe (letters, digits, `-`, `_` and a Fernet key's `=`), so it needs no
quoting in a `.env` file, a shell or a compose file (no `$`, `#`, quote or space). It runs
before the secrets exist: `DJANGO_DEBUG=1` lets the settings load without them (README).
"""

import secrets
from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand


def fresh_secrets() -> dict[str, str]:
    """A new value for each secret the app needs in production, and for compose's database."""
    return {
        # 64 characters, well past Django's 50 and its 5 distinct characters.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "CREDENTIAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "AUDIT_HMAC_KEY": secrets.token_urlsafe(32),
        # compose.yaml puts it into DATABASE_URL: hex digits need no percent-encoding.
        "POSTGRES_PASSWORD": secrets.token_hex(24),
    }


class Command(BaseCommand):
    help = (
        "Print fresh values for DJANGO_SECRET_KEY, CREDENTIAL_ENCRYPTION_KEYS, AUDIT_HMAC_KEY "
        "(and compose's POSTGRES_PASSWORD) as .env lines."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for name, value in fresh_secrets().items():
            self.stdout.write(f"{name}={value}")
