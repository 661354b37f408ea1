"""Writes of single sign-on: provisioning, the domain rule, the team mapping, and their audit.

Every event names the provider (its display name and OIDC_PROVIDERS id) and the subject (the
provider's stable id of the person), never a token. The glue with allauth is threads_app/sso.py.

The team mapping (OIDC_TEAM_MAPPING) is applied at every log-in through a provider: the
memberships it made for that provider (`Membership.managed_by`) follow the person's groups,
added, changed or removed; a membership made by hand is never touched, and a team's last owner
is never removed or demoted by it (refused, and audited).
"""

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.urls import reverse

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import (
    USERNAME_MAX_LENGTH,
    AuditEvent,
    Membership,
    Team,
    normalise_username,
    validate_username,
)
from threads_app.services.refusals import Refused
from threads_app.services.teams import (
    RESERVED_USERNAMES,
    _lock_team,
    _locked,
    _refuse_last_owner,
)

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
Role = Membership.Role
RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.OWNER: 2}

__all__ = ["Refused", "SSOLogin"]


@dataclass(frozen=True)
class SSOLogin:
    """What a checked ID token says about the person logging in."""

    provider_id: str
    provider_name: str
    subject: str
    preferred_username: str = ""
    email: str = ""  # only when the provider says it is verified
    groups: tuple[str, ...] = ()
    multi_factor: bool = False
    details: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_claims(
        cls, *, provider_id: str, provider_name: str, claims: dict[str, Any]
    ) -> "SSOLogin":
        email = claims.get("email")
        verified = claims.get("email_verified") is True
        groups = claims.get("groups")
        amr = claims.get("amr")
        return cls(
            provider_id=provider_id,
            provider_name=provider_name,
            subject=str(claims.get("sub", "")),
            preferred_username=str(claims.get("preferred_username") or ""),
            email=email.strip().lower() if isinstance(email, str) and verified else "",
            groups=tuple(g for g in groups if isinstance(g, str))
            if isinstance(groups, list)
            else (),
            multi_factor=(isinstance(amr, list) and "mfa" in amr)
            or (claims.get("acr") in settings.SSO_MFA_ACR_VALUES),
        )

    @property
    def audit_details(self) -> dict[str, str]:
        return {
            "provider": self.provider_name,
            "provider_id": self.provider_id,
            "subject": self.subject,
        }


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower() if "@" in email else ""


def required_provider(email: str) -> str | None:
    """The OIDC_PROVIDERS id an email's domain must log in through (SSO_REQUIRED_DOMAINS)."""
    domains: dict[str, str] = settings.SSO_REQUIRED_DOMAINS
    return domains.get(domain_of(email))


def provider_name(provider_id: str) -> str:
    providers: dict[str, dict[str, Any]] = settings.SOCIALACCOUNT_PROVIDERS
    apps: list[dict[str, Any]] = providers["openid_connect"]["APPS"]
    return next(
        (str(app["name"]) for app in apps if app["provider_id"] == provider_id), provider_id
    )


def sso_only_provider(user: User) -> str | None:
    """The provider `user` must log in through (their email's domain requires one), or None.
    An account's email is set only by an administrator, an invitation's link or a provider
    that says it is verified: each counts as verified here."""
    return required_provider(user.email) if user.email else None


def reauthentication_url(user: User, provider_id: str | None) -> str | None:
    """Where `user` confirms it is them through single sign-on: a log-in through `provider_id`
    (their domain's) if their account is linked to it, or else through the first configured
    provider it is linked to; None if none is."""
    providers: dict[str, dict[str, Any]] = settings.SOCIALACCOUNT_PROVIDERS
    configured = {str(app["provider_id"]) for app in providers["openid_connect"]["APPS"]}
    linked = [p for p in selectors.linked_sso_providers(user) if p in configured]
    if provider_id is not None:
        linked = [p for p in linked if p == provider_id]
    if not linked:
        return None
    return reverse("openid_connect_login", kwargs={"provider_id": linked[0]})


def _audit_refusal(
    action: str, *, provider_id: str, user: User | None, origin: Origin | None, **details: str
) -> str:
    """Audit a password log-in or reset refused for `provider_id`'s sake; its name."""
    name = provider_name(provider_id)
    audit.record(
        action=action,
        outcome=Outcome.REFUSED,
        actor=user,
        owner=user,
        origin=origin,
        details={**details, "provider": name, "provider_id": provider_id},
    )
    return name


