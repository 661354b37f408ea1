"""The demo's email backend: every message goes to the console and is kept as a file, so that
DEBUG's "Emails sent" page (views/accounts.py) lists it and a newcomer can follow its link.

Files, not memory: the dev server and the worker are separate processes, and a restart of the
dev server keeps what was sent. `EMAIL_FILE_PATH` is the folder.
"""

import email
import email.policy
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage as ParsedMessage
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.console import EmailBackend as ConsoleBackend

OUTBOX_BACKEND = "threads_app.mail.OutboxBackend"


class OutboxBackend(ConsoleBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.folder = Path(settings.EMAIL_FILE_PATH)

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        self.folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            name = f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            (self.folder / name).write_bytes(message.message().as_bytes())
        return sent


@dataclass(frozen=True)
class SentEmail:
    to: str
    subject: str
    date: str
    body: str


def outbox_enabled() -> bool:
    """The page exists in debug mode with the outbox backend only (a 404 otherwise)."""
    return bool(settings.DEBUG) and settings.EMAIL_BACKEND == OUTBOX_BACKEND


def sent_emails(limit: int = 50) -> list[SentEmail]:
    """The newest `limit` messages kept by the outbox, newest first."""
    folder = Path(settings.EMAIL_FILE_PATH)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.eml"), reverse=True)[:limit]
    return [_read(path) for path in files]


def _read(path: Path) -> SentEmail:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, ParsedMessage)
    part = parsed.get_body(preferencelist=("plain",))
    body = part.get_content() if part is not None else ""
    return SentEmail(
        to=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        date=str(parsed.get("Date", "")),
        body=str(body),
    )
