"""Forms for threads: create (metadata, messages, tool resources), import, the list's filters."""

import re
from typing import Any, Generic, Self, TypeVar, cast
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from threads_app import selectors
from threads_app.forms.base import FilterBarForm, Form, username_filter
from threads_app.models import ApiKey, TrackedThread

METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
CODE_INTERPRETER_FILES_MAX = 20
MESSAGES_MAX = 32
MESSAGE_TEXT_MAX = 32_000
ID_MAX = 100
IMPORT_MAX_IDS = 100
# The name of the "Add a pair" / "Add a message" submit buttons; the value is the formset's
# prefix. With JavaScript the rows are added in the browser; without, the form comes back
# with one more row (`RowFormSet.as_typed`).
ADD_ROW = "add_row"


def as_typed(form: forms.Form) -> dict[str, Any]:
    """A form's values as the user typed them: the initial data of an unbound copy, to show
    the form again without validating it."""
    return {name: form[name].value() for name in form.fields}


def _check_id(value: str, what: str) -> str:
    """Ids are opaque: only checked to be one token of sane length (`thread_…`, `file-…`)."""
    if len(value) > ID_MAX:
        raise ValidationError(f"“{value[:40]}…” is too long for {what} (at most {ID_MAX}).")
    if any(char.isspace() for char in value):
        raise ValidationError(f"“{value}” is not {what}: it contains spaces.")
    return value


def split_ids(text: str | None, what: str) -> list[str]:
    """Ids separated by new lines or commas: trimmed, blanks and repeats dropped, in order."""
    ids = dict.fromkeys(part.strip() for part in re.split(r"[,\n]", text or ""))
    return [_check_id(value, what) for value in ids if value]


class RowForm(Form):
    """One row of a `RowFormSet`: it says whether it is left blank (and means nothing)."""

    def is_blank(self) -> bool:
        raise NotImplementedError


Row = TypeVar("Row", bound=RowForm)


class RowFormSet(forms.BaseFormSet, Generic[Row]):  # type: ignore[type-arg]
    """Rows added and removed in the browser (app.js `data-add-row` with `data-formset`), or
    added by the server without JavaScript (`as_typed`).

    A removed row leaves a gap in the numbering, and a row left blank means nothing: only
    the filled rows count, and they are numbered 1, 2, … in messages ("pair 2").
    """

    shown: int | None = None  # how many rows to show, in order (None: see `rows`)

    def filled_forms(self) -> list[Row]:
        return [form for form in self.forms if not form.is_blank()]

    def rows(self) -> list[Row]:
        """The rows to show: the filled ones, or one blank row to start with."""
        if self.shown is not None:
            return self.forms[: self.shown]
        return self.filled_forms() or self.forms[:1]

    def as_typed(self, *, another: bool = False) -> Self:
        """An unbound copy showing the rows the page sent, as typed (blank ones too), and
        `another` blank row after them: "Add a pair" without JavaScript. Not validated."""
        sent = [
            as_typed(form)
            for form in self.forms
            if any(form.add_prefix(name) in self.data for name in form.fields)
        ]
        again = type(self)(initial=sent, prefix=self.prefix)
        again.shown = (len(sent) + another) or None  # the formset's extra row is the new one
        return again


class MetadataRowForm(RowForm):
    key = forms.CharField(
        label="Key",
        max_length=METADATA_KEY_MAX,
        required=False,
        error_messages={
            "max_length": "Keys are at most %(limit_value)d characters (this one has "
            "%(show_value)d)."
        },
    )
    value = forms.CharField(
        label="Value",
        max_length=METADATA_VALUE_MAX,
        required=False,
        strip=False,
        error_messages={
            "max_length": "Values are at most %(limit_value)d characters (this one has "
            "%(show_value)d)."
        },
    )

    def is_blank(self) -> bool:
        return not (self["key"].value() or self["value"].value())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("value") and not cleaned.get("key") and "key" not in self.errors:
            self.add_error("key", "A value needs a key.")
        return cleaned


