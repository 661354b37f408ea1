"""Issue 16: allauth's pages speak the console's words, in one voice ("Log in", "two-factor
authentication", "This link has expired or was used"), the page after too many requests has
the layout and a way back, and the two-factor page offers no "Deactivate" to whoever must
keep it on."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from tests.test_accounts import _log_in, _reset_link, turn_on_totp
from threads_app.models import Membership, Team

pytestmark = pytest.mark.django_db

# allauth's own dialect: none of it may show on any page.
FOREIGN = [
    "Sign In",
    "Sign in",
    "Sign Out",
    "signed in",
    "signed out",
    "Code:",
    "Bad Token",
    "Two-Factor",
    "Change Password",
    "Password Reset",
    "Confirm Access",
    "Authenticator App",
    "Recovery Codes",
    "Please reauthenticate",
    "Please contact us",
    ":</label>",
]


def text_of(response) -> str:
    assert response.status_code in (200, 429), response.status_code
    return response.content.decode()


def heading(page: str) -> str:
    [h1] = re.findall(r"<h1[^>]*>(.*?)</h1>", page, re.S)
    return h1.strip()


def title(page: str) -> str:
    return re.search(r"<title>(.*?)</title>", page, re.S).group(1).strip()


def assert_console_words(page: str) -> None:
    found = [word for word in FOREIGN if word in page]
    assert not found, found
    assert 'class="topbar"' in page  # the console's layout


def test_the_reset_pages_and_the_expired_link(client, user):
    page = text_of(client.get(reverse("account_reset_password")))
    assert_console_words(page)
    assert heading(page) == "Reset your password"
    assert 'for="id_email">Email</label>' in page

    sent = client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
    assert sent["Location"] == reverse("account_reset_password_done")
    page = text_of(client.get(sent["Location"]))
    assert_console_words(page)
    assert heading(page) == "Check your email"
    assert reverse("account_login") in page  # a way back

    [message] = mail.outbox
    assert message.subject == "[Threads Console] Reset your password"
    link = _reset_link(message)
    form = client.get(link, follow=True)
    page = text_of(form)
    assert_console_words(page)
    assert heading(page) == "Choose a new password"
    assert 'for="id_password1">New password</label>' in page
    assert 'for="id_password2">New password (again)</label>' in page

    done = client.post(
        form.redirect_chain[-1][0],
        {"password1": "a-brand-new-long-password", "password2": "a-brand-new-long-password"},
    )
    page = text_of(client.get(done["Location"]))
    assert_console_words(page)
    assert heading(page) == "Password changed"
    assert title(page).startswith("Password changed")

    # The same link again: used.
    page = text_of(Client().get(link, follow=True))
    assert_console_words(page)
    assert heading(page) == "This link has expired or was used"
    assert reverse("account_reset_password") in page  # ask for a new one


def test_a_forged_reset_link_says_the_same(client):
    page = text_of(client.get("/accounts/password/reset/key/1-forged-token/", follow=True))
    assert_console_words(page)
    assert heading(page) == "This link has expired or was used"


def test_too_many_reset_requests_get_the_layout_and_a_way_back(client, user):
    answers = [
        client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
        for _ in range(6)  # allauth's limit: 5 a minute per address
    ]
    assert [a.status_code for a in answers] == [302] * 5 + [429]
    page = answers[-1].content.decode()
    assert_console_words(page)
    assert heading(page) == "Too many attempts"
    assert f'href="{reverse("account_login")}"' in page
    assert len(mail.outbox) == 5

    client.force_login(user)  # signed in, the way back is the overview
    again = client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
    assert again.status_code == 429
    assert f'href="{reverse("threads_app:overview")}"' in again.content.decode()


def test_the_log_in_with_a_code_speaks_of_logging_in(user_client, user):
    turn_on_totp(user_client)
    client = Client()
    assert _log_in(client, "alice", "pw-alice")["Location"] == reverse("mfa_authenticate")
    page = text_of(client.get(reverse("mfa_authenticate")))
    assert_console_words(page)
    assert heading(page) == "Log in: two-factor authentication"
    assert title(page).startswith("Log in")
    assert re.search(r'<button type="submit" class="primary">Log in</button>', page)
    assert 'for="id_code">Code</label>' in page

    wrong = text_of(client.post(reverse("mfa_authenticate"), {"code": "000000"}))
    assert_console_words(wrong)
    assert "Incorrect code" in wrong


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("account_change_password", "Change your password"),
        ("account_logout", "Log out"),
        ("mfa_index", "Two-factor authentication"),
        ("mfa_activate_totp", "Activate an authenticator app"),
    ],
)
def test_account_pages_of_a_signed_in_user(user_client, name, expected):
    page = text_of(user_client.get(reverse(name)))
    assert_console_words(page)
    assert heading(page) == expected


def test_the_pages_of_an_authenticator_app_in_use(user_client):
    turn_on_totp(user_client)
    for name, expected in [
        ("mfa_index", "Two-factor authentication"),
        ("mfa_deactivate_totp", "Deactivate the authenticator app"),
        ("mfa_view_recovery_codes", "Recovery codes"),
        ("mfa_generate_recovery_codes", "Recovery codes"),
    ]:
        page = text_of(user_client.get(reverse(name)))
        assert_console_words(page)
        assert heading(page) == expected, name


def test_the_reauthentication_prompts(client, user):
    client.force_login(user)  # a session with no recent password
    page = text_of(client.get(reverse("account_reauthenticate")))
    assert_console_words(page)
    assert heading(page) == "Confirm it is you"
    assert 'for="id_password">Password</label>' in page

    turn_on_totp(_fresh_client(user))
    page = text_of(client.get(reverse("mfa_reauthenticate")))
    assert_console_words(page)
    assert heading(page) == "Confirm it is you"
    assert 'for="id_code">Code</label>' in page


def _fresh_client(user) -> Client:
    client = Client()
    _log_in(client, user.username, f"pw-{user.username}")
    return client


class TestDeactivateOffered:
    def test_to_whoever_may_turn_it_off(self, user_client):
        turn_on_totp(user_client)
        page = text_of(user_client.get(reverse("mfa_index")))
        assert reverse("mfa_deactivate_totp") in page
        assert ">Deactivate<" in page

    def test_never_with_require_2fa(self, user_client, settings):
        settings.REQUIRE_2FA = True
        turn_on_totp(user_client)
        page = text_of(user_client.get(reverse("mfa_index")))
        assert reverse("mfa_deactivate_totp") not in page
        assert "Deactivate" not in page
        assert "This site requires two-factor authentication for everyone. It stays on." in page

    def test_never_to_an_owner_of_a_team_that_requires_it(self, user_client, user, make_team):
        turn_on_totp(user_client)
        team = make_team("Strict", {user: Membership.Role.OWNER})
        Team.objects.filter(pk=team.pk).update(owners_need_two_factor=True)
        page = text_of(user_client.get(reverse("mfa_index")))
        assert "Deactivate" not in page
        assert "Strict requires its owners to use two-factor authentication." in page
