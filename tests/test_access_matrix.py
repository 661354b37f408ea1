"""The access matrix: every actor, on every URL of the app, as a page and as an htmx partial,
with GET and POST, on every kind of object.

Expected outcomes follow the access rules of `threads_app/selectors.py` (the roles are in the
README, "What it does"): a team owner manages members and keys, a member uses the team's keys
(create, edit, delete threads), a viewer reads threads and the audit log; a personal key is its
owner's; a bulk-delete job is its creator's; superusers act as owners everywhere (as the
selectors and tests/test_keys.py decide). Statuses: 302 to the
login page for the anonymous, 404 for an object the actor may not see, 403 for one they see
but may not change, 405 for a method the URL does not take. POST bodies are minimal (the
point is permission, not validation): an allowed POST may answer 200 with form errors, and a
refused choice inside a form (another team's key) is a form error too: 200.

Each cell is its own test: the `db` fixture rolls back whatever an allowed POST did, inside
the world built once for the module (itself rolled back at the end). Besides the status, no
response may name an object the actor cannot see, and none may carry a secret.
`pytest -v` prints the matrix as a table at the end of the module.

A URL added to `threads_app/urls.py` fails `test_every_url_has_a_matrix_entry` until ROUTES
says who may use it.
"""

import gzip
import itertools
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone

from tests.conftest import OTHER_TEST_KEY, TEST_KEY, authenticated_at
from threads_app import audit
from threads_app.crypto import encrypt_secret, secret_fingerprint, secret_hint
from threads_app.models import (
    ApiKey,
    ApiToken,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Invitation,
    Membership,
    SavedView,
    Selection,
    Team,
    TrackedThread,
    WebhookDelivery,
    WebhookEndpoint,
)
from threads_app.services import exports
from threads_app.services.teams import invitation_token_hash

Role = Membership.Role
NONE, SEE, USE, MANAGE = range(4)

# A secret posted to the key form: it must never come back either.
NEW_SECRET = "sk-matrix-new-secret-0123456789abcdef"
# The world's webhook endpoints' signing secret: no page shows a stored one.
HOOK_SECRET = "whsec_bWF0cml4LXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3ODk="
SECRETS = (TEST_KEY, OTHER_TEST_KEY, NEW_SECRET, HOOK_SECRET)

ANONYMOUS = "anonymous"
# What each actor may do in each scope: team A, team B, the other user's personal things (P),
# the A member's own bulk-delete job (J) and invitations addressed to the other user (I; the
# invitee's alone, superusers included: nobody answers someone else's). Anything not listed
# is NONE.
ACCESS = {
    "A_owner": {"A": MANAGE, "EA": MANAGE},
    "A_member": {"A": USE, "J": MANAGE, "EA": MANAGE},
    "A_viewer": {"A": SEE},
    "B_owner": {"B": MANAGE},
    "other_user": {"P": MANAGE, "I": MANAGE, "EP": MANAGE},
    # A superuser acts as every team's owner; someone's personal export is theirs alone.
    "superuser": {"A": MANAGE, "B": MANAGE, "P": MANAGE, "J": MANAGE, "EA": MANAGE, "EP": SEE},
    ANONYMOUS: {},
}
ACTORS = list(ACCESS)
OWN = "own"  # the actor's own things (a personal key, a new team): everyone manages them
SECRET_OF = {"A": TEST_KEY, "B": OTHER_TEST_KEY, "P": TEST_KEY}  # each key's upstream project


def level(actor, scope):
    if actor == ANONYMOUS:
        return NONE
    return MANAGE if scope == OWN else ACCESS[actor].get(scope, NONE)


# --- targets: the objects a URL names, in its path or in the request's parameters ------------


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # what the path names: "", "thread", "key", "team", "membership", "job", "event"
    scope: str  # "A", "B", "P", "J" or OWN
    holder: str = ""  # the actor whose membership it is
    crossed: bool = False  # team B's membership addressed through team A's URL


