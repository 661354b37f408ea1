"""Keys pages: list, add (checked against the emulator), rotate, revoke, and who may do what."""

import json

import pytest
import urllib3.util.retry
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from threads_app import selectors
from threads_app.crypto import decrypt_secret, secret_hint
from threads_app.models import ApiKey, AuditEvent, Membership, TrackedThread
from threads_app.services import keys as key_service
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.upstream import NotFoundError

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
UNKNOWN_KEY = "sk-test-unknown-to-the-emulator-9999wxyz"
KEY_CHECK = ("GET", "/v1/threads/thread_key_check")
LIST_URL = reverse("threads_app:key_list")
CREATE_URL = reverse("threads_app:key_create")
Role = Membership.Role
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
ALL_SECRETS = (TEST_KEY, OTHER_TEST_KEY, UNKNOWN_KEY)


def rotate_url(key):
    return reverse("threads_app:key_rotate", args=[key.pk])


def revoke_url(key):
    return reverse("threads_app:key_revoke", args=[key.pk])


def body(response):
    """The response body, checked for every secret the suite uses."""
    text = response.content.decode()
    for secret in ALL_SECRETS:
        assert secret not in text
    return text


def is_partial(text):
    return "<html" not in text and "<nav" not in text


def toasts(response):
    return [toast["message"] for toast in json.loads(response["HX-Trigger"])["messages"]]


def audit_texts():
    """Every field of every audit event, as text."""
    return [
        json.dumps(value, default=str) if not isinstance(value, str) else value
        for event in AuditEvent.objects.all()
        for value in (getattr(event, field.attname) for field in AuditEvent._meta.concrete_fields)
    ]


@pytest.fixture(autouse=True)
def no_secret_in_audit():
    yield
    for text in audit_texts():
        for secret in ALL_SECRETS:
            assert secret not in text


@pytest.fixture
def no_retry_sleep(monkeypatch):
    """GETs are retried on 5xx and dropped connections: skip urllib3's backoff sleeps."""
    monkeypatch.setattr(urllib3.util.retry.Retry, "sleep", lambda self, response=None: None)


@pytest.fixture
def upstream_down(emulator, no_retry_sleep):
    """Every key check fails, in the way the test is parametrized with."""

    def apply(kind):
        emulator.add_fault("GET", "/v1/threads/*", kind, times=None)

    return apply


def key_checks(emulator):
    return [entry for entry in emulator.request_log if entry == KEY_CHECK]


# --- list -------------------------------------------------------------------------------------


def test_empty_key_list_says_what_to_do(user_client):
    response = user_client.get(LIST_URL)
    text = body(response)
    assert response.status_code == 200
    assert "Add your first API key" in text
    assert f'href="{CREATE_URL}"' in text
    assert f'<a href="{LIST_URL}" aria-current="page">Keys</a>' in text


def test_key_list_groups_labels_counts_and_statuses(
    user_client, user, api_key, make_key, make_team, make_thread, make_user
):
    make_thread(api_key, label="one")
    make_thread(api_key, label="two")
    deleted = make_thread(api_key, label="gone for good")
    TrackedThread.objects.filter(pk=deleted.pk).update(state=TrackedThread.State.DELETED)
    team = make_team("Research", {user: Role.VIEWER, make_user(): Role.OWNER})
    team_key = make_key(team=team, secret=OTHER_TEST_KEY, label="shared key")
    failing = make_key(owner=user, secret=UNKNOWN_KEY, label="bad key")
    ApiKey.objects.filter(pk=failing.pk).update(
        failing=True, last_error="Threads API 401: Incorrect API key (request req_123)"
    )

    text = body(user_client.get(LIST_URL))

    assert text.index(">Personal</h2>") < text.index(">Research</h2>")
    personal_row = text[text.index(f'id="key-{api_key.pk}"') :]
    personal_row = personal_row[: personal_row.index("</tr>")]
    assert "alice&#x27;s key" in personal_row
    assert secret_hint(TEST_KEY) in personal_row
    assert "<td>2</td>" in personal_row  # the deleted thread no longer counts
    assert "badge active" in personal_row
    assert rotate_url(api_key) in personal_row
    assert revoke_url(api_key) in personal_row
    assert 'hx-target="#dialog"' in personal_row  # revoking is confirmed in the dialog
    team_row = text[text.index(f'id="key-{team_key.pk}"') :]
    team_row = team_row[: team_row.index("</tr>")]
    assert "shared key" in team_row
    assert rotate_url(team_key) not in team_row  # a viewer sees, but does not manage
    assert revoke_url(team_key) not in team_row
    assert "badge failing" in text
    assert "Incorrect API key (request req_123)" in text


