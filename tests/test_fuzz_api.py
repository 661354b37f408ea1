"""Fuzzing the API's query parameters and bodies with hypothesis, beyond what the document
allows (schemathesis, tests/test_api_conformance.py, generates from the document): any
parameter name the API reads plus junk, any JSON (or not JSON at all) as a body, against every
operation, as a team member. No answer may be a server error (the test client re-raises what
a view lets out), every refusal is a problem document, and nothing is deleted by a request
that names no thread.
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.api_helpers import ApiClient, make_token
from tests.test_api_access_matrix import RULES
from threads_app.api.urls import query_parameters
from threads_app.models import Membership, TrackedThread
from threads_app.selectors import ThreadFilters
from threads_app.services import jobs

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
NAMES = sorted(
    {
        *("q", "key", "team", "tracked_by", "state", "date_from", "date_to", "sort"),
        *("before", "after", "limit", "snapshot", "action", "actor", "outcome", "thread"),
        *("typed_count", "threads"),
        *("token", "", "Q", "limit[]"),
    }
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["2026-02-30", "10000-01-01", "0", "-1", "9" * 30, "1e3", "\x00", "all"]),
    st.sampled_from(["delete", "export", "2026-03-01", "active", "label"]),
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from([*NAMES, "api_key", "metadata", "messages"]), children)
    ),
    max_leaves=12,
)
QUERY_VALUE = st.one_of(
    st.text(max_size=40), st.sampled_from(["2026-02-30", "-5", "9" * 25, "all", "label"])
)


@pytest.fixture
def member_api(make_user, make_team, make_key, make_thread, settings):
    settings.API_RATE_LIMIT = 100_000
    member, owner = make_user("fuzz-member"), make_user("fuzz-owner")
    team = make_team(members={owner: Membership.Role.OWNER, member: Membership.Role.MEMBER})
    thread = make_thread(make_key(team=team, created_by=owner), tracked_by=member)
    selection = jobs.create_selection(user=member, filters=ThreadFilters())
    return ApiClient(make_token(member)), thread, selection


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), sorted(RULES))
def test_no_query_or_body_makes_a_server_error(method, path, member_api):
    api, thread, selection = member_api
    # Mostly the operation's own parameters (else every answer is "unknown parameter").
    known = sorted(query_parameters()[method.upper(), path])
    names = st.sampled_from(known) | st.sampled_from(NAMES) if known else st.sampled_from(NAMES)

    @given(
        query=st.dictionaries(names, QUERY_VALUE, max_size=4),
        body=st.one_of(JSON.map(json.dumps), st.text(max_size=50), st.just("")),
        pk=st.sampled_from([thread.pk, selection.pk, 0, 2**63, 2**70]),
    )
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def fuzz(query, body, pk):
        response = api.send(method, path.replace("{pk}", str(pk)), query, body)
        assert response.status_code < 500 or response.status_code == 502, response.content
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/problem+json"
            assert json.loads(response.content)["status"] == response.status_code

    fuzz()
    if method == "delete" or path.endswith("/jobs/delete"):
        return  # these may delete the thread: that is what they are for
    assert TrackedThread.objects.get(pk=thread.pk).state == TrackedThread.State.ACTIVE


# Each filter of the list, as JSON a script might send for it: good values, bad ones, and
# values of the wrong type (a selection's body is typed; the list's query is text).
FILTER_VALUES = {
    "q": st.text(max_size=8) | st.just("x" * 201),
    "key": st.integers(min_value=-1, max_value=10**6) | st.text(max_size=3),
    "team": st.integers(min_value=-1, max_value=10**6),
    "tracked_by": st.text(max_size=8) | st.sampled_from(["fuzz-member", "FUZZ-OWNER"]),
    "state": st.sampled_from(["active", "gone", "deleting", "deleted", "all", "lost", ""]),
    "date_from": st.dates().map(str) | st.sampled_from(["2026-02-30", "tomorrow"]),
    "date_to": st.dates().map(str) | st.integers(),
    "sort": st.sampled_from(["newest", "oldest", "label", "random"]),
}


@pytest.mark.django_db
def test_a_selection_reads_its_filters_as_the_list_reads_them(member_api):
    """The same filters are accepted or refused alike by `POST /selections` (a JSON body)
    and `GET /threads` (a query), with the same status; what is accepted selects the threads
    the list shows."""
    api, _thread, _selection = member_api

    @given(filters=st.fixed_dictionaries({}, optional=FILTER_VALUES))
    @hypothesis_settings(
        max_examples=EXAMPLES * 5,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    def agree(filters):
        typed = all(
            isinstance(value, int) == (name in ("key", "team")) for name, value in filters.items()
        )
        made = api.post("selections", filters)
        listed = api.get("threads", {name: str(value) for name, value in filters.items()})
        assert made.status_code in (201, 404, 422), made.content
        if not typed:
            assert made.status_code == 422
            return
        assert made.status_code == {200: 201}.get(listed.status_code, listed.status_code)
        if made.status_code == 201:
            rows = [row["id"] for row in made.json()["preview"]["first_rows"]]
            assert rows == [row["id"] for row in listed.json()["threads"]]

    agree()
