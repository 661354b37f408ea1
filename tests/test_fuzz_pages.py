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
import json
import os
import re
from datetime import timedelta
from string import printable
from urllib.parse import urlencode

import pytest
from axes.models import AccessAttempt
from django import forms
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import threads_app.forms.audit
import threads_app.forms.keys
import threads_app.forms.selections
import threads_app.forms.teams
import threads_app.forms.threads
import threads_app.forms.webhooks
from tests.test_access_matrix import PARAMS, ROUTES, Cell, live_threads, world
from threads_app.models import AuditEvent, Invitation, TrackedThread
from threads_app.services.teams import invitation_token_hash

__all__ = ["live_threads", "world"]  # fixtures shared with the access matrix

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
ACTORS = ("A_owner", "A_member", "A_viewer", "other_user")
FORM_MODULES = (
    threads_app.forms.audit,
    threads_app.forms.keys,
    threads_app.forms.selections,
    threads_app.forms.teams,
    threads_app.forms.threads,
    threads_app.forms.webhooks,
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


def _drawn_fields(data, own, others, world_ids=()):
    """Up to 6 fields, mostly among the page's own (`own`), some among `others`, with values."""
    names = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(others))
    chosen = data.draw(st.lists(names, max_size=6, unique=True), label="fields")
    return {name: data.draw(_values(name, list(world_ids)), label=name) for name in chosen}


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


def fuzz_settings(examples=EXAMPLES):
    """Hypothesis over a live world built by a function-scoped fixture (drawn per example)."""
    return hypothesis_settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )


def case_id(case):
    return f"{case.url_name}-{case.method}-{case.actor}-{case.target.name}"


def _page_fields(client, url):
    """The names of the fields the page at `url` shows (its own forms), if it has any."""
    response = client.get(url)
    if response.status_code != 200 or response.streaming:
        return []
    names = set(INPUT_NAME.findall(response.content.decode()))
    return sorted(names - {"csrfmiddlewaretoken"})


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES, ids=case_id)
@fuzz_settings()
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
    fuzzed = _drawn_fields(data, _page_fields(client, url) or FIELDS, FIELDS, world_ids)
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


# --- Bodies a form may arrive in (issue 16): any charset, any content type, broken ones ---

BOUNDARY = "FuzzBoundary"


def _multipart(fields, charset="utf-8"):
    parts = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, values in fields.items()
        for value in (values if isinstance(values, list) else [values])
    )
    return (parts + f"--{BOUNDARY}--\r\n").encode(charset, "replace")


def _urlencoded(fields, charset="utf-8"):
    return urlencode(fields, doseq=True, encoding=charset, errors="replace").encode("ascii")