def test_revoked_key_is_listed_without_actions(user_client, api_key):
    api_key.revoked_at = api_key.created_at
    api_key.save()
    text = body(user_client.get(LIST_URL))
    assert "badge revoked" in text
    assert rotate_url(api_key) not in text
    assert revoke_url(api_key) not in text


def test_key_list_shows_no_one_elses_keys(user_client, other_user, make_key, make_team):
    make_key(owner=other_user, label="bob's own key")
    make_key(team=make_team("Bob's team", {other_user: Role.OWNER}), label="bob's team key")
    text = body(user_client.get(LIST_URL))
    for name in ("bob&#x27;s own key", "bob&#x27;s team key", "Bob&#x27;s team"):
        assert name not in text
    assert "Add your first API key" in text


def test_key_list_htmx_partial(user_client, api_key):
    response = user_client.get(LIST_URL, **HX)
    text = body(response)
    assert response.status_code == 200
    assert is_partial(text)
    assert 'id="keys"' in text
    assert "alice&#x27;s key" in text


def test_key_list_query_count_does_not_grow_with_keys(
    user_client, user, make_key, make_team, make_thread
):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert user_client.get(LIST_URL).status_code == 200
        return len(captured)

    team = make_team(members={user: Role.OWNER})
    make_thread(make_key(owner=user, secret="sk-test-first-key-00000001"))
    few = queries()
    for n in range(6):
        key = make_key(
            team=team if n % 2 else None,
            owner=None if n % 2 else user,
            secret=f"sk-test-more-keys-{n:08d}",
        )
        make_thread(key)
    assert queries() == few


