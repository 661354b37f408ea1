"""Writes for stored API keys, and the one way to get an upstream client for a key.

A new or rotated secret is checked against the upstream before it is stored: a GET for a
thread that cannot exist answers 404 to a valid key and 401 to a rejected one.
"""

from datetime import timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.crypto import decrypt_secret, encrypt_secret, secret_fingerprint, secret_hint
from threads_app.models import ApiKey, AuditEvent, Membership, Team, WebhookEndpoint
from threads_app.services import webhooks
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.upstream import (
    AuthenticationError,
    NotFoundError,
    ThreadsClient,
    UpstreamError,
)

Action = AuditEvent.Action

# Any id works: the check only needs the upstream's verdict on the key.
KEY_CHECK_THREAD_ID = "thread_key_check"


LAST_USED_PRECISION = timedelta(minutes=1)


class KeyRejected(Refused):
    """The upstream answered 401/403 for the secret."""

    default_code = "key_rejected"


class KeyUnverified(Refused):
    """The upstream could not be asked; the caller may choose to save without verifying."""

    default_code = "key_unverified"


def client_for(api_key: ApiKey, *, retry_rate_limited: bool = True) -> ThreadsClient:
    """An upstream client for a stored key; the secret is decrypted only here.

    `retry_rate_limited=False`: a 429 raises `RateLimitedError` at once (a caller with its own
    limiter, as a bulk job)."""
    secret = decrypt_secret(api_key.secret_encrypted)
    return ThreadsClient(secret, retry_rate_limited=retry_rate_limited)


def note_key_result(api_key: ApiKey, error: UpstreamError | None = None) -> None:
    """Remember when a key was last used and whether the upstream rejected it.

    A working key's "last used" is kept to the minute: a busy key (a bulk delete sharing one
    key object across its workers) then costs one write a minute, not one a call.
    """
    now = timezone.now()
    fields: dict[str, object]
    if isinstance(error, AuthenticationError):
        fields = {"last_checked_at": now, "failing": True, "last_error": str(error)[:500]}
    elif error is None:
        recent = api_key.last_used_at and now - api_key.last_used_at < LAST_USED_PRECISION
        if recent and not api_key.failing:
            return
        fields = {"last_used_at": now, "last_checked_at": now, "failing": False, "last_error": ""}
    else:
        return
    with transaction.atomic():
        turned_failing = bool(fields["failing"]) and bool(
            ApiKey.objects.filter(pk=api_key.pk, failing=False).update(**fields)
        )
        if not turned_failing:
            ApiKey.objects.filter(pk=api_key.pk).update(**fields)
        else:
            webhooks.notify(
                event=WebhookEndpoint.Event.KEY_FAILING,
                team=api_key.team,
                owner=api_key.owner,
                # Never the upstream's message: it may quote part of the key.
                data={"key_id": api_key.pk, "key_label": api_key.label, "team_id": api_key.team_id},
            )
    for name, value in fields.items():
        setattr(api_key, name, value)


@sensitive_variables("secret")
def verify_secret(secret: str) -> None:
    """Ask the upstream whether it accepts the secret; raise KeyRejected or KeyUnverified."""
    try:
        ThreadsClient(secret).retrieve_thread(KEY_CHECK_THREAD_ID)
    except NotFoundError:
        return  # the key was accepted; the thread just does not exist
    except AuthenticationError as exc:
        request = f" — request {exc.request_id}" if exc.request_id else ""
        raise KeyRejected(
            f"The Threads API rejected this key ({exc.status}){request}. "
            "Check that you copied the whole key and that it has not been revoked."
        ) from None
    except UpstreamError as exc:
        raise KeyUnverified(
            f"The Threads API could not be reached to check this key: {exc} "
            "Try again later, or save it without verifying."
        ) from None


def _refuse_duplicate(
    fingerprint: str, *, owner: User | None, team: Team | None, exclude_pk: int | None = None
) -> None:
    live = ApiKey.objects.filter(fingerprint=fingerprint, revoked_at__isnull=True)
    live = live.filter(team=team) if team is not None else live.filter(owner=owner)
    if exclude_pk is not None:
        live = live.exclude(pk=exclude_pk)
    existing = live.first()
    if existing is not None:
        where = f"team {team.name}" if team is not None else "your personal keys"
        raise Refused(
            f"This key is already stored in {where} as “{existing.label}” ({existing.hint}).",
            code="duplicate_key",
        )