NOTHING = Target("-", "", OWN)
THREADS = tuple(Target(f"thread_{scope}", "thread", scope) for scope in "ABP")
KEYS = tuple(Target(f"key_{scope}", "key", scope) for scope in "ABP")
TEAMS = tuple(Target(f"team_{scope}", "team", scope) for scope in "AB")
MEMBERSHIPS = (
    Target("membership_A", "membership", "A", holder="A_member"),
    Target("membership_B", "membership", "B"),
    Target("membership_B_via_A", "membership", "A", crossed=True),
)
JOBS = (Target("job_of_A_member", "job", "J"), Target("job_of_other_user", "job", "P"))
# Finished exports: one of team A's threads asked for by its member (EA), one of the other
# user's personal key (EP). Whoever asked, and the team's owners, may download the file.
EXPORTS = (
    Target("export_of_team_A", "job", "EA"),
    Target("export_of_other_user", "job", "EP"),
)
SELECTIONS = (
    Target("selection_of_A_member", "selection", "J"),
    Target("selection_of_other_user", "selection", "P"),
)
# A view shared with team A by its owner, and the other user's own.
SAVED_VIEWS = (Target("view_of_team_A", "view", "A"), Target("view_of_other_user", "view", "P"))
EVENTS = tuple(Target(f"event_{scope}", "event", scope) for scope in "ABP")
# Access tokens: the teams' (made by their owners) and the other user's personal one. Only
# those who may manage a token see it (a team's members and viewers do not).
TOKENS = tuple(Target(f"token_{scope}", "token", scope) for scope in "ABP")
# Webhook endpoints (the teams' and the other user's own) and one delivery of each: a team's
# members and viewers see them, its owners manage them.
WEBHOOKS = tuple(Target(f"webhook_{scope}", "webhook", scope) for scope in "ABP")
DELIVERIES = tuple(Target(f"delivery_{scope}", "delivery", scope) for scope in "ABP")
# Pending invitations as a team's owners see them (revoke), and as the invitee does (accept,
# decline): one to the other user, one to someone who is no actor (scope X: nobody's).
TEAM_INVITATIONS = (
    Target("invitation_A", "invitation", "A"),
    Target("invitation_B", "invitation", "B"),
    Target("invitation_B_via_A", "invitation", "A", crossed=True),
)
MY_INVITATIONS = (
    Target("invitation_to_other_user", "my_invitation", "I"),
    Target("invitation_to_spare", "my_invitation", "X"),
)
# An emailed invitation's link, to someone who is no actor: public, it names its team only.
INVITATION_LINKS = (Target("invitation_link", "link", "X"),)
LINK_TOKEN = "matrix-link-token-0123456789"
# key_create's POST names the new key's owner: nobody (personal) or a team.
KEY_OWNERS = (Target("personal", "", OWN), *TEAMS)
PATH_KWARGS = {
    "": set(),
    "thread": {"pk"},
    "key": {"pk"},
    "team": {"pk"},
    "job": {"pk"},
    "selection": {"pk"},
    "view": {"pk"},
    "event": {"pk"},
    "token": {"pk"},
    "webhook": {"pk"},
    "delivery": {"pk"},
    "membership": {"pk", "membership_pk"},
    "invitation": {"pk", "invitation_pk"},
    "my_invitation": {"pk"},
    "link": {"token"},
}


@dataclass(frozen=True)
class Rule:
    """Who may use a URL with one method, and how it answers."""

    need: int = SEE  # the access level to the target's scope it takes
    allowed: tuple = (200, 200)  # the status when allowed: (full page, htmx)
    refused: int = 403  # when the level is too low (in the path: only if the target is visible)
    self_ok: bool = False  # a member may act on their own membership (leave the team)
    lookup_first: bool = False  # the membership is looked up before the permission check


PATH, POST_DATA, PARAMS = "path", "POST data", "GET and POST parameters"


@dataclass(frozen=True)
class Route:
    targets: tuple = (NOTHING,)
    get: Rule | None = None  # None: 405
    post: Rule | None = None
    target_in: str = PATH  # where the request names the target
    params: Any = None  # (world, target) -> request parameters; None: an empty body
    public: bool = False  # no login needed (the health endpoint): the anonymous are not sent away

    def targets_for(self, method):
        if (self.get if method == "GET" else self.post) is None:
            return self.targets[:1]  # refused before any object is looked up
        return (NOTHING,) if method == "GET" and self.target_in == POST_DATA else self.targets


ANYONE = Rule(NONE)  # any logged-in user
REDIRECTS = (302, 200)  # a plain POST redirects (PRG); htmx gets a partial or HX-Redirect
EMPTY_FORMSETS = {
    f"{prefix}-{field}": "0"
    for prefix in ("meta", "msg")
    for field in ("TOTAL_FORMS", "INITIAL_FORMS")
}


def key_filter_params(world, target):
    return {"key": world.keys[target.scope].pk} if target.kind == "key" else {}


def thread_create_params(world, target):
    return {"label": "matrix-created", "api_key": world.keys[target.scope].pk, **EMPTY_FORMSETS}


def thread_import_params(world, target):
    return {"api_key": world.keys[target.scope].pk, "thread_ids": "thread_matrixnosuchthread"}


def token_create_params(world, target):
    team = world.teams.get(target.scope)
    return {
        "label": "matrix-new-token",
        "scopes": ["threads:read"],
        "days": "30",
        "team": team.pk if team else "",
    }


def webhook_create_params(world, target):
    team = world.teams.get(target.scope)
    return {
        "url": "https://127.0.0.1:9/matrix-hook",
        "description": "matrix-new-hook",
        "events": ["thread.deleted"],
        "team": team.pk if team else "",
    }


def key_create_params(world, target):
    team = world.teams.get(target.scope)
    return {
        "label": "matrix-new-key",
        "secret": NEW_SECRET,
        "team": team.pk if team else "",
        "save_unverified": "on",
    }