def test_anonymous_users_are_sent_to_log_in(client, api_key):
    for url in (LIST_URL, CREATE_URL, rotate_url(api_key), revoke_url(api_key)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


# --- add --------------------------------------------------------------------------------------


def test_add_key_page_full_and_partial(user_client):
    full = body(user_client.get(CREATE_URL))
    assert "<html" in full
    assert 'type="password"' in full
    assert "Save without verifying" not in full  # only offered when the upstream is down
    partial = body(user_client.get(CREATE_URL, **HX))
    assert is_partial(partial)
    assert f'hx-post="{CREATE_URL}"' in partial


def test_add_personal_key_checks_it_then_stores_it_encrypted(user_client, user, emulator):
    response = user_client.post(CREATE_URL, {"label": "Production", "secret": TEST_KEY})
    body(response)
    assert response.status_code == 302
    assert response["Location"] == LIST_URL

    api_key = ApiKey.objects.get()
    assert (api_key.owner, api_key.team, api_key.label) == (user, None, "Production")
    assert api_key.created_by == user
    assert api_key.hint == secret_hint(TEST_KEY)
    assert TEST_KEY not in api_key.secret_encrypted
    assert decrypt_secret(api_key.secret_encrypted) == TEST_KEY
    assert api_key.last_checked_at is not None
    assert key_checks(emulator) == [KEY_CHECK]

    event = AuditEvent.objects.get()
    assert (event.action, event.outcome) == (Action.KEY_ADDED, Outcome.SUCCESS)
    assert (event.api_key_id, event.owner_id, event.team_id) == (api_key.pk, user.pk, None)
    assert (event.actor_id, event.key_hint) == (user.pk, api_key.hint)
    assert event.details == {"verified": True}

    listing = body(user_client.get(LIST_URL))
    assert "Added the key “Production”." in listing
    assert api_key.hint in listing


def test_add_key_over_htmx_redirects_the_client(user_client):
    response = user_client.post(CREATE_URL, {"label": "Prod", "secret": TEST_KEY}, **HX)
    body(response)
    assert response.status_code == 200
    assert response["HX-Redirect"] == LIST_URL
    assert ApiKey.objects.count() == 1


def test_add_team_key_as_team_owner(user_client, user, make_team):
    team = make_team("Platform", {user: Role.OWNER})
    assert f'<option value="{team.pk}">Platform</option>' in body(user_client.get(CREATE_URL))
    response = user_client.post(
        CREATE_URL, {"label": "Team key", "secret": TEST_KEY, "team": team.pk}
    )
    assert response.status_code == 302
    api_key = ApiKey.objects.get()
    assert (api_key.owner, api_key.team, api_key.created_by) == (None, team, user)
    event = AuditEvent.objects.get()
    assert (event.action, event.team_id, event.team_name) == (Action.KEY_ADDED, team.pk, "Platform")


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_only_team_owners_add_team_keys(user_client, user, make_team, role, emulator):
    team = make_team("Platform", {user: role})
    assert "Platform" not in body(user_client.get(CREATE_URL))
    response = user_client.post(
        CREATE_URL, {"label": "Team key", "secret": TEST_KEY, "team": team.pk}
    )
    text = body(response)
    assert response.status_code == 200
    assert "Select a valid choice" in text
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.exists()
    assert key_checks(emulator) == []


def test_a_key_the_upstream_rejects_is_refused(user_client, emulator):
    response = user_client.post(CREATE_URL, {"label": "Typo", "secret": UNKNOWN_KEY})
    text = body(response)
    assert response.status_code == 200
    assert "The Threads API rejected this key (401) — request req_" in text
    assert 'value="Typo"' in text  # what the user typed is kept, except the secret
    assert "Save without verifying" not in text
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.exists()
    assert key_checks(emulator) == [KEY_CHECK]


def test_a_rejected_key_over_htmx_returns_the_form_with_the_error(user_client):
    response = user_client.post(CREATE_URL, {"label": "Typo", "secret": UNKNOWN_KEY}, **HX)
    text = body(response)
    assert response.status_code == 200
    assert is_partial(text)
    assert "rejected this key (401)" in text
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("kind", ["status", "drop"])
def test_upstream_down_offers_to_save_unverified(user_client, user, emulator, upstream_down, kind):
    upstream_down(kind)
    form = {"label": "Offline", "secret": TEST_KEY}

    response = user_client.post(CREATE_URL, form)
    text = body(response)
    assert response.status_code == 200
    assert "The Threads API could not be reached to check this key" in text
    assert 'name="save_unverified"' in text
    assert 'value="Offline"' in text
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.exists()
    if kind == "status":
        assert "Threads API 503" in text
        assert "(request req_" in text

    checks = len(key_checks(emulator))
    response = user_client.post(CREATE_URL, {**form, "save_unverified": "on"})
    assert response.status_code == 302
    assert len(key_checks(emulator)) == checks  # not asked again
    api_key = ApiKey.objects.get()
    assert decrypt_secret(api_key.secret_encrypted) == TEST_KEY
    assert api_key.last_checked_at is None
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome) == (Action.KEY_ADDED, Outcome.SUCCESS)
    assert event.details == {"verified": False}
    assert "Added the key “Offline” without verifying it." in body(user_client.get(LIST_URL))


def test_a_rate_limited_check_offers_to_save_unverified(user_client, emulator, no_retry_sleep):
    emulator.add_fault("GET", "/v1/threads/*", "status", status=429, times=None)
    text = body(user_client.post(CREATE_URL, {"label": "Busy", "secret": TEST_KEY}))
    assert "Threads API 429" in text
    assert 'name="save_unverified"' in text
    assert not ApiKey.objects.exists()


