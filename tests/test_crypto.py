"""Encryption at rest of stored API keys (threads_app.crypto)."""

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from tests.conftest import TEST_KEY
from threads_app.crypto import (
    DecryptionError,
    decrypt_secret,
    encrypt_secret,
    is_on_current_key,
    reencrypt,
    secret_fingerprint,
    secret_hint,
)

pytestmark = pytest.mark.django_db


def new_key():
    return Fernet.generate_key().decode()


def test_the_raw_column_never_holds_the_plaintext(make_key, user):
    api_key = make_key(owner=user, secret=TEST_KEY)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM threads_app_apikey WHERE id = %s", [api_key.pk])
        row = cursor.fetchone()
    assert row is not None
    assert not any(TEST_KEY in str(value) for value in row)
    assert decrypt_secret(api_key.secret_encrypted) == TEST_KEY


def test_two_encryptions_of_one_secret_differ():
    first, second = encrypt_secret(TEST_KEY), encrypt_secret(TEST_KEY)
    assert first != second
    assert decrypt_secret(first) == decrypt_secret(second) == TEST_KEY


def test_a_wrong_key_raises_and_never_returns_the_ciphertext(settings):
    token = encrypt_secret(TEST_KEY)
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new_key()]
    with pytest.raises(DecryptionError) as excinfo:
        decrypt_secret(token)
    assert token not in str(excinfo.value)
    assert excinfo.value.__cause__ is None
    with pytest.raises(DecryptionError):
        reencrypt(token)
    assert not is_on_current_key(token)


def test_a_token_made_under_an_older_key_still_decrypts_when_a_new_key_is_first(settings):
    old, new = new_key(), new_key()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old]
    token = encrypt_secret(TEST_KEY)
    assert is_on_current_key(token)

    settings.CREDENTIAL_ENCRYPTION_KEYS = [new, old]
    assert decrypt_secret(token) == TEST_KEY
    assert not is_on_current_key(token)
    assert is_on_current_key(encrypt_secret(TEST_KEY))  # the first key encrypts

    rotated = reencrypt(token)
    assert is_on_current_key(rotated)
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new]
    assert decrypt_secret(rotated) == TEST_KEY
    with pytest.raises(DecryptionError):
        decrypt_secret(token)


@pytest.mark.parametrize(
    ("secret", "hint"),
    [
        ("sk-proj-0123456789abcdefWXYZ", "sk-…WXYZ"),
        ("sk-0123456789abcdef", "sk-…cdef"),
        ("0123456789abcdef", "…cdef"),
        ("key_0123456789-abcdef", "…cdef"),  # a dash beyond the prefix is not a prefix
    ],
)
def test_hint_shows_the_prefix_and_last_four_characters_only(secret, hint):
    assert secret_hint(secret) == hint


def test_fingerprint_is_stable_distinct_and_keyed(settings):
    fingerprint = secret_fingerprint(TEST_KEY)
    assert fingerprint == secret_fingerprint(TEST_KEY)
    assert fingerprint != secret_fingerprint(TEST_KEY + "x")
    assert TEST_KEY not in fingerprint
    assert len(fingerprint) == 64
    # Keyed with SECRET_KEY: the stored fingerprint alone does not confirm a guessed key.
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789-abcdefghijklmnop"
    assert secret_fingerprint(TEST_KEY) != fingerprint
