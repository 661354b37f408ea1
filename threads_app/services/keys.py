"""Writes for stored API keys, and the one way to get an upstream client for a key."""

from django.utils import timezone

from threads_app.crypto import decrypt_secret
from threads_app.models import ApiKey
from threads_app.upstream import AuthenticationError, ThreadsClient


def client_for(api_key):
    """An upstream client for a stored key; the secret is decrypted only here."""
    return ThreadsClient(decrypt_secret(api_key.secret_encrypted))


def note_key_result(api_key, error=None):
    """Remember when a key was last used and whether the upstream rejected it."""
    now = timezone.now()
    if isinstance(error, AuthenticationError):
        ApiKey.objects.filter(pk=api_key.pk).update(
            last_checked_at=now, failing=True, last_error=str(error)[:500]
        )
    elif error is None:
        ApiKey.objects.filter(pk=api_key.pk).update(
            last_used_at=now, last_checked_at=now, failing=False, last_error=""
        )
