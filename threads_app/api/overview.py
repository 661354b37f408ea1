"""The overview page's counts: threads per key and state, keys needing attention, and the
threads created and deleted per day over the last 30 days."""

from datetime import date

from ninja import Router, Schema

from threads_app import selectors
from threads_app.api.base import ApiRequest, errors, scoped
from threads_app.api.schemas import KeyRef, key_ref

router = Router(tags=["overview"])


class KeyCounts(Schema):
    key: KeyRef
    team: str | None
    counts: dict[str, int]
    tracked: int
    attention: str


class Day(Schema):
    day: date
    created: int
    deleted: int


class OverviewOut(Schema):
    keys: list[KeyCounts]
    totals: dict[str, int]
    tracked: int
    days: list[Day]


@router.get("/overview", response={200: OverviewOut, **errors()}, auth=scoped("threads:read"))
def get_overview(request: ApiRequest) -> OverviewOut:
    """What the token may see, summed up, as on the overview page."""
    principal = request.auth
    summary = selectors.overview(principal.user, team_id=principal.team_id)
    return OverviewOut(
        keys=[
            KeyCounts(
                key=KeyRef(**key_ref(k.key)),
                team=k.key.team.name if k.key.team else None,
                counts=k.counts,
                tracked=k.tracked,
                attention=k.attention,
            )
            for k in summary.keys
        ],
        totals=summary.totals,
        tracked=summary.tracked,
        days=[Day(day=d.day, created=d.created, deleted=d.deleted) for d in summary.days],
    )