URLENCODED = "application/x-www-form-urlencoded"
# name -> (content type, body of a dict of fields): how browsers, broken clients and attackers
# may send a form. The unreadable ones must be the app's 400 page, the rest the form's answer.
BODY_ENCODINGS = {
    "utf-8": (URLENCODED, _urlencoded),
    "multipart": (f"multipart/form-data; boundary={BOUNDARY}", _multipart),
    "latin-1 declared": (f"{URLENCODED}; charset=latin-1", lambda f: _urlencoded(f, "latin-1")),
    "utf-16 declared": (
        f"{URLENCODED}; charset=utf-16",
        lambda f: urlencode(f, doseq=True).encode("utf-16"),
    ),
    "latin-1 undeclared": (URLENCODED, lambda f: _urlencoded(f, "latin-1")),
    "unknown charset": (f"{URLENCODED}; charset=no-such-charset", _urlencoded),
    "NUL and broken escapes": (URLENCODED, lambda f: _urlencoded(f) + b"&x=%00%ZZ%&%"),
    "too many fields": (URLENCODED, lambda f: _urlencoded(f) + b"&a=1" * 1200),
    "multipart in latin-1": (
        f"multipart/form-data; boundary={BOUNDARY}; charset=latin-1",
        lambda f: _multipart(f, "latin-1"),
    ),
    "multipart without boundary": ("multipart/form-data", _multipart),
    "multipart with an empty boundary": ("multipart/form-data; boundary=", _multipart),
    "multipart with another boundary": ("multipart/form-data; boundary=Other", _multipart),
    "multipart cut off": (
        f"multipart/form-data; boundary={BOUNDARY}",
        lambda f: _multipart(f)[: len(_multipart(f)) // 2],
    ),
    "garbage type": ("garbage/\x7f; ;=", lambda f: b"\xff\xfe\x00" + _urlencoded(f)),
    "json": ("application/json", lambda f: json.dumps(f).encode()),
    "text": ("text/plain; charset=latin-1", lambda f: _urlencoded(f, "latin-1")),
    "no type": ("", _urlencoded),
}
UNREADABLE = {
    "latin-1 declared",
    "utf-16 declared",
    "multipart without boundary",
    "multipart with an empty boundary",
}
# A CSRF cookie and a token that matches it (an unmasked secret is a valid token).
CSRF_SECRET = "f" * 32


def post_body(client, url, fields, encoding, *, token_in, **headers):
    """POST `fields` to `url` encoded as `encoding`, with the CSRF token in the body, in the
    header (as htmx sends it) or nowhere, the check enforced as in production."""
    client.handler.enforce_csrf_checks = True
    client.cookies[settings.CSRF_COOKIE_NAME] = CSRF_SECRET
    if token_in == "body":
        fields = {"csrfmiddlewaretoken": CSRF_SECRET, **fields}
    elif token_in == "header":
        headers["HTTP_X_CSRFTOKEN"] = CSRF_SECRET
    content_type, encode = BODY_ENCODINGS[encoding]
    body = encode(fields)
    response = client.generic("POST", url, body, content_type=content_type, **headers)
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code < 500, (url, fields, encoding, response.status_code)
    if encoding in UNREADABLE and body:  # (the test client sends no type with no body)
        assert response.status_code == 400, (url, encoding, response.status_code)
        assert b"The request could not be read" in response.content
    return response


BODIES = st.sampled_from(sorted(BODY_ENCODINGS))
TOKEN_IN = st.sampled_from(["body", "header", "none"])
POST_CASES = [case for case in CASES if case.method == "POST" and case.actor == "A_owner"]


@pytest.mark.django_db
@pytest.mark.parametrize("case", POST_CASES, ids=case_id)
@fuzz_settings()
@given(data=st.data())
def test_every_form_takes_any_body_without_a_server_error(case, live_threads, client, data):
    world = live_threads
    client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[case.actor]
    url = world.url(case)
    base = case.route.params(world, case.target) if case.route.params else {}
    fields = {**base, **_drawn_fields(data, _page_fields(client, url) or FIELDS, FIELDS)}
    encoding = data.draw(BODIES, label="encoding")
    post_body(client, url, fields, encoding, token_in=data.draw(TOKEN_IN, label="token"))


# --- The account forms: join (an invitation's link), log in, the two-factor code (at the
# log-in and on reauthentication), reauthentication by password, and the password reset.

JOIN_TOKEN = "fuzz-join-token-0123456789"
ACCOUNT_FORMS = ["join", "log in", "code", "code again", "password again", "reset", "reset key"]
# The fields of these forms as allauth and the join page name them, with look-alikes.
ACCOUNT_FIELDS = [
    *("login", "password", "remember", "code", "email", "username", "password1"),
    *("password2", "oldpassword", "next", "action", "csrfmiddlewaretoken"),
]


@pytest.fixture
def accounts(user_client, user, make_team):
    """A user with two-factor on (alice, pw-alice), and an emailed invitation's link."""
    from tests.test_accounts import turn_on_totp

    turn_on_totp(user_client)
    team = make_team("Fuzz", {user: "owner"})
    Invitation.objects.create(
        team=team,
        identifier="newcomer-fuzz@example.test",
        role="viewer",
        token_hash=invitation_token_hash(JOIN_TOKEN),
        expires_at=timezone.now() + timedelta(days=7),
    )
    return user


def _account_form(form, user):
    """(client, URL) for `form`: a fresh browser at the point where that form is shown."""
    client = Client()
    if form in ("code again", "password again"):
        client.force_login(user)
        name = "mfa_reauthenticate" if form == "code again" else "account_reauthenticate"
        return client, reverse(name)
    if form == "code":
        login = {"login": "alice", "password": "pw-alice"}
        assert client.post(reverse("account_login"), login)["Location"] == (
            reverse("mfa_authenticate")
        )
        return client, reverse("mfa_authenticate")
    urls = {
        "join": reverse("threads_app:invitation_link", args=[JOIN_TOKEN]),
        "log in": reverse("account_login"),
        "reset": reverse("account_reset_password"),
        "reset key": reverse("account_reset_password_from_key", args=["2", "bad-key"]),
    }
    return client, urls[form]


@pytest.mark.django_db
@pytest.mark.parametrize("form", ACCOUNT_FORMS)
@fuzz_settings(EXAMPLES * 3)
@given(data=st.data())
def test_the_account_forms_take_any_input_without_a_server_error(form, accounts, data):
    AccessAttempt.objects.all().delete()  # each example starts unlocked: else all are 429s
    client, url = _account_form(form, accounts)
    fields = _drawn_fields(data, _page_fields(client, url) or ACCOUNT_FIELDS, ACCOUNT_FIELDS)
    encoding = data.draw(BODIES, label="encoding")
    htmx = data.draw(st.booleans(), label="htmx")
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    post_body(client, url, fields, encoding, token_in=data.draw(TOKEN_IN, label="token"), **headers)
