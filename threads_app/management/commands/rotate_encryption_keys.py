"""Re-encrypt every stored API key, and every two-factor secret (TOTP secrets, recovery-code
seeds: allauth's `Authenticator` rows), under the first key of CREDENTIAL_ENCRYPTION_KEYS.

Put the new Fernet key first, run this, check with `--check` that nothing is left on an
older key, then remove the old key from the setting.
"""

from argparse import ArgumentParser
from typing import Any

from allauth.mfa.models import Authenticator
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from threads_app.crypto import DecryptionError, is_on_current_key, reencrypt
from threads_app.models import ApiKey


class Command(BaseCommand):
    help = "Re-encrypt stored API keys under the first CREDENTIAL_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Only count the rows not yet encrypted under the first key; change nothing.",
        )

    def handle(self, *args: Any, batch_size: int, check: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        if check:
            self.check_only()
        else:
            self.rotate(batch_size)

    def check_only(self) -> None:
        tokens = ApiKey.objects.values_list("secret_encrypted", flat=True)
        total = stale = 0
        for token in tokens.iterator(chunk_size=2000):
            total += 1
            stale += not is_on_current_key(token)
        self.stdout.write(
            f"{stale} of {total} stored API keys are not yet encrypted under the first key."
        )
        two_factor = [
            value
            for data in Authenticator.objects.values_list("data", flat=True).iterator()
            for value in _two_factor_secrets(data)
        ]
        two_factor_stale = sum(not is_on_current_key(value) for value in two_factor)
        self.stdout.write(
            f"{two_factor_stale} of {len(two_factor)} two-factor secrets are not yet encrypted "
            "under the first key."
        )
        stale += two_factor_stale
        if stale:
            self.stdout.write("Run `manage.py rotate_encryption_keys` before removing old keys.")
        else:
            self.stdout.write("Keys other than the first can be removed safely.")

    def rotate(self, batch_size: int) -> None:
        rotated = current = 0
        failed: list[int] = []
        last_pk = 0
        while True:
            with transaction.atomic():
                # Locked so that a key rotated in the web meanwhile is not overwritten.
                batch = list(
                    ApiKey.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .only("pk", "secret_encrypted")[:batch_size]
                )
                if not batch:
                    break
                changed = []
                for api_key in batch:
                    if is_on_current_key(api_key.secret_encrypted):
                        current += 1
                        continue
                    try:
                        api_key.secret_encrypted = reencrypt(api_key.secret_encrypted)
                    except DecryptionError:
                        failed.append(api_key.pk)
                        self.stderr.write(
                            f"API key id={api_key.pk}: cannot be decrypted with any configured "
                            "key; left unchanged."
                        )
                        continue
                    changed.append(api_key)
                ApiKey.objects.bulk_update(changed, ["secret_encrypted"])
                rotated += len(changed)
                last_pk = batch[-1].pk
        self.stdout.write(
            f"Re-encrypted {rotated} stored API keys under the first key; "
            f"{current} already were; {len(failed)} could not be decrypted."
        )
        self.rotate_two_factor()
        if failed:
            raise CommandError(
                f"{len(failed)} stored API keys could not be decrypted (ids "
                f"{', '.join(map(str, failed))}): restore the key they were encrypted with "
                "to CREDENTIAL_ENCRYPTION_KEYS and run this again."
            )

    def rotate_two_factor(self) -> None:
        """The two-factor secrets, in one transaction (a few per user at most)."""
        rotated, failed = 0, []
        with transaction.atomic():
            for authenticator in Authenticator.objects.select_for_update().order_by("pk"):
                try:
                    data, changed = _reencrypted(authenticator.data)
                except DecryptionError:
                    failed.append(authenticator.pk)
                    continue
                if changed:
                    authenticator.data = data
                    authenticator.save(update_fields=["data"])
                    rotated += 1
        self.stdout.write(
            f"Re-encrypted the two-factor secrets of {rotated} authenticators; "
            f"{len(failed)} could not be decrypted."
        )
        if failed:
            raise CommandError(
                f"{len(failed)} two-factor authenticators could not be decrypted (ids "
                f"{', '.join(map(str, failed))}): restore the key they were encrypted with "
                "to CREDENTIAL_ENCRYPTION_KEYS and run this again."
            )


# What allauth encrypts in an authenticator's data (through threads_app.accounts.MFAAdapter).
_ENCRYPTED_FIELDS = ("secret", "seed")


def _two_factor_secrets(data: dict[str, Any]) -> list[str]:
    codes = data.get("migrated_codes") or []
    return [data[name] for name in _ENCRYPTED_FIELDS if name in data] + list(codes)


def _reencrypted(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The data with its secrets under the first key, and whether any changed."""
    data = dict(data)
    changed = False
    for name in _ENCRYPTED_FIELDS:
        if name in data and not is_on_current_key(data[name]):
            data[name], changed = reencrypt(data[name]), True
    codes = data.get("migrated_codes")
    if codes and not all(is_on_current_key(code) for code in codes):
        data["migrated_codes"], changed = [reencrypt(code) for code in codes], True
    return data, changed
