"""Log hygiene: no log line may carry anything shaped like an API key or a webhook secret, and
noise stays short.

`RedactSecretsFilter` sits on every log handler (settings' LOGGING). `OneLineFilter` sits on
loggers whose events are routine and whose tracebacks say nothing (a request with a Host the
app does not serve: every scanner sends them).
"""

import logging
import re

SECRET_PATTERN = re.compile(r"(Bearer\s+)?\bsk-[A-Za-z0-9_\-]{6,}|\bwhsec_[A-Za-z0-9+/=]{6,}")


def redact(text: str) -> str:
    return SECRET_PATTERN.sub("[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


class OneLineFilter(logging.Filter):
    """Drop the record's traceback: the message alone says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True