# Expected outcomes per URL name. Every URL of the app must be here, and nothing else.
ROUTES = {
    # Sums up what the actor may see: the leak checks below keep other scopes' keys out.
    "overview": Route(get=ANYONE),
    # Lists filtered by someone else's key show nothing of theirs.
    "thread_list": Route((NOTHING, *KEYS), get=ANYONE, target_in=PARAMS, params=key_filter_params),
    "thread_create": Route(
        KEYS,
        get=ANYONE,
        post=Rule(USE, REDIRECTS, refused=200),
        target_in=POST_DATA,
        params=thread_create_params,
    ),
    "thread_import": Route(
        KEYS,
        get=ANYONE,
        post=Rule(USE, refused=200),
        target_in=POST_DATA,
        params=thread_import_params,
    ),
    "thread_detail": Route(THREADS, get=Rule(SEE)),
    "thread_messages": Route(THREADS, get=Rule(SEE)),
    "thread_edit": Route(THREADS, get=Rule(USE), post=Rule(USE)),
    "thread_delete": Route(THREADS, get=Rule(USE), post=Rule(USE, REDIRECTS)),
    "thread_untrack": Route(THREADS, get=Rule(USE), post=Rule(USE, REDIRECTS)),
    # The confirmation counts threads out of sight without naming them; starting a job that
    # would delete nothing is refused whatever the reason.
    "thread_bulk_delete": Route(
        THREADS,
        get=ANYONE,
        post=Rule(USE, REDIRECTS),
        target_in=PARAMS,
        params=lambda world, target: {"thread": world.threads[target.scope].pk},
    ),
    "bulk_delete_job": Route(JOBS, get=Rule(SEE)),
    # Whoever sees a job may pause, resume or cancel it (a refusal is a message, redirected).
    "job_list": Route(get=ANYONE),
    "job_pause": Route(JOBS, post=Rule(SEE, REDIRECTS)),
    "job_resume": Route(JOBS, post=Rule(SEE, REDIRECTS)),
    "job_cancel": Route(JOBS, post=Rule(SEE, REDIRECTS)),
    # Whoever sees a job may download its receipt; the world's jobs are running, so the
    # download goes back to the job's page, saying why (tests/test_receipts.py downloads one).
    "job_receipt_csv": Route(JOBS, get=Rule(SEE, REDIRECTS)),
    "job_receipt_json": Route(JOBS, get=Rule(SEE, REDIRECTS)),
    # Whoever sees a job sees its approval's confirmation; deciding is the service's rule (a
    # job that waits for nothing, or the requester's own, is refused: a message, redirected;
    # a refusal's form answers again with the error). tests/test_approvals.py has the rules.
    "job_approve": Route(JOBS, get=Rule(SEE), post=Rule(SEE, REDIRECTS)),
    "job_refuse": Route(JOBS, get=Rule(SEE), post=Rule(SEE)),
    # An export's file: whoever asked for it and its team's owners (others who see it: 403).
    "job_export_download": Route(EXPORTS, get=Rule(MANAGE)),
    # Anyone selects what their filters match (only what they may act on counts).
    "thread_select_all": Route(post=Rule(NONE, REDIRECTS)),
    # A selection is its creator's; an empty POST is a form error.
    "selection_detail": Route(SELECTIONS, get=Rule(SEE), post=Rule(SEE)),
    "saved_view_list": Route(get=ANYONE),
    "saved_view_create": Route(post=Rule(NONE, REDIRECTS)),
    # A team's members see its views; its owners (and the creator) remove them.
    "saved_view_delete": Route(SAVED_VIEWS, post=Rule(MANAGE, REDIRECTS)),
    "thread_check": Route(THREADS, post=Rule(SEE, REDIRECTS)),  # a read: viewers may check
    "thread_export": Route(THREADS, get=Rule(SEE)),
    "key_list": Route(get=ANYONE),
    "key_create": Route(
        KEY_OWNERS,
        get=ANYONE,
        post=Rule(MANAGE, REDIRECTS, refused=200),
        target_in=POST_DATA,
        params=key_create_params,
    ),
    "key_rotate": Route(KEYS, get=Rule(MANAGE), post=Rule(MANAGE)),
    "key_revoke": Route(KEYS, get=Rule(MANAGE), post=Rule(MANAGE, REDIRECTS)),
    # An empty POST is a form error (no days): 200 for whoever may manage the key.
    "key_retention": Route(KEYS, get=Rule(MANAGE), post=Rule(MANAGE)),
    "team_list": Route(get=ANYONE),
    "team_create": Route(get=ANYONE, post=ANYONE),
    "team_detail": Route(TEAMS, get=Rule(SEE)),
    "team_delete": Route(TEAMS, get=Rule(MANAGE), post=Rule(MANAGE, REDIRECTS)),
    "team_invite": Route(
        TEAMS,
        post=Rule(MANAGE, REDIRECTS),
        params=lambda world, target: {"identifier": "spare-mx", "role": Role.VIEWER},
    ),
    "team_invitation_revoke": Route(TEAM_INVITATIONS, post=Rule(MANAGE, REDIRECTS)),
    "team_two_factor_rule": Route(TEAMS, post=Rule(MANAGE, REDIRECTS)),
    "team_approval_rule": Route(TEAMS, post=Rule(MANAGE, REDIRECTS)),
    "invitation_list": Route(get=ANYONE),
    "invitation_accept": Route(MY_INVITATIONS, post=Rule(MANAGE, REDIRECTS)),
    "invitation_decline": Route(MY_INVITATIONS, post=Rule(MANAGE, REDIRECTS)),
    # Anyone with the link: the anonymous see the account form (an empty POST: its errors),
    # the logged-in whether the invitation is theirs.
    "invitation_link": Route(INVITATION_LINKS, get=ANYONE, post=ANYONE, public=True),
    "team_member_role": Route(
        MEMBERSHIPS,
        post=Rule(MANAGE, REDIRECTS),
        params=lambda world, target: {"role": Role.VIEWER},
    ),
    "team_member_remove": Route(
        MEMBERSHIPS,
        get=Rule(MANAGE, self_ok=True, lookup_first=True),
        post=Rule(MANAGE, REDIRECTS, self_ok=True, lookup_first=True),
    ),
    "audit_list": Route((NOTHING, *KEYS), get=ANYONE, target_in=PARAMS, params=key_filter_params),
    "audit_export": Route((NOTHING, *KEYS), get=ANYONE, target_in=PARAMS, params=key_filter_params),
    "audit_snapshot": Route(EVENTS, get=Rule(SEE)),
    # For load balancers: no login, and it names nothing (the leak checks below apply).
    "health": Route(get=ANYONE, public=True),
    # A team's tokens are for its owners: a choice of another team is a form error (200), the
    # new token is the answer (200, not a redirect: it is shown once, never in a URL).
    "token_list": Route(
        KEY_OWNERS,
        get=ANYONE,
        post=Rule(MANAGE, refused=200),
        target_in=POST_DATA,
        params=token_create_params,
    ),
    "token_revoke": Route(
        TOKENS, get=Rule(MANAGE, refused=404), post=Rule(MANAGE, REDIRECTS, refused=404)
    ),
    # A team's endpoints: its owners register them (another team's is a form error: 200; the
    # answer is the page with the new secret, 200), its members and viewers look at them.
    "webhook_list": Route(get=ANYONE),
    "webhook_create": Route(
        KEY_OWNERS,
        get=ANYONE,
        post=Rule(MANAGE, refused=200),
        target_in=POST_DATA,
        params=webhook_create_params,
    ),
    "webhook_detail": Route(WEBHOOKS, get=Rule(SEE)),
    # An empty POST is a form error: 200 for whoever may manage the endpoint.
    "webhook_edit": Route(WEBHOOKS, get=Rule(MANAGE), post=Rule(MANAGE)),
    "webhook_rotate": Route(WEBHOOKS, get=Rule(MANAGE), post=Rule(MANAGE)),  # the new secret
    "webhook_delete": Route(WEBHOOKS, get=Rule(MANAGE), post=Rule(MANAGE, REDIRECTS)),
    "webhook_resend": Route(DELIVERIES, post=Rule(MANAGE, REDIRECTS)),
}


