"""Encryption at rest for stored API keys (MultiFernet over CREDENTIAL_ENCRYPTION_KEYS).

The first configured key encrypts; every configured key decrypts, so a new key can be put in
front, `rotate_encryption_keys` run, and the old key removed afterwards.
"""

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac


class DecryptionError(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@functools.cache
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    return MultiFernet([Fernet(key.encode()) for key in keys]), Fernet(keys[0].encode())


def _multi() -> MultiFernet:
    return _fernets(tuple(settings.CREDENTIAL_ENCRYPTION_KEYS))[0]


def encrypt_secret(plaintext: str) -> str:
    return _multi().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _multi().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored API key cannot be decrypted with the configured CREDENTIAL_ENCRYPTION_KEYS."
        ) from None


def reencrypt(token: str) -> str:
    """The same secret, encrypted under the first (current) key."""
    try:
        return _multi().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored API key cannot be decrypted for rotation.") from None


def is_on_current_key(token: str) -> bool:
    primary = _fernets(tuple(settings.CREDENTIAL_ENCRYPTION_KEYS))[1]
    try:
        primary.decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def secret_hint(secret: str) -> str:
    """What the UI may show of a key: its prefix and last four characters, e.g. `sk-…abcd`."""
    prefix = secret.split("-", 1)[0] + "-" if "-" in secret[:8] else ""
    return f"{prefix}…{secret[-4:]}"


def secret_fingerprint(secret: str) -> str:
    """A keyed hash of the secret, to refuse a key that is already stored."""
    return salted_hmac("threads_app.api-key-fingerprint", secret, algorithm="sha256").hexdigest()