class BaseMetadataFormSet(RowFormSet[MetadataRowForm]):
    def clean(self) -> None:
        filled = self.filled_forms()
        if len(filled) > METADATA_MAX_PAIRS:
            raise ValidationError(
                f"At most {METADATA_MAX_PAIRS} metadata pairs are allowed; there are "
                f"{len(filled)}. Remove {len(filled) - METADATA_MAX_PAIRS}."
            )
        seen: dict[str, int] = {}
        for number, form in enumerate(filled, 1):
            key = form.cleaned_data.get("key")
            if key in seen:
                form.add_error("key", f"The key “{key}” is already used in pair {seen[key]}.")
            elif key:
                seen[key] = number

    def metadata(self) -> dict[str, str]:
        return {
            form.cleaned_data["key"]: form.cleaned_data["value"] for form in self.filled_forms()
        }


MetadataFormSet = cast(
    type[BaseMetadataFormSet],
    forms.formset_factory(MetadataRowForm, formset=BaseMetadataFormSet, extra=1, max_num=1000),
)


class MessageRowForm(RowForm):
    role = forms.ChoiceField(
        label="Role", choices=[("user", "User"), ("assistant", "Assistant")], initial="user"
    )
    text = forms.CharField(
        label="Text",
        required=False,
        max_length=MESSAGE_TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    file_ids = forms.CharField(
        label="Attachment file ids",
        required=False,
        help_text="Optional, comma-separated.",
    )
    tool = forms.ChoiceField(
        label="Attach for",
        choices=[("code_interpreter", "Code interpreter"), ("file_search", "File search")],
        initial="code_interpreter",
    )

    def is_blank(self) -> bool:
        return not (self["text"].value() or self["file_ids"].value())

    def clean_file_ids(self) -> list[str]:
        return split_ids(self.cleaned_data["file_ids"], "a file id")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not self.is_blank() and not cleaned.get("text") and "text" not in self.errors:
            self.add_error("text", "A message needs text (or remove the row).")
        return cleaned

    def message(self) -> dict[str, Any]:
        """The message as the API takes it."""
        data = self.cleaned_data
        message: dict[str, Any] = {"role": data["role"], "content": data["text"]}
        if data["file_ids"]:
            message["attachments"] = [
                {"file_id": file_id, "tools": [{"type": data["tool"]}]}
                for file_id in data["file_ids"]
            ]
        return message


class BaseMessageFormSet(RowFormSet[MessageRowForm]):
    def clean(self) -> None:
        if len(self.filled_forms()) > MESSAGES_MAX:
            raise ValidationError(f"At most {MESSAGES_MAX} initial messages can be sent.")

    def messages(self) -> list[dict[str, Any]]:
        return [form.message() for form in self.filled_forms()]


MessageFormSet = cast(
    type[BaseMessageFormSet],
    forms.formset_factory(MessageRowForm, formset=BaseMessageFormSet, extra=1, max_num=1000),
)


class ToolResourcesForm(Form):
    code_interpreter_file_ids = forms.CharField(
        label="Code interpreter file ids",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=f"At most {CODE_INTERPRETER_FILES_MAX}, one per line or comma-separated.",
    )
    vector_store_id = forms.CharField(
        label="File search vector store id", required=False, max_length=ID_MAX
    )

    def clean_code_interpreter_file_ids(self) -> list[str]:
        ids = split_ids(self.cleaned_data["code_interpreter_file_ids"], "a file id")
        if len(ids) > CODE_INTERPRETER_FILES_MAX:
            raise ValidationError(
                f"At most {CODE_INTERPRETER_FILES_MAX} file ids are allowed; there are {len(ids)}."
            )
        return ids

    def clean_vector_store_id(self) -> str:
        return _check_id(self.cleaned_data["vector_store_id"].strip(), "a vector store id")

    def tool_resources(self, *, keep_empty: bool = False) -> dict[str, dict[str, list[str]]]:
        """tool_resources as the API takes it; `keep_empty` sends empty lists (to clear them)."""
        data = self.cleaned_data
        vector_stores = [data["vector_store_id"]] if data["vector_store_id"] else []
        sections = {
            "code_interpreter": {"file_ids": data["code_interpreter_file_ids"]},
            "file_search": {"vector_store_ids": vector_stores},
        }
        return {name: ids for name, ids in sections.items() if keep_empty or any(ids.values())}

    @staticmethod
    def initial_from(tool_resources: dict[str, Any]) -> dict[str, str]:
        """Form initial values from a thread's tool_resources."""
        code_interpreter = tool_resources.get("code_interpreter") or {}
        file_search = tool_resources.get("file_search") or {}
        return {
            "code_interpreter_file_ids": "\n".join(code_interpreter.get("file_ids") or []),
            "vector_store_id": next(iter(file_search.get("vector_store_ids") or []), ""),
        }


def _offer_usable_keys(form: forms.Form, user: User) -> bool:
    """The `api_key` field offers the keys the user may use; their only one is preselected,
    with no empty choice beside it. False when there is none to offer (the page says what
    to do instead of showing a form that cannot be sent)."""
    keys = selectors.usable_keys(user)
    field = cast("forms.ModelChoiceField[ApiKey]", form.fields["api_key"])
    field.queryset = keys
    first_two = list(keys[:2])
    if len(first_two) == 1:
        field.empty_label = None
        if not form.is_bound and not form.initial.get("api_key"):
            form.initial["api_key"] = first_two[0].pk
    return bool(first_two)


LABEL_MAX = 200


def label_field(help_text: str = "Only shown in this dashboard.") -> forms.CharField:
    """A thread's label: the dashboard's own name for it, never sent upstream."""
    return forms.CharField(label="Label", max_length=LABEL_MAX, required=False, help_text=help_text)


class ThreadEditForm(ToolResourcesForm):
    """The edit page: the label (kept here) and the tool resources (sent upstream)."""

    label = label_field()

    field_order = ["label"]


class ThreadCreateForm(ToolResourcesForm):
    label = label_field()
    api_key = forms.ModelChoiceField(label="Key", queryset=ApiKey.objects.none())

    field_order = ["label", "api_key"]

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.has_keys = _offer_usable_keys(self, user)


class ThreadImportForm(Form):
    api_key = forms.ModelChoiceField(label="Key", queryset=ApiKey.objects.none())
    label = label_field(
        "Optional: given to each thread imported here; only shown in this dashboard."
    )
    thread_ids = forms.CharField(
        label="Thread ids",
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=f"One per line, at most {IMPORT_MAX_IDS}.",
        error_messages={"required": "Paste at least one thread id."},
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.has_keys = _offer_usable_keys(self, user)

    def clean_thread_ids(self) -> list[str]:
        ids: dict[str, None] = {}
        errors: list[str] = []
        for number, line in enumerate(self.cleaned_data["thread_ids"].splitlines(), 1):
            if line.strip():
                try:
                    ids[_check_id(line.strip(), "a thread id")] = None
                except ValidationError as exc:
                    errors.append(f"Line {number}: {exc.messages[0]}")
        if errors:
            raise ValidationError(errors)
        if len(ids) > IMPORT_MAX_IDS:
            raise ValidationError(
                f"At most {IMPORT_MAX_IDS} ids per import; there are {len(ids)}. "
                "Split them into several imports."
            )
        return list(ids)


SORT_CHOICES = [
    (selectors.NEWEST, "Newest first"),
    (selectors.OLDEST, "Oldest first"),
    (selectors.LABEL_AZ, "Label A–Z"),  # noqa: RUF001
]


class ThreadFilterForm(FilterBarForm):
    """The list's search, filters, sort and page cursor (GET): its cleaned values are
    `selectors.ThreadFilters` (`filters`) and the cursor; `selectors.thread_list_page` is the
    query they imply.

    A value picked from a list (key, team, state, sort) or a cursor that is not valid is
    ignored. A typed one (search, tracked by, dates) that is not valid is shown with its error,
    and the filters match nothing (`filters` is None) rather than more than was asked.
    """

    FILTERS = ("q", "key", "team", "tracked_by", "state", "date_from", "date_to", "sort")
    TYPED = ("q", "tracked_by", "date_from", "date_to")
    SEARCH, SHOWN = "q", FILTERS

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Thread id, label or metadata value",
                "autocomplete": "off",
            }
        ),
    )
    key = forms.TypedChoiceField(label="Key", required=False, coerce=int, empty_value=None)
    team = forms.TypedChoiceField(label="Team", required=False, coerce=int, empty_value=None)
    tracked_by = username_filter("Tracked by")
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[
            ("", "All but deleted"),
            *TrackedThread.State.choices,
            (selectors.ALL_STATES, "All, deleted included"),
        ],
    )
    sort = forms.ChoiceField(label="Sort", required=False, choices=SORT_CHOICES)
    before = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    after = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)

    def __init__(self, keys: list[ApiKey], *args: Any, **kwargs: Any) -> None:
        """`keys`: the keys the user may see, already fetched with their teams (no query)."""
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["key"]).choices = [
            ("", "All keys"),
            *((key.pk, f"{key} (revoked)" if key.is_revoked else str(key)) for key in keys),
        ]
        teams = {key.team.pk: key.team.name for key in keys if key.team is not None}
        cast(forms.TypedChoiceField, self.fields["team"]).choices = [
            ("", "All teams"),
            *sorted(teams.items(), key=lambda team: team[1]),
        ]
        self.fields["date_from"].label = "Created from (UTC)"
        self.fields["date_to"].label = "Created to (UTC)"
        self.is_valid()  # fills cleaned_data with the valid values

    @property
    def typed_errors(self) -> list[tuple[str, str]]:
        """(field label, error) of each typed value that cannot be used."""
        return [
            (str(self[name].label), str(error))
            for name in self.TYPED
            for error in self.errors.get(name, [])
        ]

    def filters(self) -> selectors.ThreadFilters | None:
        """The search, filters and sort, or None when a typed value cannot be used."""
        if self.typed_errors:
            return None
        data = self.cleaned_data
        return selectors.ThreadFilters(
            q=data.get("q") or "",
            key_id=data.get("key"),
            team_id=data.get("team"),
            tracked_by=(data.get("tracked_by") or "").strip(),
            state=data.get("state") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            sort=data.get("sort") or selectors.NEWEST,
        )

    @property
    def cursor(self) -> dict[str, int | None]:
        """The page cursor: `before` or `after` a row's pk (both None: the first page)."""
        return {"before": self.cleaned_data.get("before"), "after": self.cleaned_data.get("after")}

    @property
    def is_filtered(self) -> bool:
        return any(self.cleaned_data.get(name) for name in self.FILTERS if name != "sort")

    @property
    def is_filtered_beyond_search(self) -> bool:
        beyond = (name for name in self.FILTERS if name not in ("q", "sort"))
        return any(self.cleaned_data.get(name) for name in beyond)

    @property
    def pager_words(self) -> dict[str, str]:
        """The pager's link texts: by age when the newest come first, else by place."""
        if (self.cleaned_data.get("sort") or selectors.NEWEST) == selectors.NEWEST:
            return {"first": "Newest", "previous": "Newer", "next": "Older"}
        return {"first": "First page", "previous": "Previous", "next": "Next"}

    @property
    def sort_label(self) -> str:
        return dict(SORT_CHOICES)[self.cleaned_data.get("sort") or selectors.NEWEST]

    def query_string(self, **cursor: int) -> str:
        """The search, filters and sort, plus the given cursor, as a query string."""
        data = {name: self.cleaned_data.get(name) for name in self.FILTERS}
        return urlencode({name: value for name, value in {**data, **cursor}.items() if value})