def expected_status(route, method, htmx, actor, target):
    if actor == ANONYMOUS and not route.public:
        return 302  # to the login page, whatever the URL or method
    rule = route.get if method == "GET" else route.post
    if rule is None:
        return 405
    if route.public:
        return rule.allowed[htmx]  # anyone, logged in or not
    actor_level = level(actor, target.scope)
    allowed = rule.allowed[htmx]
    if route.target_in != PATH:
        return allowed if actor_level >= rule.need else rule.refused
    if actor_level == NONE:
        return 404
    permitted = actor_level >= rule.need or (rule.self_ok and target.holder == actor)
    if target.crossed and (permitted or rule.lookup_first):
        return 404  # the membership is not in the team the URL names
    return allowed if permitted else rule.refused


@dataclass(frozen=True)
class Cell:
    url_name: str
    method: str
    target: Target
    htmx: bool
    actor: str

    @property
    def route(self):
        return ROUTES[self.url_name]

    @property
    def row(self):
        return (self.url_name, self.method, self.target.name, "htmx" if self.htmx else "page")

    @property
    def expected(self):
        return expected_status(self.route, self.method, self.htmx, self.actor, self.target)


def _cells():
    for url_name, route in ROUTES.items():
        for method in ("GET", "POST"):
            for target, htmx, actor in itertools.product(
                route.targets_for(method), (False, True), ACTORS
            ):
                yield Cell(url_name, method, target, htmx, actor)