def test_a_slow_upstream_offers_to_save_unverified(user_client, emulator):
    emulator.add_fault("GET", "/v1/threads/*", "hang", seconds=3)
    text = body(user_client.post(CREATE_URL, {"label": "Slow", "secret": TEST_KEY}))
    assert "did not answer within 2 s" in text
    assert 'name="save_unverified"' in text
    assert not ApiKey.objects.exists()


def test_a_duplicate_personal_key_is_refused(user_client, api_key, emulator):
    response = user_client.post(CREATE_URL, {"label": "Again", "secret": TEST_KEY})
    text = body(response)
    assert response.status_code == 200
    assert "This key is already stored in your personal keys as “alice&#x27;s key”" in text
    assert ApiKey.objects.count() == 1
    assert key_checks(emulator) == []


def test_the_same_key_may_be_stored_again_once_revoked_or_for_a_team(
    user_client, user, api_key, make_team
):
    team = make_team(members={user: Role.OWNER})
    response = user_client.post(CREATE_URL, {"label": "Team", "secret": TEST_KEY, "team": team.pk})
    assert response.status_code == 302
    api_key.revoked_at = api_key.created_at
    api_key.save()
    response = user_client.post(CREATE_URL, {"label": "Fresh", "secret": TEST_KEY})
    assert response.status_code == 302
    assert ApiKey.objects.count() == 3


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"label": "", "secret": TEST_KEY}, "This field is required."),
        ({"label": "Spaces", "secret": "sk-test with spaces 1234"}, "without spaces"),
        ({"label": "Short", "secret": "sk-short"}, "at least 12 characters"),
    ],
)
def test_invalid_form_is_refused_before_asking_the_upstream(user_client, emulator, form, error):
    response = user_client.post(CREATE_URL, form)
    text = body(response)
    assert response.status_code == 200
    assert error in text
    assert form["secret"] not in text
    assert not ApiKey.objects.exists()
    assert emulator.request_log == []


# --- rotate -----------------------------------------------------------------------------------


def test_rotate_page_full_and_partial(user_client, api_key, make_thread):
    make_thread(api_key)
    full = body(user_client.get(rotate_url(api_key)))
    assert "<html" in full
    assert "Rotate “alice&#x27;s key”" in full
    assert api_key.hint in full
    assert "<dt>Tracked threads</dt><dd>1</dd>" in full
    partial = body(user_client.get(rotate_url(api_key), **HX))
    assert is_partial(partial)
    assert f'hx-post="{rotate_url(api_key)}"' in partial


def test_rotate_replaces_the_secret_and_keeps_the_threads(
    user_client, user, api_key, make_thread, emulator
):
    thread = make_thread(api_key)
    response = user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY})
    body(response)
    assert response.status_code == 302

    api_key.refresh_from_db()
    assert decrypt_secret(api_key.secret_encrypted) == OTHER_TEST_KEY
    assert api_key.hint == secret_hint(OTHER_TEST_KEY)
    assert api_key.rotated_at is not None
    assert list(api_key.threads.all()) == [thread]
    # Calls now go out with the new secret: the old project's thread is out of reach.
    new_thread = emulator.seed_thread(OTHER_TEST_KEY)
    assert key_service.client_for(api_key).retrieve_thread(new_thread["id"]).id == new_thread["id"]
    with pytest.raises(NotFoundError):
        key_service.client_for(api_key).retrieve_thread(thread.thread_id)

    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.api_key_id) == (
        Action.KEY_ROTATED,
        Outcome.SUCCESS,
        api_key.pk,
    )
    assert event.details == {"verified": True, "previous_hint": secret_hint(TEST_KEY)}
    assert event.key_hint == secret_hint(OTHER_TEST_KEY)
    assert "Rotated the key “alice&#x27;s key”." in body(user_client.get(LIST_URL))


def test_rotate_clears_a_previous_failure(user_client, api_key):
    ApiKey.objects.filter(pk=api_key.pk).update(failing=True, last_error="Threads API 401: no")
    user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY})
    api_key.refresh_from_db()
    assert (api_key.failing, api_key.last_error) == (False, "")


def test_rotate_over_htmx_redirects_the_client(user_client, api_key):
    response = user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY}, **HX)
    assert response["HX-Redirect"] == LIST_URL


