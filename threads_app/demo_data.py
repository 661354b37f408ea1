"""Seed data for `manage.py demo`, created through the same services the pages use.

Demo secrets are made-up keys that only the in-process emulator accepts.
"""

from dataclasses import dataclass

from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth import get_user_model

from threads_app.models import ApiToken, Membership
from threads_app.services import keys, teams, threads, tokens

DEMO_SECRETS = {"personal": "sk-demo-personal-key", "team": "sk-demo-team-key"}
# (username, password, what the README says they can do)
DEMO_LOGINS = [
    ("demo", "demo-password", "personal key; owner of Demo team"),
    ("mia", "mia-password", "member of Demo team"),
    ("victor", "victor-password", "viewer of Demo team"),
    ("admin", "admin-password", "superuser"),
    ("tess", "tess-password", "member of Demo team, with two-factor authentication on"),
]
# The seeded user whose log-in asks for a code too: `manage.py demo` prints the secret.
TWO_FACTOR_USER = "tess"
CONVERSATION = [
    {"role": "user", "content": "Summarise last week's support tickets."},
    {"role": "assistant", "content": "Most tickets were about log-in problems after the update."},
    {"role": "user", "content": "Which customers were affected most?"},
]


@dataclass(frozen=True)
class Seeded:
    """What the demo prints: new on each start."""

    totp_secret: str  # of TWO_FACTOR_USER
    api_token: str  # demo's personal access token, every scope (README's curl examples)


def seed() -> Seeded:
    """Seed the demo."""
    User = get_user_model()
    users = {}
    for username, password, _ in DEMO_LOGINS:
        users[username] = User.objects.create_user(
            username=username,
            email=f"{username}@demo.example",
            password=password,
            is_staff=username == "admin",
            is_superuser=username == "admin",
        )
    demo = users["demo"]

    personal = keys.add_key(actor=demo, label="Demo personal key", secret=DEMO_SECRETS["personal"])
    threads.create_thread(
        actor=demo,
        api_key=personal,
        label="Support tickets summary",
        metadata={"project": "support", "owner": "demo"},
        messages=CONVERSATION,
    )
    threads.create_thread(
        actor=demo,
        api_key=personal,
        label="Long conversation (load more)",
        messages=[{"role": "user", "content": f"Message number {n}"} for n in range(1, 31)],
    )

    team = teams.create_team(actor=demo, name="Demo team")
    teams.add_member(team, actor=demo, user=users["mia"], role=Membership.Role.MEMBER)
    teams.add_member(team, actor=demo, user=users["victor"], role=Membership.Role.VIEWER)
    shared = keys.add_key(actor=demo, label="Demo team key", secret=DEMO_SECRETS["team"], team=team)
    for label, project in [("Onboarding assistant", "onboarding"), ("Release notes", "docs")]:
        threads.create_thread(
            actor=demo, api_key=shared, label=label, metadata={"project": project, "team": "demo"}
        )
    threads.create_thread(actor=users["mia"], api_key=shared, label="Mia's scratch thread")

    tess = users[TWO_FACTOR_USER]
    teams.add_member(team, actor=demo, user=tess, role=Membership.Role.MEMBER)
    secret = str(generate_totp_secret())
    TOTP.activate(tess, secret)
    RecoveryCodes.activate(tess)
    _row, token = tokens.create_token(
        actor=demo, label="Demo script token", scopes=list(ApiToken.Scope.values)
    )
    return Seeded(totp_secret=secret, api_token=token)
