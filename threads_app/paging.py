"""Keyset paging: "newer" and "older" cursors instead of OFFSET and COUNT.

Every page costs the same however long the table is: the query walks an index from the
cursor and fetches one row more than it shows, to know whether another page follows.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet, Subquery

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Page:
    """One page of rows in the list's order, and the cursors to its neighbours (None: no
    link). A cursor is the value of the order's last (unique) key in the row at the edge.

    The rows are model instances; a view may set display attributes on them.
    """

    rows: list[Any]
    newer: int | None
    older: int | None


def _key(term: str) -> tuple[str, bool]:
    """("name", descending) of an order term such as "-created"."""
    return term.lstrip("-"), term.startswith("-")


def _reversed(order: Sequence[str]) -> list[str]:
    return [name if descending else f"-{name}" for name, descending in map(_key, order)]


def _past(
    queryset: QuerySet[M], order: Sequence[str], cursor: int, cursor_rows: QuerySet[M] | None
) -> QuerySet[M]:
    """The rows that come after the cursor's row in `order` (one or two keys, one direction).

    With two keys, the first key's value is read from the cursor's row in `cursor_rows`, in
    the same query; as `k >= v AND (k > v OR last > cursor)`, so the index on (k, last) is
    walked from there. A cursor naming no row there gives no rows.
    """
    *leading, last = order
    last_name, descending = _key(last)
    op = "lt" if descending else "gt"
    if not leading:
        return queryset.filter(**{f"{last_name}__{op}": cursor})
    (first,) = leading
    name, first_descending = _key(first)
    assert first_descending == descending and cursor_rows is not None, "one direction"
    value = Subquery(cursor_rows.filter(**{last_name: cursor}).values(name)[:1])
    return queryset.filter(
        Q(**{f"{name}__{op}e": value})
        & (Q(**{f"{name}__{op}": value}) | Q(**{f"{last_name}__{op}": cursor}))
    )


def _within_firsts(
    queryset: QuerySet[M],
    order: Sequence[str],
    limit: int,
    partitions: tuple[str, Iterable[object]] | None,
) -> QuerySet[M]:
    """`queryset` narrowed to the first `limit` rows in `order` of each partition.

    `partitions` is (field, values), e.g. ("api_key_id", the user's key ids): each part is
    read through its own index (api_key, …), so a page costs the same however large the
    table and however few of its rows are the user's, instead of a scan of the table in the
    list's order that skips everyone else's rows.
    """
    if partitions is None:
        return queryset
    name, values = partitions
    firsts = Q(pk__in=[])
    for value in values:
        part = queryset.filter(**{name: value}).order_by(*order).values("pk")[:limit]
        firsts |= Q(pk__in=part)
    return queryset.filter(firsts)


def keyset_page(
    queryset: QuerySet[M],
    *,
    size: int,
    order: Sequence[str] = ("-pk",),
    before: int | None = None,
    after: int | None = None,
    partitions: tuple[str, Iterable[object]] | None = None,
    cursor_rows: QuerySet[M] | None = None,
) -> Page:
    """The page of rows in `order` (its last key unique: the cursor) that follows the row
    `before` names, or precedes the row `after` names (neither: the first page).

    With an order of two keys, `cursor_rows` is where the cursor's row is looked up (the
    rows the user may see, annotated like `queryset`). A cursor in the request means the
    page it came from exists, so the opposite link is offered without another query.
    """
    cursor_name = _key(order[-1])[0]
    if after is not None:
        backwards = _reversed(order)
        queryset = _within_firsts(
            _past(queryset, backwards, after, cursor_rows), backwards, size + 1, partitions
        )
        rows = list(queryset.order_by(*backwards)[: size + 1])
        has_newer, has_older = len(rows) > size, True
        rows = rows[:size][::-1]
    else:
        if before is not None:
            queryset = _past(queryset, order, before, cursor_rows)
        queryset = _within_firsts(queryset, order, size + 1, partitions)
        rows = list(queryset.order_by(*order)[: size + 1])
        has_newer, has_older = before is not None, len(rows) > size
        rows = rows[:size]
    return Page(
        rows,
        newer=getattr(rows[0], cursor_name) if has_newer and rows else None,
        older=getattr(rows[-1], cursor_name) if has_older and rows else None,
    )
