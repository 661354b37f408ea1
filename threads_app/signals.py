"""Receivers that turn account signals (allauth's, Django's, django-axes') into the sign-in
audit, and model signals into the audit of access changes (services/accounts.py). Connected in
`ThreadsAppConfig.ready`.

Only allauth's log-in signal counts as a log-in: `Client.force_login` in tests and the shell
send Django's, and they are not someone signing in.

Access changes are read off the models, so the admin, a shell and a command are all seen:
a user's superuser, staff and active flags (read before the save, compared after), their
groups and permissions and a group's permissions (m2m changes, either side), and every
authenticator added or removed. The actor is the request's user (allauth keeps the request
in a context variable for every request); without a request, the system. A queryset's
`update()` sends no signal: nothing in the app changes these fields that way.
"""

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from allauth.account import signals as account_signals
from allauth.core import context
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from axes import signals as axes_signals
from django.contrib.auth import signals as auth_signals
from django.contrib.auth.models import Group, Permission, User
from django.db.models import Model
from django.db.models import signals as model_signals
from django.http import HttpRequest

from threads_app import lockout
from threads_app.audit import Origin
from threads_app.models import AuditEvent
from threads_app.services import accounts

Action = AuditEvent.Action


def _origin(request: HttpRequest | None) -> Origin | None:
    return Origin.from_request(request) if request is not None else None


def _logged_in(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.LOGGED_IN, user=user, origin=_origin(request))


