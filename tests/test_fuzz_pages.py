"""Fuzzing every page (issue 11 item 10): hypothesis sends generated GET parameters and POST
fields to every URL of the app, as a team's owner, member and viewer and as an outsider, and
no answer may be a server error (the test client re-raises any exception a view lets out).

The URLs, the objects they name and the world they act on are the access matrix's
(tests/test_access_matrix.py), so a new URL is fuzzed as soon as the matrix knows it. Field
names come from the app's forms, plus the parameters views read directly; values mix text,
huge and negative numbers, impossible dates and the world's own ids. Each URL, method and
actor runs `FUZZ_EXAMPLES` examples (default 10: well under a minute); raise it locally to
dig deeper.
"""

import inspect
import os
import re
from string import printable

import pytest
from django import forms
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import threads_app.forms.audit
import threads_app.forms.keys
import threads_app.forms.selections
import threads_app.forms.teams
import threads_app.forms.threads
from tests.test_access_matrix import PARAMS, ROUTES, Cell, live_threads, world
from threads_app.models import AuditEvent, TrackedThread

__all__ = ["live_threads", "world"]  # fixtures shared with the access matrix

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
ACTORS = ("A_owner", "A_member", "A_viewer", "other_user")
FORM_MODULES = (
    threads_app.forms.audit,
    threads_app.forms.keys,
    threads_app.forms.selections,
    threads_app.forms.teams,
    threads_app.forms.threads,
)
# Read by views or formsets rather than declared on a form.
EXTRA_FIELDS = ["before", "after", "thread", "add_row", "snapshot", "next", "page", "view"]
FORMSET_FIELDS = [
    f"{prefix}-{name}"
    for prefix in ("meta", "msg")
    for name in (
        *("TOTAL_FORMS", "INITIAL_FORMS", "MAX_NUM_FORMS", "0-key", "0-value", "0-role"),
        *("0-text", "0-file_ids", "0-tool", "1-key", "1-value", "999-key"),
    )
]


def _form_fields():
    names = set()
    for module in FORM_MODULES:
        for _name, form in inspect.getmembers(module, inspect.isclass):
            if issubclass(form, forms.BaseForm):
                names.update(form.base_fields)
    return sorted(names)


FIELDS = _form_fields() + EXTRA_FIELDS + FORMSET_FIELDS
ODD_VALUES = [
    "",
    " ",
    "0",
    "-1",
    "1.5",
    str(2**63),
    str(-(2**63) - 1),
    "9" * 40,
    "1e400",
    "NaN",
    "9999-12-31",
    "0001-01-01",
    "10000-01-01",
    "2026-02-30",
    "all",
    "owner",
    "on",
    "meta",
    "msg",
    "thread_" + "x" * 300,
    "=1+1",
    "<script>alert(1)</script>",
    "\u202e\u200b",
    *TrackedThread.State.values,
    *AuditEvent.Action.values,
    *AuditEvent.Outcome.values,
]
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)


DATES = st.one_of(
    st.dates().map(str),
    st.sampled_from(["9999-12-31", "0001-01-01", "2026-02-30", "10000-01-01", "1-1-1"]),
)


def _values(name, world_ids):
    """Values for field `name`: dates where a date is expected, as well as anything at all."""
    single = st.one_of(
        *([DATES, DATES] if "date" in name else []),
        st.sampled_from(ODD_VALUES + world_ids),
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        TEXT,
        st.text(alphabet=printable, max_size=8),
    )
    return st.one_of(single, st.lists(single, min_size=2, max_size=3))


def _cases():
    for url_name, route in sorted(ROUTES.items()):
        for method in ("GET", "POST"):
            rule = route.get if method == "GET" else route.post
            if rule is None:
                continue
            # One target in team A's scope when the URL names one: the actors see it differently.
            targets = route.targets_for(method)
            target = next((t for t in targets if t.scope == "A"), targets[0])
            for actor in ACTORS:
                yield Cell(url_name, method, target, False, actor)


CASES = list(_cases())
INPUT_NAME = re.compile(r'<(?:input|select|textarea|button)[^>]*\bname="([^"]+)"')


def _page_fields(client, url):
    """The names of the fields the page at `url` shows (its own forms), if it has any."""
    response = client.get(url)
    if response.status_code != 200 or response.streaming:
        return []
    names = set(INPUT_NAME.findall(response.content.decode()))
    return sorted(names - {"csrfmiddlewaretoken"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: f"{c.url_name}-{c.method}-{c.actor}-{c.target.name}"
)
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_no_server_error(case, live_threads, client, data):
    world = live_threads
    client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[case.actor]
    world_ids = [
        str(obj.pk)
        for objects in (world.threads, world.keys, world.teams, world.jobs)
        for obj in objects.values()
    ]
    url = world.url(case)
    route = case.route
    sends_params = route.params and (case.method == "POST" or route.target_in == PARAMS)
    base = route.params(world, case.target) if sends_params else {}  # as the matrix sends
    # Mostly the fields this page's own form shows, some of any form's.
    own = _page_fields(client, url) or FIELDS
    names = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(FIELDS))
    chosen = data.draw(st.lists(names, max_size=6, unique=True), label="fields")
    fuzzed = {name: data.draw(_values(name, world_ids), label=name) for name in chosen}
    htmx = data.draw(st.booleans(), label="htmx")
    params = {**base, **fuzzed}
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    if case.method == "GET":
        response = client.get(url, params, **headers)
    else:
        response = client.post(url, params, **headers)
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code < 500, (url, params, response.status_code)


def test_the_thread_lists_filters_are_fuzzed():
    """Every parameter of the list's filter form is among the fuzzed fields (its date fields
    are named so that `_values` gives them dates)."""
    names = set(threads_app.forms.threads.ThreadFilterForm.base_fields)

    assert names <= set(FIELDS)
    assert {"team", "tracked_by", "date_from", "date_to", "sort"} <= names