def _duplicate_race() -> Refused:
    return Refused("This key was stored by another request a moment ago.", code="duplicate_key")


def _check_manageable(api_key: ApiKey, *, actor: User) -> None:
    if not selectors.manageable_keys(actor).filter(pk=api_key.pk).exists():
        raise NotAllowed("Only the key's owner or a team owner can change this key.")


def _record_key_change(
    api_key: ApiKey, action: str, *, actor: User, origin: Origin | None, **details: object
) -> None:
    """The audit row of a key write: a success, in the key's team's or owner's log."""
    audit.record(
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor=actor,
        api_key=api_key,
        origin=origin,
        details=details,
    )


@sensitive_variables("secret")
def add_key(
    *,
    actor: User,
    label: str,
    secret: str,
    team: Team | None = None,
    verify: bool = True,
    origin: Origin | None = None,
) -> ApiKey:
    """Store a new personal key (team None) or team key; only a team's owners add its keys."""
    if team is not None and selectors.team_role(actor, team) != Membership.Role.OWNER:
        raise NotAllowed("Only the team's owners can add its keys.")
    owner = None if team is not None else actor
    fingerprint = secret_fingerprint(secret)
    _refuse_duplicate(fingerprint, owner=owner, team=team)
    if verify:
        verify_secret(secret)
    try:
        with transaction.atomic():
            api_key = ApiKey.objects.create(
                owner=owner,
                team=team,
                label=label,
                secret_encrypted=encrypt_secret(secret),
                hint=secret_hint(secret),
                fingerprint=fingerprint,
                created_by=actor,
                last_checked_at=timezone.now() if verify else None,
            )
            _record_key_change(
                api_key, Action.KEY_ADDED, actor=actor, origin=origin, verified=verify
            )
    except IntegrityError:
        raise _duplicate_race() from None
    return api_key


@sensitive_variables("secret")
def rotate_key(
    api_key: ApiKey,
    *,
    actor: User,
    secret: str,
    verify: bool = True,
    origin: Origin | None = None,
) -> ApiKey:
    """Replace the key's secret; its tracked threads stay with it."""
    _check_manageable(api_key, actor=actor)
    if api_key.is_revoked:
        raise Refused(
            f"“{api_key.label}” is revoked and cannot be rotated. Add a new key instead.",
            code="already_revoked",
        )
    fingerprint = secret_fingerprint(secret)
    _refuse_duplicate(fingerprint, owner=api_key.owner, team=api_key.team, exclude_pk=api_key.pk)
    if verify:
        verify_secret(secret)
    now = timezone.now()
    previous_hint = api_key.hint
    api_key.secret_encrypted = encrypt_secret(secret)
    api_key.hint = secret_hint(secret)
    api_key.fingerprint = fingerprint
    api_key.rotated_at = now
    api_key.last_checked_at = now if verify else None
    api_key.failing, api_key.last_error = False, ""
    try:
        with transaction.atomic():
            api_key.save(
                update_fields=[
                    "secret_encrypted",
                    "hint",
                    "fingerprint",
                    "rotated_at",
                    "last_checked_at",
                    "failing",
                    "last_error",
                ]
            )
            details = {"verified": verify, "previous_hint": previous_hint}
            _record_key_change(api_key, Action.KEY_ROTATED, actor=actor, origin=origin, **details)
    except IntegrityError:
        api_key.refresh_from_db()
        raise _duplicate_race() from None
    return api_key


def revoke_key(api_key: ApiKey, *, actor: User, origin: Origin | None = None) -> int:
    """Stop using the key; its threads stay listed, read-only. Returns their count."""
    _check_manageable(api_key, actor=actor)
    if api_key.is_revoked:
        raise Refused(f"“{api_key.label}” is already revoked.", code="already_revoked")
    threads = selectors.tracked_thread_count(api_key)
    api_key.revoked_at = timezone.now()
    with transaction.atomic():
        api_key.save(update_fields=["revoked_at"])
        _record_key_change(
            api_key, Action.KEY_REVOKED, actor=actor, origin=origin, tracked_threads=threads
        )
    return threads
