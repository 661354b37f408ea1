"""Access tokens of the automation API: made, used, revoked and expired, each audited.

A token is `tc_` and 43 characters of `secrets.token_urlsafe(32)`: shown once when it is made,
kept only as its SHA-256. `authenticate` is the one way a request's token becomes a user: it
counts the request against the token's rate limit in the same UPDATE that checks the token is
live, notes its first use and each new client address (audited once each), and refuses a
token whose creator may no longer act (inactive, or out of the team of a team token).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import ApiToken, ApiTokenAddress, AuditEvent, Membership, Team
from threads_app.services.keys import LAST_USED_PRECISION
from threads_app.services.refusals import NotAllowed, Refused

Action = AuditEvent.Action
PREFIX = "tc_"
HINT_LENGTH = len(PREFIX) + 4
SCOPES = tuple(ApiToken.Scope.values)


class TokenRefused(Refused):
    """The request's token cannot be used (unknown, revoked, expired, or its creator may no
    longer act): one message for all, so a guess learns nothing."""

    default_code = "unauthenticated"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record(token: ApiToken, action: str, *, origin: Origin | None, **details: object) -> None:
    """A token's audit row: in its team's log, or its creator's own."""
    audit.record(
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor=token.created_by,
        team=token.team,
        owner=token.created_by if token.team is None else None,
        origin=origin,
        details={"label": token.label, "hint": token.hint, **details},
    )


def create_token(
    *,
    actor: User,
    label: str,
    scopes: list[str],
    days: int = ApiToken.DEFAULT_DAYS,
    team: Team | None = None,
    origin: Origin | None = None,
) -> tuple[ApiToken, str]:
    """Make a personal token (team None) or, for one of the team's owners, a team token.
    Returns the token's row and the token itself: the only time it exists outside a request."""
    if team is not None and selectors.team_role(actor, team) != Membership.Role.OWNER:
        raise NotAllowed("Only the team's owners can make its tokens.")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise Refused(
            f"Scopes are {', '.join(SCOPES)}; choose at least one.", field="scopes", code="scopes"
        )
    if not 1 <= days <= ApiToken.MAX_DAYS:
        raise Refused(f"A token lasts 1 to {ApiToken.MAX_DAYS} days.", field="days", code="expiry")
    token = PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        row = ApiToken.objects.create(
            created_by=actor,
            team=team,
            label=label,
            hint=token[:HINT_LENGTH],
            token_hash=token_hash(token),
            scopes=[scope for scope in SCOPES if scope in scopes],
            expires_at=timezone.now() + timedelta(days=days),
        )
        _record(
            row,
            Action.TOKEN_CREATED,
            origin=origin,
            scopes=row.scopes,
            expires_at=row.expires_at.isoformat(),
        )
    return row, token


def revoke_token(token: ApiToken, *, actor: User, origin: Origin | None = None) -> ApiToken:
    if not selectors.manageable_tokens(actor).filter(pk=token.pk).exists():
        raise NotAllowed("Only the token's maker or the team's owners can revoke it.")
    with transaction.atomic():
        if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        ):
            raise Refused(f"“{token.label}” is already revoked.", code="already_revoked")
        token.refresh_from_db()
        _record(token, Action.TOKEN_REVOKED, origin=origin)
    return token


def record_expired_tokens(*, now: datetime | None = None) -> int:
    """Audit each token that expired since the last call (once each); how many. Run by the
    worker's sweep, and by `authenticate` when an expired token is presented."""
    now = now or timezone.now()
    expired = ApiToken.objects.filter(
        expires_at__lte=now, revoked_at__isnull=True, expiry_recorded_at__isnull=True
    ).select_related("created_by", "team")
    count = 0
    for token in expired:
        with transaction.atomic():
            if ApiToken.objects.filter(pk=token.pk, expiry_recorded_at__isnull=True).update(
                expiry_recorded_at=now
            ):
                _record(
                    token,
                    Action.TOKEN_EXPIRED,
                    origin=None,
                    expired_at=token.expires_at.isoformat(),
                )
                count += 1
    return count


@dataclass(frozen=True)
class TokenUse:
    """A request's token, and where it stands in its rate-limit window."""

    token: ApiToken
    count: int  # requests in the window, this one included
    resets_at: int  # when the window ends (Unix seconds)


def authenticate(
    token: str, *, origin: Origin, window_seconds: int, now: datetime | None = None
) -> TokenUse:
    """The live token, with this request counted; raises `TokenRefused`."""
    now = now or timezone.now()
    digest = token_hash(token)
    window = int(now.timestamp()) // window_seconds
    live = ApiToken.objects.filter(token_hash=digest, revoked_at__isnull=True, expires_at__gt=now)
    counted = live.update(
        rate_count=Case(When(rate_window=window, then=F("rate_count") + 1), default=Value(1)),
        rate_window=window,
    )
    if not counted:
        if ApiToken.objects.filter(token_hash=digest, expires_at__lte=now).exists():
            record_expired_tokens(now=now)
        raise TokenRefused("The access token is not valid (unknown, revoked or expired).")
    # Whether the client's address is known comes with the row (one query, not two).
    addresses = ApiTokenAddress.objects.filter(token=OuterRef("pk"), address=origin.ip)
    row = (
        ApiToken.objects.select_related("created_by", "team")
        .annotate(address_known=Exists(addresses) if origin.ip else Value(True))
        .get(token_hash=digest)
    )
    _refuse_unless_creator_may_act(row)
    _note_use(row, origin=origin, now=now, address_known=row.address_known)
    return TokenUse(row, row.rate_count, (window + 1) * window_seconds)


def _refuse_unless_creator_may_act(token: ApiToken) -> None:
    user = token.created_by
    gone = not user.is_active or (
        token.team is not None and selectors.team_role(user, token.team) is None
    )
    if gone:
        raise TokenRefused(
            "The access token is not valid: its maker's account is inactive or left the team."
        )


def _note_use(token: ApiToken, *, origin: Origin, now: datetime, address_known: bool) -> None:
    """The token's last use (to the minute), and its first use and each new client address
    audited once: conditional writes, so concurrent requests record each once."""
    last_used = token.last_used_at
    first = last_used is None
    if first:
        first = bool(
            ApiToken.objects.filter(pk=token.pk, last_used_at__isnull=True).update(last_used_at=now)
        )
        if first:
            _record(token, Action.TOKEN_FIRST_USED, origin=origin)
    elif last_used is not None and now - last_used >= LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    if origin.ip is None or address_known:
        return
    try:
        with transaction.atomic():
            ApiTokenAddress.objects.create(token=token, address=origin.ip)
            if not first:
                _record(token, Action.TOKEN_NEW_ADDRESS, origin=origin)
    except IntegrityError:
        pass  # a concurrent request from the same address recorded it
