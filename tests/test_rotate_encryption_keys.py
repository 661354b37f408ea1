"""manage.py rotate_encryption_keys: re-encrypt stored secrets under the first key."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from threads_app.crypto import DecryptionError, decrypt_secret
from threads_app.models import ApiKey

pytestmark = pytest.mark.django_db

SECRETS = [f"sk-test-rotation-{n:04d}-abcdefgh" for n in range(5)]


def new_key():
    return Fernet.generate_key().decode()


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def old_keys(settings, make_key, user):
    """Five stored keys encrypted under an old key, which is then moved behind a new one."""
    old, new = new_key(), new_key()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old]
    keys = [make_key(owner=user, secret=secret) for secret in SECRETS]
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new, old]
    return {"old": old, "new": new, "keys": keys}


def test_secrets_decrypt_after_rotation_with_the_old_key_removed(settings, old_keys):
    before = {key.pk: (key.hint, key.fingerprint) for key in old_keys["keys"]}
    out, err = run("--batch-size", "2")
    assert "Re-encrypted 5 stored API keys under the first key; 0 already were" in out
    assert err == ""

    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["new"]]
    for key, secret in zip(ApiKey.objects.order_by("pk"), SECRETS, strict=True):
        assert decrypt_secret(key.secret_encrypted) == secret
        assert (key.hint, key.fingerprint) == before[key.pk]


def test_without_rotation_removing_the_old_key_loses_the_secrets(settings, old_keys):
    """The control for the test above: the old key really was needed."""
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["new"]]
    with pytest.raises(DecryptionError):
        decrypt_secret(ApiKey.objects.first().secret_encrypted)


def test_check_counts_rows_not_on_the_first_key_and_changes_nothing(old_keys, make_key, user):
    make_key(owner=user, secret="sk-test-already-on-the-new-key")
    tokens = list(ApiKey.objects.order_by("pk").values_list("secret_encrypted", flat=True))

    out, _ = run("--check")
    assert "5 of 6 stored API keys are not yet encrypted under the first key." in out
    assert "Run `manage.py rotate_encryption_keys`" in out
    assert list(ApiKey.objects.order_by("pk").values_list("secret_encrypted", flat=True)) == tokens

    run()
    out, _ = run("--check")
    assert "0 of 6 stored API keys are not yet encrypted under the first key." in out
    assert "can be removed safely" in out


def test_a_second_run_has_nothing_left_to_do(old_keys):
    run()
    tokens = list(ApiKey.objects.order_by("pk").values_list("secret_encrypted", flat=True))
    out, _ = run()
    assert "Re-encrypted 0 stored API keys under the first key; 5 already were" in out
    assert list(ApiKey.objects.order_by("pk").values_list("secret_encrypted", flat=True)) == tokens


def test_an_undecryptable_row_is_reported_and_the_others_still_rotate(settings, old_keys):
    lost = old_keys["keys"][2]
    foreign_token = Fernet(new_key().encode()).encrypt(b"sk-test-encrypted-elsewhere").decode()
    ApiKey.objects.filter(pk=lost.pk).update(secret_encrypted=foreign_token)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError) as excinfo:
        call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out, stderr=err)

    assert f"ids {lost.pk})" in str(excinfo.value)
    assert f"API key id={lost.pk}: cannot be decrypted" in err.getvalue()
    assert "Re-encrypted 4 stored API keys" in out.getvalue()
    for text in (str(excinfo.value), out.getvalue(), err.getvalue()):
        assert foreign_token not in text
        assert "sk-test-encrypted-elsewhere" not in text
    assert ApiKey.objects.get(pk=lost.pk).secret_encrypted == foreign_token
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["new"]]
    for key in ApiKey.objects.exclude(pk=lost.pk):
        assert decrypt_secret(key.secret_encrypted) in SECRETS


def test_batch_size_must_be_positive():
    with pytest.raises(CommandError, match="at least 1"):
        run("--batch-size", "0")


def test_rotation_of_an_empty_table():
    out, _ = run()
    assert "Re-encrypted 0 stored API keys" in out


# --- two-factor secrets (allauth's authenticators), encrypted like the API keys ------------


@pytest.fixture
def two_factor(settings, user, old_keys):
    """alice has TOTP and recovery codes, stored under the old key."""
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
    from allauth.mfa.totp.internal.auth import TOTP

    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["old"]]
    TOTP.activate(user, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    codes = RecoveryCodes.activate(user).get_unused_codes()
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["new"], old_keys["old"]]
    return codes


def _totp_secret(user):
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.get(user=user, type="totp").data["secret"]


def test_two_factor_secrets_are_encrypted_at_rest(two_factor, user):
    stored = _totp_secret(user)
    assert "JBSWY3DPEHPK3PXP" not in stored
    assert decrypt_secret(stored) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_they_rotate_with_the_keys_and_still_work_with_the_old_key_removed(
    settings, two_factor, user, old_keys
):
    from allauth.mfa.models import Authenticator

    out, _ = run("--check")
    assert "2 of 2 two-factor secrets are not yet encrypted under the first key." in out
    out, _ = run()
    assert "Re-encrypted the two-factor secrets of 2 authenticators; 0 could not be" in out
    settings.CREDENTIAL_ENCRYPTION_KEYS = [old_keys["new"]]
    assert decrypt_secret(_totp_secret(user)) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    codes = Authenticator.objects.get(user=user, type="recovery_codes").wrap()
    assert codes.get_unused_codes() == two_factor  # the seed still makes the same codes
    out, _ = run("--check")
    assert "0 of 2 two-factor secrets" in out and "can be removed safely" in out


def test_an_undecryptable_two_factor_secret_fails_the_run_naming_it(settings, two_factor, user):
    from allauth.mfa.models import Authenticator

    before = _totp_secret(user)
    settings.CREDENTIAL_ENCRYPTION_KEYS = [new_key()]  # neither key any more
    totp = Authenticator.objects.get(user=user, type="totp")
    with pytest.raises(
        CommandError, match="two-factor authenticators could not be decrypted"
    ) as error:
        run()
    assert f"ids {totp.pk}," in str(error.value) or f"ids {totp.pk})" in str(error.value)
    assert _totp_secret(user) == before  # left unchanged
