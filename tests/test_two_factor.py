"""Issue 12, two-factor: TOTP with recovery codes for anyone, REQUIRE_2FA, the team rule for
owners, and a recent authentication (15 minutes) before the actions that cost most."""

import time

import pytest
from allauth.mfa.models import Authenticator
from django.test import Client, RequestFactory
from django.urls import reverse

from tests.conftest import OTHER_TEST_KEY, authenticated_at
from tests.test_accounts import _log_in, totp_code, turn_on_totp
from threads_app import selectors
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteJob,
    Membership,
    RetentionPolicy,
    Team,
)

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action
STALE = 16 * 60  # seconds: past the 15 minutes


def url(name, *args):
    return reverse(f"threads_app:{name}", args=args)


class TestTotp:
    def test_once_on_the_log_in_asks_for_a_code_and_a_recovery_code_works_once(
        self, user_client, user
    ):
        secret = turn_on_totp(user_client)
        codes = Authenticator.objects.get(user=user, type="recovery_codes").wrap()
        recovery = codes.get_unused_codes()[0]

        client = Client()
        assert _log_in(client, "alice", "pw-alice")["Location"] == reverse("mfa_authenticate")
        assert client.get(url("thread_list")).status_code == 302  # not logged in yet
        wrong = client.post(reverse("mfa_authenticate"), {"code": "000000"})
        assert "Incorrect code" in wrong.content.decode()
        done = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
        assert done["Location"] == url("overview")
        assert client.get(url("thread_list")).status_code == 200

        for attempt, expected in ((1, url("overview")), (2, None)):
            other = Client()
            _log_in(other, "alice", "pw-alice")
            answer = other.post(reverse("mfa_authenticate"), {"code": recovery})
            assert answer.get("Location") == expected, attempt

    def test_the_activation_refuses_a_wrong_code_and_stays_off(self, user_client, user):
        user_client.get(reverse("mfa_activate_totp"))
        response = user_client.post(reverse("mfa_activate_totp"), {"code": "123456"})
        assert response.status_code == 200
        assert "Incorrect code" in response.content.decode()
        assert not Authenticator.objects.filter(user=user).exists()


class TestRequired:
    def test_require_2fa_sends_everyone_to_turn_it_on_first(self, user_client, settings):
        settings.REQUIRE_2FA = True
        response = user_client.get(url("thread_list"))
        assert response["Location"] == reverse("mfa_activate_totp")
        page = user_client.get(reverse("mfa_activate_totp"))
        assert "requires two-factor authentication for everyone" in page.content.decode()
        htmx = user_client.post(url("team_create"), {"name": "x"}, HTTP_HX_REQUEST="true")
        assert htmx["HX-Redirect"] == reverse("mfa_activate_totp")
        assert not Team.objects.exists()

        turn_on_totp(user_client)
        assert user_client.get(url("thread_list")).status_code == 200
        # ... and it cannot be turned off while it is required.
        refused = user_client.post(reverse("mfa_deactivate_totp"))
        assert refused.status_code == 200
        assert Authenticator.objects.filter(type="totp").exists()

    def test_off_by_default(self, user_client, settings):
        assert settings.REQUIRE_2FA is False
        assert user_client.get(url("thread_list")).status_code == 200

    def test_a_team_rule_makes_its_owners_enrol_and_no_one_else(
        self, client, user, other_user, make_user, make_team
    ):
        co_owner = make_user("carol")
        team = make_team("Blue", {user: "owner", co_owner: "owner", other_user: "member"})
        client.force_login(user)
        turn_on_totp(client)  # only someone who uses it may require it (test_team_two_factor_rule)
        rule = {"required": "on", "confirmed": "on"}
        response = client.post(url("team_two_factor_rule", team.pk), rule)
        assert response["Location"] == url("team_detail", team.pk)
        team.refresh_from_db()
        assert team.owners_need_two_factor
        [event] = AuditEvent.objects.filter(action=Action.TEAM_TWO_FACTOR_RULE)
        assert (event.team_id, event.details) == (team.pk, {"required": True})

        owner = Client()
        owner.force_login(co_owner)
        assert owner.get(url("thread_list"))["Location"] == reverse("mfa_activate_totp")
        member = Client()
        member.force_login(other_user)
        assert member.get(url("thread_list")).status_code == 200
        # Only owners set the rule.
        assert member.post(url("team_two_factor_rule", team.pk), {}).status_code == 403

        assert client.post(reverse("mfa_deactivate_totp")).status_code == 200  # refused
        client.post(url("team_two_factor_rule", team.pk), {})  # the rule off
        team.refresh_from_db()
        assert not team.owners_need_two_factor
        assert client.post(reverse("mfa_deactivate_totp")).status_code == 302


# The actions that need a recent authentication: (URL, POST data) for a stale session.
@pytest.fixture
def sensitive(api_key, make_team, user, make_thread):
    team = make_team("Red", {user: "owner"})
    thread = make_thread(api_key)
    return {
        "add a key": (url("key_create"), {"label": "x", "secret": OTHER_TEST_KEY}),
        "rotate a key": (url("key_rotate", api_key.pk), {"secret": OTHER_TEST_KEY}),
        "revoke a key": (url("key_revoke", api_key.pk), {}),
        "delete a team": (url("team_delete", team.pk), {}),
        "start a bulk delete": (url("thread_bulk_delete"), {"thread": thread.pk}),
        "enable a retention policy": (
            url("key_retention", api_key.pk),
            {"max_age_days": "30", "previewed_days": "30", "action": "enable"},
        ),
    }


