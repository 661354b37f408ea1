"""Keyset paging: "newer" and "older" cursors instead of OFFSET and COUNT.

Every page costs the same however long the table is: the query walks an index from the
cursor and fetches one row more than it shows, to know whether another page follows.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Page:
    """One page of rows, newest first, and the cursors to its neighbours (None: no link).

    The rows are model instances; a view may set display attributes on them.
    """

    rows: list[Any]
    newer: int | None
    older: int | None


def _within_firsts(
    queryset: QuerySet[M],
    order: str,
    limit: int,
    partitions: tuple[str, Iterable[object]] | None,
) -> QuerySet[M]:
    """`queryset` narrowed to the first `limit` rows in `order` of each partition.

    `partitions` is (field, values), e.g. ("api_key_id", the user's key ids): each part is
    read through its own index (api_key, -id), so a page costs the same however large the
    table and however few of its rows are the user's, instead of a scan of the table in id
    order that skips everyone else's rows.
    """
    if partitions is None:
        return queryset
    name, values = partitions
    firsts = Q(pk__in=[])
    for value in values:
        part = queryset.filter(**{name: value}).order_by(order).values("pk")[:limit]
        firsts |= Q(pk__in=part)
    return queryset.filter(firsts)


def keyset_page(
    queryset: QuerySet[M],
    *,
    size: int,
    field: str = "pk",
    before: int | None = None,
    after: int | None = None,
    partitions: tuple[str, Iterable[object]] | None = None,
) -> Page:
    """Rows whose `field` is below `before` or above `after`, newest (highest) first.

    A cursor in the request means the page it came from exists, so the opposite link is
    offered without another query.
    """
    if after is not None:
        queryset = _within_firsts(
            queryset.filter(**{f"{field}__gt": after}), field, size + 1, partitions
        )
        rows = list(queryset.order_by(field)[: size + 1])
        has_newer, has_older = len(rows) > size, True
        rows = rows[:size][::-1]
    else:
        if before is not None:
            queryset = queryset.filter(**{f"{field}__lt": before})
        queryset = _within_firsts(queryset, f"-{field}", size + 1, partitions)
        rows = list(queryset.order_by(f"-{field}")[: size + 1])
        has_newer, has_older = before is not None, len(rows) > size
        rows = rows[:size]
    return Page(
        rows,
        newer=getattr(rows[0], field) if has_newer and rows else None,
        older=getattr(rows[-1], field) if has_older and rows else None,
    )
