"""Writes about accounts: the sign-in audit, and changes of access.

Log-ins, log-outs, failed and locked-out log-ins, password changes and resets, and two-factor
turned on or off go into the audit chain, in the account's own log (`owner`: the user sees
them, and superusers). No password, code or secret is ever passed here. A failed log-in names
the account only when one answers to the username typed: anything else typed there (a
password typed in the wrong box) is not recorded.

Changes of access (superuser, staff, active, groups, permissions, authenticators) are
recorded whoever makes them and however (the admin, a shell, a command): see
`record_access_change`.
"""

from allauth.account.internal.userkit import get_user_by_username
from django.contrib.auth.models import Group, User

from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import AuditEvent

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome


def record_account_event(
    action: str,
    *,
    user: User,
    outcome: str = Outcome.SUCCESS,
    origin: Origin | None = None,
    **details: object,
) -> None:
    """One event of `user`'s account, done by them (or in their name, for a failure)."""
    audit.record(
        action=action, outcome=outcome, actor=user, owner=user, origin=origin, details=details
    )


def record_failed_login(
    *,
    username: str,
    locked_out: bool,
    origin: Origin | None = None,
    step: str = "password",
) -> None:
    """A wrong password (`step` "password"), two-factor code ("two-factor code", or
    "reauthentication code" on the reauthentication page), or an attempt refused because the
    lockout holds (`locked_out`). The account is the one log-in finds for `username` (any
    case)."""
    action = Action.LOCKED_OUT if locked_out else Action.LOGIN_FAILED
    outcome = Outcome.REFUSED if locked_out else Outcome.FAILED
    user = get_user_by_username(username) if username else None
    if user is None:
        details = {"step": step, "known_account": False}
        audit.record(action=action, outcome=outcome, origin=origin, details=details)
        return
    record_account_event(
        action, user=user, outcome=outcome, origin=origin, step=step, known_account=True
    )


def record_access_change(
    action: str,
    *,
    holder: User | Group,
    actor: User | None,
    origin: Origin | None = None,
    **details: object,
) -> None:
    """A change of what `holder` (an account, or a group: for all its members) may do, made
    by `actor`, or by the system (a shell, a command) when None. An account's change is in
    its own log; a group's is for superusers."""
    if isinstance(holder, User):
        owner, named = holder, {"user": holder.get_username()}
    else:
        owner, named = None, {"group": holder.name}
    by = {} if actor is not None else {"by": "system"}
    audit.record(
        action=action,
        outcome=Outcome.SUCCESS,
        actor=actor,
        owner=owner,
        origin=origin,
        details={**named, **by, **details},
    )