def password_login_refusal(*, username: str, origin: Origin | None) -> str | None:
    """Why a password log-in as `username` (any case, as log-in finds it) is refused, or None:
    the account's email domain logs in through its provider (superusers keep their password:
    break-glass, audited at log-in). Refused before the password is checked, so this tells
    nothing about the password."""
    user = selectors.account_named(username.strip())
    required = sso_only_provider(user) if user is not None else None
    if user is None or required is None or user.is_superuser:
        return None
    name = _audit_refusal(
        Action.LOGIN_FAILED,
        provider_id=required,
        user=user,
        origin=origin,
        step="password",
        reason="sso_required",
    )
    return f"Your account logs in with {name}: use “Log in with {name}” below."


def password_reset_refusal(*, email: str, origin: Origin | None) -> str | None:
    """Why a password reset for `email` is refused, or None: its domain logs in through a
    provider, which keeps the password. Said of the domain, whether or not an account has
    the address (the reset tells nothing about accounts)."""
    required = required_provider(email.strip())
    if required is None:
        return None
    name = _audit_refusal(
        Action.SSO_REFUSED,
        provider_id=required,
        user=None,
        origin=origin,
        step="password_reset",
        domain=domain_of(email),
    )
    return (
        f"Accounts at {domain_of(email)} log in with {name}, which keeps their password: "
        f"use “Log in with {name}” on the log-in page."
    )


def _record(
    action: str,
    facts: SSOLogin,
    *,
    user: User | None,
    outcome: str = Outcome.SUCCESS,
    origin: Origin | None,
    **details: object,
) -> None:
    audit.record(
        action=action,
        outcome=outcome,
        actor=user,
        owner=user,
        origin=origin,
        details={**facts.audit_details, **details},
    )


def _refuse(
    facts: SSOLogin, message: str, *, reason: str, user: User | None, origin: Origin | None
) -> Refused:
    _record(
        Action.SSO_REFUSED, facts, user=user, outcome=Outcome.REFUSED, origin=origin, reason=reason
    )
    return Refused(message, code="sso_refused")


def check_sso_login(facts: SSOLogin, *, user: User | None, origin: Origin | None) -> User | None:
    """Refuse a log-in the domain rule forbids; return an existing account this provider may
    take over (its email's domain requires this provider), if `user` (the account already
    linked to this subject) is None."""
    if not facts.subject:
        raise _refuse(
            facts,
            "The provider did not say who you are.",
            reason="no_subject",
            user=user,
            origin=origin,
        )
    for email in filter(None, (facts.email, user.email if user else "")):
        required = required_provider(email)
        if required is not None and required != facts.provider_id:
            raise _refuse(
                facts,
                f"Accounts at {domain_of(email)} log in with {provider_name(required)}.",
                reason="domain_requires_another_provider",
                user=user,
                origin=origin,
            )
    if user is not None or not facts.email or required_provider(facts.email) != facts.provider_id:
        return None
    matches = list(selectors.accounts_with_email(facts.email)[:2])
    if len(matches) > 1:
        raise _refuse(
            facts,
            "More than one account has your email address: ask an administrator to fix it.",
            reason="email_ambiguous",
            user=None,
            origin=origin,
        )
    return matches[0] if matches else None


def record_linked(facts: SSOLogin, *, user: User, origin: Origin | None) -> None:
    _record(Action.SSO_LINKED, facts, user=user, origin=origin)


def free_username(hint: str) -> str:
    """A username for a new account from the provider's `preferred_username` (or email),
    under the username rules (`models.validate_username`): an email-like name keeps its part
    before the "@", accents are dropped and anything else outside a-z, digits and . _ + -
    becomes "-". A name taken in any case, or reserved (`teams.RESERVED_USERNAMES`), gets
    -2, -3, ... instead."""
    ascii_only = unicodedata.normalize("NFKD", normalise_username(hint).partition("@")[0])
    ascii_only = "".join(c for c in ascii_only if not unicodedata.combining(c))
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", ascii_only).strip(".-")
    base = base[: USERNAME_MAX_LENGTH - 8] or "sso-user"
    validate_username(base)  # holds by construction: a name the rule refuses is a bug here
    candidate, n = base, 1
    while candidate.lower() in RESERVED_USERNAMES or selectors.username_taken(candidate):
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def provision_account(facts: SSOLogin, *, origin: Origin | None) -> User:
    """The account of a first log-in: no password (it logs in through its provider)."""
    for _ in range(5):  # the name chosen can be taken a moment later (any case: the index)
        username = free_username(facts.preferred_username or facts.email)
        try:
            with transaction.atomic():
                user = User(username=username, email=facts.email)
                user.set_unusable_password()
                user.save()
                _record(
                    Action.SSO_PROVISIONED,
                    facts,
                    user=user,
                    origin=origin,
                    username=username,
                    preferred_username=facts.preferred_username,
                )
            return user
        except IntegrityError:
            continue
    raise _refuse(
        facts,
        "No username could be chosen for your account: try again.",
        reason="username_race",
        user=None,
        origin=origin,
    )


