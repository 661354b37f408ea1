"""Defence in depth: no log line may carry anything shaped like an API key.

`RedactSecretsFilter` sits on every log handler (settings' LOGGING).
"""

import logging
import re

SECRET_PATTERN = re.compile(r"(Bearer\s+)?\bsk-[A-Za-z0-9_\-]{6,}")


def redact(text: str) -> str:
    return SECRET_PATTERN.sub("[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True
