"""Small typed readers for environment variables."""

import os
from dataclasses import dataclass
from typing import overload
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@overload
def env(name: str) -> str | None: ...


@overload
def env(name: str, default: str) -> str: ...


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off.")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, not {value!r}.") from None


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# EMAIL_URL schemes: Django's email backend, whether to use TLS (STARTTLS) or SSL, the port.
_SMTP = "django.core.mail.backends.smtp.EmailBackend"
_EMAIL_SCHEMES = {
    "smtp": (_SMTP, False, False, 25),
    "smtp+tls": (_SMTP, True, False, 587),
    "smtps": (_SMTP, False, True, 465),
    "console": ("django.core.mail.backends.console.EmailBackend", False, False, 0),
    # The demo's: the console, plus a copy that DEBUG's /dev/emails/ page lists.
    "outbox": ("threads_app.mail.OutboxBackend", False, False, 0),
}


@dataclass(frozen=True)
class EmailSettings:
    backend: str
    host: str = "localhost"
    port: int = 25
    user: str = ""
    password: str = ""
    use_tls: bool = False
    use_ssl: bool = False


def email_settings(url: str) -> EmailSettings:
    """Django's EMAIL_* settings from one URL: `smtp+tls://user:password@host:587`,
    `smtps://…` (TLS from the start), `smtp://host:25` (no encryption), `console:` or
    `outbox:`. User and password are percent-decoded."""
    parts = urlsplit(url.strip())
    if parts.scheme not in _EMAIL_SCHEMES:
        raise ImproperlyConfigured(
            f"EMAIL_URL must start with one of {', '.join(s + ':' for s in _EMAIL_SCHEMES)}"
            f" (it starts with {parts.scheme + ':' if parts.scheme else 'no scheme'})."
        )
    backend, use_tls, use_ssl, default_port = _EMAIL_SCHEMES[parts.scheme]
    if backend != _SMTP:
        return EmailSettings(backend)
    if not parts.hostname:
        raise ImproperlyConfigured("EMAIL_URL must name the mail server: smtp+tls://host:587.")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ImproperlyConfigured("EMAIL_URL's port must be a number from 1 to 65535.") from None
    return EmailSettings(
        backend,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        use_tls=use_tls,
        use_ssl=use_ssl,
    )