def record_failure(
    *, provider_id: str, provider_name: str, reason: str, origin: Origin | None
) -> None:
    """A log-in through a provider that did not complete (a token rejected, a state unknown)."""
    audit.record(
        action=Action.SSO_REFUSED,
        outcome=Outcome.FAILED,
        origin=origin,
        details={"provider": provider_name, "provider_id": provider_id, "reason": reason},
    )


def record_sso_login(facts: SSOLogin, *, user: User, origin: Origin | None) -> None:
    _record(
        Action.LOGGED_IN,
        facts,
        user=user,
        origin=origin,
        method="sso",
        multi_factor=facts.multi_factor,
    )


def _wanted_roles(facts: SSOLogin) -> dict[str, tuple[str, str]]:
    """Team name -> (role, group) the person's groups give through this provider's rules;
    several groups for one team: the highest role."""
    wanted: dict[str, tuple[str, str]] = {}
    for rule in settings.OIDC_TEAM_MAPPING:
        if rule["provider"] != facts.provider_id or rule["group"] not in facts.groups:
            continue
        team, role = rule["team"], rule["role"]
        if team not in wanted or RANK[Role(role)] > RANK[Role(wanted[team][0])]:
            wanted[team] = (role, rule["group"])
    return wanted


def apply_team_mapping(facts: SSOLogin, *, user: User, origin: Origin | None) -> None:
    """Bring the memberships this provider's mapping manages in line with the groups."""
    wanted = _wanted_roles(facts)
    via = {"via": "sso_mapping", **facts.audit_details}
    for team_name, (role, group) in wanted.items():
        with transaction.atomic():
            team, created = Team.objects.get_or_create(
                name__iexact=team_name, defaults={"name": team_name}
            )
            if created:
                audit.record(
                    action=Action.TEAM_CREATED,
                    outcome=Outcome.SUCCESS,
                    actor=user,
                    team=team,
                    origin=origin,
                    details={"name": team.name, **via, "group": group},
                )
            _lock_team(team.pk)  # two log-ins of one person at once: one adds, one sees it
            membership = Membership.objects.filter(team=team, user=user).first()
            if membership is None:
                Membership.objects.create(
                    team=team, user=user, role=role, managed_by=facts.provider_id
                )
                audit.record(
                    action=Action.MEMBER_ADDED,
                    outcome=Outcome.SUCCESS,
                    actor=user,
                    team=team,
                    origin=origin,
                    details={"username": user.get_username(), "role": role, **via, "group": group},
                )
            elif membership.managed_by == facts.provider_id and membership.role != role:
                _change(
                    membership, role=role, user=user, origin=origin, details={**via, "group": group}
                )
    wanted_teams = {name.lower() for name in wanted}
    stale = Membership.objects.filter(user=user, managed_by=facts.provider_id).select_related(
        "team"
    )
    for membership in stale:
        if membership.team.name.lower() not in wanted_teams:
            reason = "no group in the provider's groups claim maps to this team any more"
            _change(
                membership, role=None, user=user, origin=origin, details={**via, "reason": reason}
            )


def _change(
    membership: Membership,
    *,
    role: str | None,
    user: User,
    origin: Origin | None,
    details: dict[str, object],
) -> None:
    """Change a managed membership's role, or remove it (`role` None), unless that would
    leave its team without an owner: then refuse, in the audit."""
    action = Action.MEMBER_REMOVED if role is None else Action.MEMBER_ROLE_CHANGED
    with transaction.atomic():
        membership = _locked(membership)
        facts = {"username": user.get_username(), "old_role": membership.role, **details}
        if role is not None:
            facts["new_role"] = role
        try:
            if role is None or RANK[Role(role)] < RANK[Role.OWNER]:
                _refuse_last_owner(
                    membership, actor=user, consequence="the team mapping leaves it as it is"
                )
        except Refused as refusal:
            audit.record(
                action=action,
                outcome=Outcome.REFUSED,
                actor=user,
                team=membership.team,
                origin=origin,
                details={**facts, "refusal": refusal.message},
            )
            return
        if role is None:
            membership.delete()
        else:
            membership.role = role
            membership.save(update_fields=["role"])
        audit.record(
            action=action,
            outcome=Outcome.SUCCESS,
            actor=user,
            team=membership.team,
            origin=origin,
            details=facts,
        )