def test_rotate_to_a_rejected_secret_changes_nothing(user_client, api_key):
    before = api_key.secret_encrypted
    response = user_client.post(rotate_url(api_key), {"secret": UNKNOWN_KEY}, **HX)
    text = body(response)
    assert is_partial(text)
    assert "The Threads API rejected this key (401) — request req_" in text
    api_key.refresh_from_db()
    assert (api_key.secret_encrypted, api_key.rotated_at) == (before, None)
    assert not AuditEvent.objects.exists()


def test_rotate_with_upstream_down_can_save_unverified(user_client, api_key, upstream_down):
    upstream_down("status")
    text = body(user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY}))
    assert "could not be reached" in text
    assert 'name="save_unverified"' in text
    assert decrypt_secret(ApiKey.objects.get().secret_encrypted) == TEST_KEY

    response = user_client.post(
        rotate_url(api_key), {"secret": OTHER_TEST_KEY, "save_unverified": "on"}
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert decrypt_secret(api_key.secret_encrypted) == OTHER_TEST_KEY
    assert AuditEvent.objects.get().details["verified"] is False


def test_rotate_to_another_stored_key_is_refused(user_client, user, api_key, make_key, emulator):
    make_key(owner=user, secret=OTHER_TEST_KEY, label="second")
    text = body(user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY}))
    assert "already stored in your personal keys as “second”" in text
    assert decrypt_secret(ApiKey.objects.get(pk=api_key.pk).secret_encrypted) == TEST_KEY
    assert key_checks(emulator) == []


def test_a_revoked_key_cannot_be_rotated(user_client, api_key, emulator):
    api_key.revoked_at = api_key.created_at
    api_key.save()
    text = body(user_client.get(rotate_url(api_key)))
    assert "cannot be rotated" in text
    assert 'name="secret"' not in text

    text = body(user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY}))
    assert "cannot be rotated" in text
    api_key.refresh_from_db()
    assert decrypt_secret(api_key.secret_encrypted) == TEST_KEY
    assert api_key.rotated_at is None
    assert not AuditEvent.objects.exists()
    assert key_checks(emulator) == []


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_confirmation_full_and_partial(user_client, api_key, make_thread):
    make_thread(api_key)
    make_thread(api_key)
    full = body(user_client.get(revoke_url(api_key)))
    assert "<html" in full
    assert "Its 2 tracked threads stay listed but become read-only" in full
    assert f'action="{revoke_url(api_key)}"' in full
    partial = body(user_client.get(revoke_url(api_key), **HX))
    assert is_partial(partial)
    assert "Revoke “alice&#x27;s key”?" in partial
    api_key.refresh_from_db()
    assert api_key.revoked_at is None  # a GET changes nothing


def test_revoke_makes_the_threads_read_only(user_client, user, api_key, make_thread):
    thread = make_thread(api_key)
    response = user_client.post(revoke_url(api_key))
    assert response.status_code == 302
    assert response["Location"] == LIST_URL

    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    assert api_key not in selectors.usable_keys(user)
    assert thread in selectors.visible_threads(user)
    assert thread not in selectors.writable_threads(user)
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.api_key_id) == (
        Action.KEY_REVOKED,
        Outcome.SUCCESS,
        api_key.pk,
    )
    assert event.details == {"tracked_threads": 1}
    listing = body(user_client.get(LIST_URL))
    assert "tracked threads (1) stay listed, read-only" in listing
    assert "badge revoked" in listing


def test_revoke_over_htmx_swaps_the_row_and_announces_it(user_client, api_key):
    response = user_client.post(revoke_url(api_key), **HX)
    text = body(response)
    assert response.status_code == 200
    assert text.strip().startswith(f'<tr id="key-{api_key.pk}">')
    assert "badge revoked" in text
    assert revoke_url(api_key) not in text
    trigger = json.loads(response["HX-Trigger"])
    assert "threadsChanged" in trigger
    assert toasts(response) == [
        "Revoked the key “alice's key”; its tracked threads (0) stay listed, read-only."
    ]