CELLS = list(_cells())


# --- the world: two teams, a loner and a superuser, with keys, threads, jobs and events -------


@dataclass
class World:
    users: dict  # actor -> user
    teams: dict  # scope -> team
    keys: dict  # scope -> key
    threads: dict  # scope -> tracked thread (its thread_id is set per cell, see live_threads)
    memberships: dict  # target name -> membership
    jobs: dict  # scope -> bulk-delete job
    events: dict  # scope -> audit event with a snapshot
    invitations: dict  # target name -> pending invitation
    tokens: dict  # scope -> access token
    names: dict  # scope -> strings that name its objects
    sessions: dict  # actor -> session cookie (one login each, not one per cell)
    selections: dict  # scope -> selection
    saved_views: dict  # scope -> saved view
    webhooks: dict  # scope -> webhook endpoint
    deliveries: dict  # scope -> one delivery of that endpoint

    def url(self, cell):
        target = cell.target
        path_objects = {
            "thread": self.threads,
            "key": self.keys,
            "team": self.teams,
            "job": self.jobs,
            "selection": self.selections,
            "view": self.saved_views,
            "event": self.events,
            "token": self.tokens,
            "webhook": self.webhooks,
            "delivery": self.deliveries,
        }
        if cell.route.target_in != PATH or target.kind == "":
            args = []
        elif target.kind == "membership":
            args = [self.teams[target.scope].pk, self.memberships[target.name].pk]
        elif target.kind == "invitation":
            args = [self.teams[target.scope].pk, self.invitations[target.name].pk]
        elif target.kind == "my_invitation":
            args = [self.invitations[target.name].pk]
        elif target.kind == "link":
            args = [LINK_TOKEN]
        else:
            args = [path_objects[target.kind][target.scope].pk]
        return reverse(f"threads_app:{cell.url_name}", args=args)

    def markers(self, scope):
        """What no one outside the scope may be shown: names, ids and the live thread's id."""
        thread = self.threads.get(scope)
        return [*self.names[scope], *([thread.thread_id] if thread else [])]


def _user(username, **extra):
    return get_user_model().objects.create_user(username, f"{username}@example.test", **extra)


def _key(secret, label, owner=None, team=None, created_by=None):
    return ApiKey.objects.create(
        owner=owner,
        team=team,
        label=label,
        secret_encrypted=encrypt_secret(secret),
        hint=secret_hint(secret),
        fingerprint=secret_fingerprint(secret),
        created_by=created_by or owner,
    )