def _logged_out(request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is not None and user.is_authenticated:
        accounts.record_account_event(Action.LOGGED_OUT, user=user, origin=_origin(request))


def _login_failed(
    credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    # The lockout's own signal records an attempt axes refused (or the one that locked).
    if request is not None and getattr(request, "axes_locked_out", False):
        return
    accounts.record_failed_login(
        username=str(credentials.get("username") or ""),
        locked_out=False,
        origin=_origin(request),
        step=str(credentials.get("step") or lockout.PASSWORD),
    )


def _locked_out(request: HttpRequest | None, username: str | None, **kwargs: Any) -> None:
    credentials = getattr(request, "axes_credentials", None) or {}
    accounts.record_failed_login(
        username=username or "",
        locked_out=True,
        origin=_origin(request),
        step=str(credentials.get("step") or lockout.PASSWORD),
    )


def _code_failed(request: HttpRequest, user: User, reauthentication: bool, **_: Any) -> None:
    """A wrong code counts towards the lockout (and so reaches the audit) as a password does."""
    lockout.code_failed(request, user, reauthentication=reauthentication)


def _password_changed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.PASSWORD_CHANGED, user=user, origin=_origin(request))


def _password_reset(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.PASSWORD_RESET, user=user, origin=_origin(request))


def _codes_renewed(request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.RECOVERY_CODES_RENEWED, user=user, origin=_origin(request))


def connect() -> None:
    account_signals.user_logged_in.connect(_logged_in, dispatch_uid="audit_logged_in")
    auth_signals.user_logged_out.connect(_logged_out, dispatch_uid="audit_logged_out")
    auth_signals.user_login_failed.connect(_login_failed, dispatch_uid="audit_login_failed")
    axes_signals.user_locked_out.connect(_locked_out, dispatch_uid="audit_locked_out")
    mfa_signals.authentication_failed.connect(_code_failed, dispatch_uid="lockout_code_failed")
    account_signals.password_changed.connect(_password_changed, dispatch_uid="audit_password")
    account_signals.password_set.connect(_password_changed, dispatch_uid="audit_password_set")
    account_signals.password_reset.connect(_password_reset, dispatch_uid="audit_reset")
    mfa_signals.authenticator_reset.connect(_codes_renewed, dispatch_uid="audit_2fa_reset")
    _connect_access_changes()


# --- Access changes, from the models


def _who() -> tuple[User | None, Origin | None]:
    """Who is making a change now: the signed-in user of the request being served, and where
    from; (None, None) outside a request (a shell, a command)."""
    request = context.request
    if request is None:
        return None, None
    user = getattr(request, "user", None)
    actor = user if isinstance(user, User) and user.is_authenticated else None
    return actor, Origin.from_request(request)


def _record(action: str, holder: User | Group, **details: object) -> None:
    actor, origin = _who()
    accounts.record_access_change(action, holder=holder, actor=actor, origin=origin, **details)


ACCESS_FLAGS = ("is_superuser", "is_staff", "is_active")
# A new account is compared with what an account has by default: a new superuser is a change.
_NEW_ACCOUNT_FLAGS = {"is_superuser": False, "is_staff": False, "is_active": True}


def _flags_before(instance: User, raw: bool, update_fields: Any, **_: Any) -> None:
    before: dict[str, Any] | None = None
    if not raw and (update_fields is None or set(update_fields) & set(ACCESS_FLAGS)):
        stored = None
        if instance.pk is not None and not instance._state.adding:
            stored = User.objects.filter(pk=instance.pk).values(*ACCESS_FLAGS).first()
        before = stored or _NEW_ACCOUNT_FLAGS
    vars(instance)["_access_flags_before"] = before


def _flags_after(instance: User, **_: Any) -> None:
    before = vars(instance).pop("_access_flags_before", None)
    if before is None:
        return
    changes = {
        flag: {"from": before[flag], "to": getattr(instance, flag)}
        for flag in ACCESS_FLAGS
        if before[flag] != getattr(instance, flag)
    }
    if changes:
        _record(Action.ACCESS_CHANGED, instance, changes=changes)


def _other_ends(through: type[Model], instance: Model) -> set[Any]:
    """The pks `instance` is linked to through the m2m table `through`."""
    relations = [field for field in through._meta.fields if field.is_relation]
    mine = next(f for f in relations if isinstance(instance, f.related_model))  # type: ignore[arg-type]
    other = next(f for f in relations if f is not mine)
    links = through._default_manager.filter(**{mine.name: instance.pk})
    return set(links.values_list(other.attname, flat=True))


def _links_changed(audit_action: str, label: Callable[[Any], str]) -> Callable[..., None]:
    """A receiver of m2m changes between holders (users, groups) and what they hold (groups,
    permissions), from either side: one `audit_action` event per holder, naming (`label`)
    what was added or removed."""

    def receiver(
        sender: type[Model],
        instance: Model,
        action: str,
        reverse: bool,
        model: type[Model],
        pk_set: set[Any] | None,
        **_: Any,
    ) -> None:
        if action == "pre_clear":
            vars(instance)["_access_cleared"] = _other_ends(sender, instance)
            return
        if action == "post_clear":
            pks = vars(instance).pop("_access_cleared", set())
        elif action in ("post_add", "post_remove"):
            pks = pk_set or set()
        else:
            return
        if not pks:
            return
        change = "added" if action == "post_add" else "removed"
        others = list(model._default_manager.filter(pk__in=pks))
        if reverse:  # `instance` is held (a group, a permission); `others` hold it
            for holder in others:
                _record(audit_action, holder, **{change: [label(instance)]})  # type: ignore[arg-type]
        else:
            _record(audit_action, instance, **{change: sorted(map(label, others))})  # type: ignore[arg-type]

    return receiver


def _permission_label(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def _authenticator_added(instance: Authenticator, created: bool, raw: bool, **_: Any) -> None:
    if created and not raw:
        _record(Action.TWO_FACTOR_ENABLED, instance.user, kind=instance.type)


def _authenticator_removed(instance: Authenticator, **_: Any) -> None:
    _record(Action.TWO_FACTOR_DISABLED, instance.user, kind=instance.type)


def _connect_access_changes() -> None:
    model_signals.pre_save.connect(_flags_before, sender=User, dispatch_uid="access_flags_pre")
    model_signals.post_save.connect(_flags_after, sender=User, dispatch_uid="access_flags_post")
    for through, audit_action, label, uid in (
        (User.groups.through, Action.GROUPS_CHANGED, attrgetter("name"), "user_groups"),
        (User.user_permissions.through, Action.PERMISSIONS_CHANGED, _permission_label, "user"),
        (Group.permissions.through, Action.PERMISSIONS_CHANGED, _permission_label, "group"),
    ):
        receiver = _links_changed(audit_action, label)  # held here alone: weak=False
        model_signals.m2m_changed.connect(
            receiver, sender=through, weak=False, dispatch_uid=f"access_{uid}"
        )
    model_signals.post_save.connect(
        _authenticator_added, sender=Authenticator, dispatch_uid="access_authenticator_added"
    )
    model_signals.post_delete.connect(
        _authenticator_removed, sender=Authenticator, dispatch_uid="access_authenticator_removed"
    )