def _nothing_changed(api_key):
    api_key.refresh_from_db()
    assert ApiKey.objects.count() == 1 and not api_key.revoked_at and not api_key.rotated_at
    assert Team.objects.filter(name="Red").exists()
    assert not BulkDeleteJob.objects.exists() and not RetentionPolicy.objects.exists()


ACTIONS = [
    "add a key",
    "rotate a key",
    "revoke a key",
    "delete a team",
    "start a bulk delete",
    "enable a retention policy",
]


class TestRecentAuthentication:
    @pytest.mark.parametrize("action", ACTIONS)
    def test_a_stale_session_is_asked_for_the_password_and_changes_nothing(
        self, action, sensitive, user_client, user, api_key
    ):
        path, data = sensitive[action]
        authenticated_at(user_client.session, user, time.time() - STALE)

        response = user_client.post(path, data)
        reauthenticate = reverse("account_reauthenticate")
        assert response["Location"] == f"{reauthenticate}?next={path.replace('/', '%2F')}"
        htmx = user_client.post(path, data, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=path)
        assert htmx["HX-Redirect"].startswith(reauthenticate + "?next=")
        _nothing_changed(api_key)

        # The password, then the page again; the same POST now goes through.
        back = user_client.post(response["Location"], {"password": "pw-alice"})
        assert back["Location"] == path
        assert user_client.post(path, data).status_code in (200, 302)
        assert any(
            [
                ApiKey.objects.count() == 2,
                ApiKey.objects.filter(rotated_at__isnull=False).exists(),
                ApiKey.objects.filter(revoked_at__isnull=False).exists(),
                not Team.objects.filter(name="Red").exists(),
                BulkDeleteJob.objects.exists(),
                RetentionPolicy.objects.filter(enabled=True).exists(),
            ]
        ), action

    @pytest.mark.parametrize("action", ["add a key", "delete a team", "start a bulk delete"])
    def test_the_confirmation_pages_ask_first(self, action, sensitive, user_client, user):
        path, _data = sensitive[action]
        authenticated_at(user_client.session, user, time.time() - STALE)
        assert user_client.get(path)["Location"].startswith(reverse("account_reauthenticate"))
        authenticated_at(user_client.session, user, time.time() - 14 * 60)
        assert user_client.get(path).status_code == 200

    def test_a_wrong_password_keeps_asking(self, sensitive, user_client, user, api_key):
        path, data = sensitive["revoke a key"]
        authenticated_at(user_client.session, user, time.time() - STALE)
        target = user_client.post(path, data)["Location"]
        again = user_client.post(target, {"password": "wrong"})
        assert again.status_code == 200
        assert user_client.post(path, data)["Location"] == target
        _nothing_changed(api_key)

    def test_with_two_factor_a_code_reauthenticates_too(self, sensitive, user_client, user):
        secret = turn_on_totp(user_client)
        path, _data = sensitive["add a key"]
        authenticated_at(user_client.session, user, time.time() - STALE)
        assert user_client.get(path).status_code == 302
        done = user_client.post(
            f"{reverse('mfa_reauthenticate')}?next={path}", {"code": totp_code(secret)}
        )
        assert done["Location"] == path
        assert user_client.get(path).status_code == 200

    def test_a_log_in_through_the_form_counts_as_recent(self, client, user):
        _log_in(client, "alice", "pw-alice")
        assert client.get(url("key_create")).status_code == 200

    def test_previewing_or_saving_a_disabled_policy_needs_none(self, user_client, user, api_key):
        authenticated_at(user_client.session, user, time.time() - STALE)
        path = url("key_retention", api_key.pk)
        assert user_client.get(path).status_code == 200
        preview = user_client.post(path, {"max_age_days": "30", "action": "preview"})
        assert preview.status_code == 200
        saved = user_client.post(path, {"max_age_days": "30", "action": "disable"})
        assert saved["Location"] == path


@pytest.mark.django_db
def test_the_signed_in_user_is_loaded_with_the_two_factor_facts_in_one_query(
    client, user, make_team, django_assert_num_queries
):
    """The check every page makes reads what the user's own query read (no query of its own),
    and a team's rule set after the log-in still applies on the next page."""
    from django.contrib.auth import get_user

    team = make_team("Strict", {user: Membership.Role.OWNER})
    client.force_login(user)
    request = RequestFactory().get("/")
    request.session = client.session

    with django_assert_num_queries(2):  # the session, the user with the facts
        loaded = get_user(request)
        assert selectors.two_factor_required_by(loaded) is None
        assert selectors.has_two_factor(loaded) is False

    Team.objects.filter(pk=team.pk).update(owners_need_two_factor=True)
    again = get_user(request)
    assert selectors.two_factor_required_by(again) == (
        "Strict requires its owners to use two-factor authentication."
    )