def _build_world():
    users = {
        "A_owner": _user("ana"),
        "A_member": _user("max"),
        "A_viewer": _user("vic"),
        "B_owner": _user("bea"),
        "other_user": _user("lou"),
        "superuser": _user("root", is_superuser=True, is_staff=True),
    }
    _user("spare")  # invited to both teams: nobody the matrix logs in as
    ben = _user("ben")
    teams = {
        "A": Team.objects.create(name="Alpha-team-mx"),
        "B": Team.objects.create(name="Bravo-team-mx"),
    }
    roles = [
        ("A", users["A_owner"], Role.OWNER),
        ("A", users["A_member"], Role.MEMBER),
        ("A", users["A_viewer"], Role.VIEWER),
        ("B", users["B_owner"], Role.OWNER),
        ("B", ben, Role.MEMBER),
    ]
    for scope, user, role in roles:
        Membership.objects.create(team=teams[scope], user=user, role=role)
    keys = {
        "A": _key(TEST_KEY, "Alpha-key-mx", team=teams["A"], created_by=users["A_owner"]),
        "B": _key(OTHER_TEST_KEY, "Bravo-key-mx", team=teams["B"], created_by=users["B_owner"]),
        "P": _key(TEST_KEY, "Private-key-mx", owner=users["other_user"]),
    }
    trackers = {"A": users["A_member"], "B": users["B_owner"], "P": users["other_user"]}
    threads = {
        scope: TrackedThread.objects.create(
            thread_id=f"thread_world{scope}mx",
            api_key=key,
            label=f"{key.label}-thread",
            tracked_by=trackers[scope],
        )
        for scope, key in keys.items()
    }
    names = {scope: [key.label, threads[scope].label] for scope, key in keys.items()}
    events = {}
    for scope, key in keys.items():
        thread_id = f"thread_audit{scope}mx"
        events[scope] = audit.record(
            action=AuditEvent.Action.THREAD_DELETE_INTENT,
            outcome=AuditEvent.Outcome.PENDING,
            actor=trackers[scope],
            api_key=key,
            thread_id=thread_id,
            snapshot=json.dumps({"thread": {"id": thread_id}}),
        )
        names[scope] += [thread_id, *([key.team.name] if key.team else [])]
    jobs = {}
    names["J"] = []
    for scope, creator, thread in (
        ("J", users["A_member"], threads["A"]),
        ("P", users["other_user"], threads["P"]),
    ):
        jobs[scope] = BulkDeleteJob.objects.create(created_by=creator)
        job_thread_id = f"thread_job{scope}mx"  # what the job's page names
        BulkDeleteItem.objects.create(
            job=jobs[scope], tracked_thread=thread, thread_id=job_thread_id
        )
        names[scope].append(job_thread_id)
    for scope, creator, team in (
        ("EA", users["A_member"], teams["A"]),
        ("EP", users["other_user"], None),
    ):
        jobs[scope] = BulkDeleteJob.objects.create(
            created_by=creator,
            kind=BulkDeleteJob.Kind.EXPORT,
            team=team,
            state=BulkDeleteJob.State.FINISHED,
            finished_at=timezone.now(),
        )
        jobs[scope].export_file = exports.export_storage().save(
            f"job-{jobs[scope].pk}-threads.jsonl.gz", ContentFile(gzip.compress(b"{}\n"))
        )
        jobs[scope].save()
        names[scope] = []
    selections = {
        "J": Selection.objects.create(created_by=users["A_member"], bound_pk=0),
        "P": Selection.objects.create(created_by=users["other_user"], bound_pk=0),
    }
    saved_views = {
        "A": SavedView.objects.create(
            name="Alpha-view-mx", created_by=users["A_owner"], team=teams["A"]
        ),
        "P": SavedView.objects.create(name="Private-view-mx", created_by=users["other_user"]),
    }
    names["A"].append("Alpha-view-mx")
    names["P"].append("Private-view-mx")
    memberships = {
        "membership_A": Membership.objects.get(team=teams["A"], user=users["A_member"]),
        "membership_B": Membership.objects.get(team=teams["B"], user=ben),
    }
    memberships["membership_B_via_A"] = memberships["membership_B"]
    # The other user's invitation is to a team of its own: the invitee sees the team's name.
    charlie = Team.objects.create(name="Charlie-team-mx")
    Membership.objects.create(team=charlie, user=ben, role=Role.OWNER)
    invitations = {
        "invitation_A": Invitation.objects.create(
            team=teams["A"], identifier="spare", role="viewer"
        ),
        "invitation_B": Invitation.objects.create(
            team=teams["B"], identifier="spare", role="member"
        ),
        "invitation_to_other_user": Invitation.objects.create(
            team=charlie, identifier="lou@example.test", role="member"
        ),
        "invitation_to_spare": Invitation.objects.create(
            team=charlie, identifier="spare@example.test", role="member"
        ),
        "invitation_link": Invitation.objects.create(
            team=charlie,
            identifier="newcomer-mx@example.test",
            role="viewer",
            token_hash=invitation_token_hash(LINK_TOKEN),
            expires_at=timezone.now() + timedelta(days=7),
        ),
    }
    invitations["invitation_B_via_A"] = invitations["invitation_B"]
    tokens = {
        scope: ApiToken.objects.create(
            created_by=maker,
            team=teams.get(scope),
            label=f"token-{scope}-mx",
            hint="tc_mx" + scope,
            token_hash=f"matrix-token-{scope}",
            scopes=["threads:read"],
            expires_at=timezone.now() + timedelta(days=30),
        )
        for scope, maker in (
            ("A", users["A_owner"]),
            ("B", users["B_owner"]),
            ("P", users["other_user"]),
        )
    }
    webhooks = {
        scope: WebhookEndpoint.objects.create(
            team=teams.get(scope),
            owner=None if scope in teams else users["other_user"],
            url=f"https://hooks.example.com/{scope}-matrix",
            description=f"{scope}-hook-mx",
            events=["thread.deleted"],
            secret_encrypted=encrypt_secret(HOOK_SECRET),
        )
        for scope in "ABP"
    }
    deliveries = {
        scope: WebhookDelivery.objects.create(
            endpoint=endpoint,
            message_id=f"msg_matrix{scope}",
            event="thread.deleted",
            body="{}",
            status=WebhookDelivery.Status.FAILED,
            created_at=timezone.now(),
            give_up_at=timezone.now(),
        )
        for scope, endpoint in webhooks.items()
    }
    for scope, endpoint in webhooks.items():
        names[scope].append(endpoint.description)
    sessions = {}
    for actor, user in users.items():
        client = Client()
        client.force_login(user)
        # Logged in just now, for the module's few minutes: adding a key asks for no password.
        authenticated_at(client.session, user, time.time())
        sessions[actor] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return World(
        users,
        teams,
        keys,
        threads,
        memberships,
        jobs,
        events,
        invitations,
        tokens,
        names,
        sessions,
        selections,
        saved_views,
        webhooks,
        deliveries,
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once for the module in a transaction that is rolled back at its end; each cell's
    own `db` transaction is a savepoint inside it."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield _build_world()
        transaction.set_rollback(True)


@pytest.fixture
def live_threads(world, emulator):
    """The emulator is reset for every test: the world's threads are created there again."""
    for scope, thread in world.threads.items():
        thread.thread_id = emulator.seed_thread(SECRET_OF[scope])["id"]
        TrackedThread.objects.filter(pk=thread.pk).update(thread_id=thread.thread_id)
    return world


# --- the matrix ---------------------------------------------------------------------------


def _namespace_patterns():
    _prefix, resolver = get_resolver().namespace_dict["threads_app"]
    return {pattern.name: set(pattern.pattern.converters) for pattern in resolver.url_patterns}


def test_every_url_has_a_matrix_entry():
    """A new URL needs a row in ROUTES (who may use it), and a removed one loses its row."""
    patterns = _namespace_patterns()
    assert set(patterns) == set(ROUTES)
    for name, route in ROUTES.items():
        kinds = {""} if route.target_in != PATH else {target.kind for target in route.targets}
        path_kwargs = {frozenset(PATH_KWARGS[kind]) for kind in kinds}
        assert path_kwargs == {frozenset(patterns[name])}, name


def test_the_table_expects_every_outcome_for_every_actor():
    """Guards against a table that allows or refuses everything."""
    assert {cell.expected for cell in CELLS} == {200, 302, 403, 404, 405}
    for actor in ACTORS[:-1]:
        assert {200, 404, 405} <= {cell.expected for cell in CELLS if cell.actor == actor}, actor


@pytest.mark.django_db
@pytest.mark.parametrize("actor", ["A_viewer", "B_owner", "other_user", "superuser"])
def test_the_markers_are_shown_to_whoever_may_see_them(actor, live_threads, client):
    """The leak check looks for strings the pages really show."""
    world = live_threads
    client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[actor]
    visible = [scope for scope in world.names if level(actor, scope) >= SEE]
    names = ("thread_list", "saved_view_list", "key_list", "audit_list", "webhook_list")
    urls = [reverse(f"threads_app:{name}") for name in names]
    urls += [
        reverse("threads_app:bulk_delete_job", args=[world.jobs[scope].pk])
        for scope in visible
        if scope in world.jobs
    ]
    text = "".join(_text(client.get(url)) for url in urls)
    for scope in visible:
        for marker in world.markers(scope):
            assert marker in text, (scope, marker)


_results = {}  # (row, actor) -> what the cell answered, for the table


@pytest.fixture(scope="module")
def matrix_table(request):
    """Print the matrix at the end of the module when pytest runs with -v."""
    yield _results
    if request.config.getoption("verbose") <= 0 or not _results:
        return
    plugins = request.config.pluginmanager
    rows = list(dict.fromkeys(row for row, _actor in _results))
    headers = ["url", "method", "object", "as", *ACTORS]
    table = [[*row, *(_results.get((row, actor), "") for actor in ACTORS)] for row in rows]
    widths = [max(len(line[i]) for line in [headers, *table]) for i in range(len(headers))]
    # What `capsys.disabled()` does: teardown output is captured otherwise.
    with plugins.get_plugin("capturemanager").global_and_fixture_disabled():
        reporter = plugins.get_plugin("terminalreporter")
        reporter.write_line("")
        reporter.write_line(f"Access matrix: {len(_results)} cells ('!': not as expected)")
        for line in [headers, *table]:
            cells = (value.ljust(width) for value, width in zip(line, widths, strict=True))
            reporter.write_line("  ".join(cells).rstrip())


def _text(response):
    """Body and headers (toasts travel in HX-Trigger) as one string to search."""
    content = b"".join(response.streaming_content) if response.streaming else response.content
    if response.get("Content-Type") == "application/gzip":  # an export: its lines are searched
        content = gzip.decompress(content)
    headers = "\n".join(f"{name}: {value}" for name, value in response.headers.items())
    return content.decode() + "\n" + headers


def _request(client, cell, world):
    route = cell.route
    url = world.url(cell)
    sends_params = route.params and (cell.method == "POST" or route.target_in == PARAMS)
    params = route.params(world, cell.target) if sends_params else {}
    headers = {"HTTP_HX_REQUEST": "true"} if cell.htmx else {}
    if cell.method == "GET":
        return client.get(url, params, **headers)
    return client.post(url, params, **headers)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cell",
    CELLS,
    ids=lambda c: "-".join([c.url_name, c.target.name, c.method, c.row[3], c.actor]),
)
def test_access(cell, live_threads, client, matrix_table):
    world = live_threads
    if cell.actor != ANONYMOUS:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[cell.actor]

    response = _request(client, cell, world)

    status = response.status_code
    matrix_table[cell.row, cell.actor] = f"{status}{'' if status == cell.expected else '!'}"
    assert status == cell.expected
    if cell.actor == ANONYMOUS and cell.expected == 302:
        assert response["Location"].startswith(reverse("account_login"))
    text = _text(response)
    for secret in SECRETS:
        assert secret not in text
    for scope in world.names:
        if level(cell.actor, scope) == NONE:
            for marker in world.markers(scope):
                assert marker not in text, f"{cell.actor} was shown {marker!r} of scope {scope}"