def test_revoking_twice_is_refused(user_client, api_key):
    user_client.post(revoke_url(api_key))
    revoked_at = ApiKey.objects.get().revoked_at
    assert "already revoked" in body(user_client.get(revoke_url(api_key)))
    response = user_client.post(revoke_url(api_key), **HX)
    assert toasts(response) == ["“alice's key” is already revoked."]
    assert ApiKey.objects.get().revoked_at == revoked_at
    assert AuditEvent.objects.count() == 1


# --- who may do what --------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, HX], ids=["page", "htmx"])
def test_another_users_key_is_a_404_everywhere(client, other_user, api_key, headers, emulator):
    client.force_login(other_user)
    before = ApiKey.objects.values().get()
    for url in (rotate_url(api_key), revoke_url(api_key)):
        assert client.get(url, **headers).status_code == 404
    assert (
        client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY}, **headers).status_code == 404
    )
    assert client.post(revoke_url(api_key), **headers).status_code == 404
    assert ApiKey.objects.values().get() == before
    assert not AuditEvent.objects.exists()
    assert key_checks(emulator) == []


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
@pytest.mark.parametrize("headers", [{}, HX], ids=["page", "htmx"])
def test_team_members_and_viewers_may_not_manage_team_keys(
    client, make_user, make_team, make_key, role, headers
):
    someone = make_user()
    team = make_team(members={someone: role})
    team_key = make_key(team=team)
    client.force_login(someone)
    before = ApiKey.objects.values().get()
    for url in (rotate_url(team_key), revoke_url(team_key)):
        assert client.get(url, **headers).status_code == 403
    assert (
        client.post(rotate_url(team_key), {"secret": OTHER_TEST_KEY}, **headers).status_code == 403
    )
    assert client.post(revoke_url(team_key), **headers).status_code == 403
    assert ApiKey.objects.values().get() == before
    assert not AuditEvent.objects.exists()


def test_a_team_owner_rotates_and_revokes_team_keys(client, make_user, make_team, make_key):
    owner = make_user()
    team = make_team("Ops", members={owner: Role.OWNER})
    team_key = make_key(team=team)
    client.force_login(owner)
    assert client.post(rotate_url(team_key), {"secret": OTHER_TEST_KEY}).status_code == 302
    assert client.post(revoke_url(team_key)).status_code == 302
    team_key.refresh_from_db()
    assert decrypt_secret(team_key.secret_encrypted) == OTHER_TEST_KEY
    assert team_key.revoked_at is not None
    events = AuditEvent.objects.order_by("sequence")
    assert [(e.action, e.outcome, e.team_id, e.actor_id) for e in events] == [
        (Action.KEY_ROTATED, Outcome.SUCCESS, team.pk, owner.pk),
        (Action.KEY_REVOKED, Outcome.SUCCESS, team.pk, owner.pk),
    ]


def test_audit_events_never_hold_a_secret(user_client, user, api_key, make_team, upstream_down):
    """Every key change, verified or not, scanned field by field (and by the autouse check)."""
    team = make_team(members={user: Role.OWNER})
    user_client.post(CREATE_URL, {"label": "t", "secret": OTHER_TEST_KEY, "team": team.pk})
    user_client.post(rotate_url(api_key), {"secret": OTHER_TEST_KEY})
    upstream_down("drop")
    team_key = ApiKey.objects.get(team=team)
    user_client.post(rotate_url(team_key), {"secret": UNKNOWN_KEY, "save_unverified": "on"})
    user_client.post(revoke_url(team_key))
    assert [e.action for e in AuditEvent.objects.order_by("sequence")] == [
        Action.KEY_ADDED,
        Action.KEY_ROTATED,
        Action.KEY_ROTATED,
        Action.KEY_REVOKED,
    ]
    texts = audit_texts()
    assert texts
    for secret in ALL_SECRETS:
        assert not any(secret in text for text in texts)


