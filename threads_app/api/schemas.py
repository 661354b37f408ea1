"""The API's shared types: ids, bounded texts, the thread and key shapes it answers with.

The bounds are the pages' (forms/threads.py, forms/keys.py): the same limits, one place each.
"""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from ninja import Path, Schema
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from threads_app.forms.threads import (
    CODE_INTERPRETER_FILES_MAX,
    ID_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_PAIRS,
    METADATA_VALUE_MAX,
)
from threads_app.models import ApiKey, TrackedThread

PK_MAX = 2**63 - 1  # what a primary key column holds
# A row's id in a path: outside this range nothing can exist (and nothing is looked up).
PathPk = Annotated[int, Path(ge=1, le=PK_MAX)]


def _integral(value: object) -> object:
    """A JSON number with no fraction (`3.0`) is an integer, as JSON Schema counts them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Pk = Annotated[int, Field(ge=1, le=PK_MAX), BeforeValidator(_integral)]
# Opaque upstream ids (`thread_…`, `file-…`): one token of sane length, as the forms check.
# The characters `str.isspace` names (what the forms refuse in an id), and NUL, spelled out:
# JSON Schema's `\s` (ECMAScript's) is not Python's.
NOT_IN_ID = (
    "\\x00\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029"
    "\\u202f\\u205f\\u3000"
)
UpstreamId = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_MAX, pattern=f"^[^{NOT_IN_ID}]+$")
]


def _written_day(value: object) -> object:
    """A day is written YYYY-MM-DD: no number of seconds (pydantic would take one)."""
    if not isinstance(value, str | date):
        raise ValueError("A day is written YYYY-MM-DD.")
    return value


# A UTC day, from a query or a JSON body (strict bodies take no text for a date otherwise).
Day = Annotated[date, Strict(False), BeforeValidator(_written_day)]
NO_NUL = r"^[^\x00]*$"  # a database text cannot hold NUL (the forms refuse it too)


def text(max_length: int, *, min_length: int = 0) -> Any:
    """A string of at most `max_length` characters, without NUL."""
    return Annotated[
        str, StringConstraints(min_length=min_length, max_length=max_length, pattern=NO_NUL)
    ]


def _no_nul_in_keys(metadata: dict[str, str]) -> dict[str, str]:
    if any("\x00" in key for key in metadata):
        raise ValueError("A metadata key cannot hold a NUL character.")
    return metadata


# A key's pattern goes into `propertyNames` (pydantic would make it `patternProperties`).
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=METADATA_KEY_MAX)],
        Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX, pattern=NO_NUL)],
    ],
    Field(
        max_length=METADATA_MAX_PAIRS,
        json_schema_extra={
            "propertyNames": {"minLength": 1, "maxLength": METADATA_KEY_MAX, "pattern": NO_NUL}
        },
    ),
    AfterValidator(_no_nul_in_keys),
]


class Body(BaseModel):
    """A request body: exactly as the document says (no coercion from other JSON types, no
    unknown fields), so what the document refuses is refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class CodeInterpreter(Body):
    file_ids: list[UpstreamId] = Field(default_factory=list, max_length=CODE_INTERPRETER_FILES_MAX)


class FileSearch(Body):
    vector_store_ids: list[UpstreamId] = Field(default_factory=list, max_length=1)


class ToolResources(Body):
    code_interpreter: CodeInterpreter | None = None
    file_search: FileSearch | None = None

    def as_sent(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class KeyRef(Schema):
    id: int
    label: str
    hint: str


class ThreadOut(Schema):
    """A tracked thread as the list shows it."""

    id: int
    thread_id: str
    label: str
    state: Literal["active", "gone", "deleting", "deleted"]
    key: KeyRef
    team: str | None
    tracked_by: str | None
    created_at: datetime  # upstream, or when it was tracked if that is unknown
    tracked_at: datetime


def key_ref(api_key: ApiKey) -> dict[str, Any]:
    return {"id": api_key.pk, "label": api_key.label, "hint": api_key.hint}


def thread_out(thread: TrackedThread) -> dict[str, Any]:
    """A `ThreadOut` as data: the operation's answer is validated against it once, by
    django-ninja (not built here and again there: the list answers 25 of them)."""
    key = thread.api_key
    return {
        "id": thread.pk,
        "thread_id": thread.thread_id,
        "label": thread.label,
        "state": thread.state,
        "key": key_ref(key),
        "team": key.team.name if key.team_id and key.team else None,
        "tracked_by": thread.tracked_by.get_username() if thread.tracked_by else None,
        "created_at": thread.upstream_created_at or thread.tracked_at,
        "tracked_at": thread.tracked_at,
    }