# --- the account pages (django-allauth's, dashboard/urls.py ACCOUNT_ROUTES) ------------------
# Each is PUBLIC (the log-in, the password reset: for those who cannot log in) or LOGIN (an
# anonymous GET or POST goes to the log-in page, back here after). Statuses: (anonymous GET,
# anonymous POST, logged-in GET, logged-in POST), with empty POST bodies, for a user with a
# password and no two-factor yet; a 302 is written as where it goes.
PUBLIC, LOGIN = "public", "login required"
TO_LOGIN = "login?next"
ACCOUNT_PAGES = {
    "account_login": (PUBLIC, (200, 200, "/overview/", "/overview/")),  # logged in: home
    "account_logout": (PUBLIC, ("/accounts/login/", "/accounts/login/", 200, "/accounts/login/")),
    "account_inactive": (PUBLIC, (200, 405, 200, 405)),
    "account_reauthenticate": (LOGIN, (TO_LOGIN, TO_LOGIN, 200, 200)),
    "account_change_password": (LOGIN, (TO_LOGIN, TO_LOGIN, 200, 200)),
    # Someone with a password changes it instead.
    "account_set_password": (
        LOGIN,
        (TO_LOGIN, TO_LOGIN, "/accounts/password/change/", "/accounts/password/change/"),
    ),
    "account_reset_password": (PUBLIC, (200, 200, 200, 200)),
    "account_reset_password_done": (PUBLIC, (200, 405, 200, 405)),
    "account_reset_password_from_key": (PUBLIC, (200, 200, 200, 200)),  # a bad key: a message
    "account_reset_password_from_key_done": (PUBLIC, (200, 405, 200, 405)),
    "mfa_index": (LOGIN, (TO_LOGIN, TO_LOGIN, 200, 405)),
    # The log-in's second step: only inside a log-in, else back to its start (or home).
    "mfa_authenticate": (
        PUBLIC,
        ("/accounts/login/", "/accounts/login/", "/overview/", "/overview/"),
    ),
    # Without two-factor, reauthentication is by password.
    "mfa_reauthenticate": (
        LOGIN,
        (TO_LOGIN, TO_LOGIN, "/accounts/reauthenticate/", "/accounts/reauthenticate/"),
    ),
    "mfa_activate_totp": (LOGIN, (TO_LOGIN, TO_LOGIN, 200, 200)),
    # Nothing to turn off or show without two-factor: 404.
    "mfa_deactivate_totp": (LOGIN, (TO_LOGIN, TO_LOGIN, 404, 404)),
    "mfa_view_recovery_codes": (LOGIN, (TO_LOGIN, TO_LOGIN, 404, 405)),
    "mfa_generate_recovery_codes": (LOGIN, (TO_LOGIN, TO_LOGIN, 200, 200)),
    "mfa_download_recovery_codes": (LOGIN, (TO_LOGIN, TO_LOGIN, 404, 404)),
    # Single sign-on: a provider that is not configured is a 404 (tests/test_sso.py has one).
    "openid_connect_login": (PUBLIC, (404, 404, 404, 404)),
    "openid_connect_callback": (PUBLIC, (404, 404, 404, 404)),
    "socialaccount_login_cancelled": (PUBLIC, (200, 405, 200, 405)),
    # Debug mode only: a 404 in every other (tests/test_accounts.py shows it in debug mode).
    "sent_email_list": (PUBLIC, (404, 405, 404, 405)),
}