def test_the_services_check_permissions_themselves(make_user, make_team, make_key):
    """Defence in depth: the services refuse even when called past the views' checks."""
    member = make_user()
    team = make_team(members={member: Role.MEMBER})
    team_key = make_key(team=team)
    with pytest.raises(PermissionDenied):
        key_service.add_key(actor=member, label="x", secret=TEST_KEY, team=team)
    with pytest.raises(PermissionDenied):
        key_service.rotate_key(team_key, actor=member, secret=OTHER_TEST_KEY)
    with pytest.raises(PermissionDenied):
        key_service.revoke_key(team_key, actor=member)
    assert ApiKey.objects.values_list("pk", "revoked_at").get() == (team_key.pk, None)
    assert decrypt_secret(ApiKey.objects.get().secret_encrypted) == TEST_KEY


def test_every_service_refusal_is_one_family(user, api_key, make_user, make_team, upstream_down):
    """A view catches `Refused` alone: a duplicate, a revoked key, an upstream that says no or
    cannot be asked, and an actor who may not (also a 403 when no view catches it)."""
    assert issubclass(key_service.KeyRejected, Refused)
    assert issubclass(key_service.KeyUnverified, Refused)
    with pytest.raises(Refused, match="already stored in your personal keys"):
        key_service.add_key(actor=user, label="again", secret=TEST_KEY, verify=False)
    upstream_down("status")
    with pytest.raises(key_service.KeyUnverified):
        key_service.add_key(actor=user, label="new", secret=OTHER_TEST_KEY)
    key_service.revoke_key(api_key, actor=user)
    with pytest.raises(Refused, match="already revoked"):
        key_service.revoke_key(api_key, actor=user)
    with pytest.raises(Refused, match="is revoked and cannot be rotated"):
        key_service.rotate_key(api_key, actor=user, secret=OTHER_TEST_KEY, verify=False)
    team = make_team(members={user: Role.VIEWER, make_user(): Role.OWNER})
    with pytest.raises(NotAllowed, match="Only the team's owners can add its keys"):
        key_service.add_key(actor=user, label="x", secret=OTHER_TEST_KEY, team=team)


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_key_pages_with_a_partial_vary_on_hx_request(user_client, api_key, headers):
    """A cache must never serve a page's partial for the page itself."""
    for path in (LIST_URL, CREATE_URL, rotate_url(api_key), revoke_url(api_key)):
        assert "HX-Request" in user_client.get(path, **headers)["Vary"], path
    revoked = user_client.post(revoke_url(api_key), **HX)
    assert "HX-Request" in revoked["Vary"]
    assert revoked.content.lstrip().startswith(f'<tr id="key-{api_key.pk}">'.encode())


def test_a_superuser_sees_and_manages_everyones_keys(client, make_user, other_user, make_key):
    admin = make_user("root", is_superuser=True)
    bobs = make_key(owner=other_user, label="bob's key")
    client.force_login(admin)
    text = body(client.get(LIST_URL))
    assert ">Personal: bob</h2>" in text
    assert revoke_url(bobs) in text
    assert client.post(revoke_url(bobs)).status_code == 302
    assert ApiKey.objects.get().revoked_at is not None


# --- Remembering use ---------------------------------------------------------------------------


def test_a_working_key_is_written_once_a_minute_not_once_a_call(api_key):
    key_service.note_key_result(api_key)
    first_use = ApiKey.objects.get(pk=api_key.pk).last_used_at
    with CaptureQueriesContext(connection) as queries:
        key_service.note_key_result(api_key)
    assert len(queries) == 0
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first_use

    api_key.last_used_at = first_use - key_service.LAST_USED_PRECISION
    key_service.note_key_result(api_key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first_use


def test_a_rejected_key_is_marked_failing_and_cleared_by_the_next_success(api_key, emulator):
    key_service.note_key_result(api_key)  # used a moment ago: recent, yet the flag must move
    rejected = key_service.AuthenticationError("bad key", status=401, request_id="req_1")
    key_service.note_key_result(api_key, rejected)
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert stored.failing and "bad key" in stored.last_error

    key_service.note_key_result(api_key)
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert not stored.failing and stored.last_error == ""
