"""Stored API keys: the list (hints only, never a secret), add (verified with the Threads API
first), rotate and revoke; the services the key pages use."""

from datetime import datetime
from typing import Annotated

from django.views.decorators.debug import sensitive_variables
from ninja import Field, Router, Schema, Status
from pydantic import StringConstraints

from threads_app import selectors
from threads_app.api.base import ApiRequest, Principal, errors, require_in_team, scoped
from threads_app.api.schemas import Body, PathPk, Pk, text
from threads_app.audit import Origin
from threads_app.models import ApiKey, Team
from threads_app.services import keys as key_service

router = Router(tags=["keys"])
MANAGE = "keys:manage"
# As the key form takes it: one line of printable ASCII.
Secret = Annotated[str, StringConstraints(min_length=12, max_length=500, pattern=r"^[\x21-\x7e]+$")]


class KeyOut(Schema):
    id: int
    label: str
    hint: str
    team: str | None = Field(description="The team that owns it; null for a personal key")
    owner: str | None = Field(description="The user who owns a personal key")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    failing: bool
    tracked_threads: int | None = None
    may_manage: bool | None = None


def key_out(api_key: ApiKey) -> KeyOut:
    return KeyOut(
        id=api_key.pk,
        label=api_key.label,
        hint=api_key.hint,
        team=api_key.team.name if api_key.team else None,
        owner=api_key.owner.get_username() if api_key.owner else None,
        created_at=api_key.created_at,
        last_used_at=api_key.last_used_at,
        revoked_at=api_key.revoked_at,
        failing=api_key.failing,
        tracked_threads=getattr(api_key, "tracked_count", None),
        may_manage=getattr(api_key, "can_manage", None),
    )


def manageable_key(principal: Principal, pk: int) -> ApiKey:
    api_key = selectors.get_visible_key(principal.user, pk)
    require_in_team(principal, api_key.team_id)
    return selectors.get_manageable_key(principal.user, api_key.pk)


@router.get("/keys", response={200: list[KeyOut], **errors()}, auth=scoped("threads:read"))
def list_keys(request: ApiRequest) -> list[KeyOut]:
    """The keys the token's user may see (to create or import threads with): hints only."""
    principal = request.auth
    keys = selectors.listed_keys(principal.user)
    if principal.team_id is not None:
        keys = keys.filter(team_id=principal.team_id)
    return [key_out(api_key) for api_key in keys]


class KeyCreate(Body):
    label: text(100, min_length=1)  # type: ignore[valid-type]
    secret: Secret
    team: Pk | None = Field(None, description="A team's id for a team key; null: personal")


@router.post("/keys", response={201: KeyOut, **errors(404, 422, 502)}, auth=scoped(MANAGE))
@sensitive_variables("body")
def add_key(request: ApiRequest, body: KeyCreate) -> Status[KeyOut]:
    """Store a key once the Threads API accepts it (a team key: the team's owners only; a team
    token adds its team's keys only)."""
    principal = request.auth
    team: Team | None = None
    if body.team is not None or principal.team_id is not None:
        team = selectors.get_visible_team(principal.user, body.team or principal.team_id or 0)
        require_in_team(principal, team.pk)
    api_key = key_service.add_key(
        actor=principal.user,
        label=body.label,
        secret=body.secret,
        team=team,
        origin=Origin.from_request(request),
    )
    return Status(201, key_out(api_key))


class KeyRotate(Body):
    secret: Secret


@router.post(
    "/keys/{int:pk}/rotate",
    response={200: KeyOut, **errors(404, 409, 422, 502)},
    auth=scoped(MANAGE),
)
@sensitive_variables("body")
def rotate_key(request: ApiRequest, pk: PathPk, body: KeyRotate) -> KeyOut:
    """Replace the key's secret, once the Threads API accepts the new one."""
    principal = request.auth
    api_key = key_service.rotate_key(
        manageable_key(principal, pk),
        actor=principal.user,
        secret=body.secret,
        origin=Origin.from_request(request),
    )
    return key_out(api_key)


@router.post(
    "/keys/{int:pk}/revoke", response={200: KeyOut, **errors(404, 409, 422)}, auth=scoped(MANAGE)
)
def revoke_key(request: ApiRequest, pk: PathPk) -> KeyOut:
    """Stop using the key; its threads stay listed, read-only."""
    principal = request.auth
    api_key = manageable_key(principal, pk)
    key_service.revoke_key(api_key, actor=principal.user, origin=Origin.from_request(request))
    return key_out(api_key)