def _account_url(name):
    from dashboard.urls import ACCOUNT_ROUTES

    [route] = [route for route in ACCOUNT_ROUTES if route.name == name]
    kwargs = {"uidb36": "1", "key": "not-a-key"} if "uidb36" in str(route.pattern) else {}
    if "provider_id" in str(route.pattern):
        kwargs = {"provider_id": "not-configured"}
    return reverse(name, kwargs=kwargs)


def test_every_account_page_has_a_rule():
    from dashboard.urls import ACCOUNT_ROUTES

    assert {route.name for route in ACCOUNT_ROUTES} == set(ACCOUNT_PAGES)


def _answer(response):
    return response["Location"] if response.status_code == 302 else response.status_code


@pytest.mark.django_db
@pytest.mark.parametrize("name", ACCOUNT_PAGES)
def test_account_page_access(name, client, user):
    rule, expected = ACCOUNT_PAGES[name]
    url = _account_url(name)
    answers = [_answer(client.get(url)), _answer(client.post(url))]
    client.force_login(user)
    answers += [_answer(client.get(url)), _answer(client.post(url))]
    login = f"{reverse('account_login')}?next={url}"
    assert answers == [login if status == TO_LOGIN else status for status in expected]
    if rule == PUBLIC:
        assert not any(str(answer).startswith(login) for answer in answers[:2])
