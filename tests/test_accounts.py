"""Issue 12: accounts a team runs on its own (django-allauth) — passwords, the demo's outbox."""

import re
import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from dashboard.env import email_settings
from threads_app.audit import verify_chain
from threads_app.mail import OUTBOX_BACKEND
from threads_app.models import AuditEvent

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-long-password"


def _log_in(client, username, password):
    return client.post(reverse("account_login"), {"login": username, "password": password})


class TestLogIn:
    def test_the_old_login_url_leads_to_the_login_page_with_its_next(self, client):
        response = client.get("/login/?next=/keys/")
        assert response.status_code == 302
        assert response["Location"] == reverse("account_login") + "?next=/keys/"

    def test_logging_in_by_username_lands_on_the_overview(self, client, user):
        response = _log_in(client, "alice", "pw-alice")
        assert response.status_code == 302
        assert response["Location"] == reverse("threads_app:overview")
        assert client.get(reverse("threads_app:thread_list")).status_code == 200

    def test_a_wrong_password_is_refused_and_nobody_can_sign_up(self, client, user):
        response = _log_in(client, "alice", "wrong")
        assert response.status_code == 200
        assert "not correct" in response.content.decode()
        assert "sign up" not in response.content.decode().lower()
        assert client.get(reverse("threads_app:thread_list")).status_code == 302

    def test_the_admin_logs_in_through_the_same_page(self, client):
        response = client.get("/admin/login/?next=/admin/")
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


class TestPasswordChange:
    def test_a_logged_in_user_changes_their_password_and_stays_logged_in(self, user_client, user):
        response = user_client.post(
            reverse("account_change_password"),
            {"oldpassword": "pw-alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        assert response.status_code == 302
        user.refresh_from_db()
        assert user.check_password(NEW_PASSWORD)
        assert user_client.get(reverse("threads_app:thread_list")).status_code == 200

    def test_a_wrong_current_password_changes_nothing(self, user_client, user):
        response = user_client.post(
            reverse("account_change_password"),
            {"oldpassword": "not-it", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        assert response.status_code == 200
        assert "Please type your current password" in response.content.decode()
        user.refresh_from_db()
        assert user.check_password("pw-alice")

    def test_a_weak_new_password_is_refused_with_the_reason(self, user_client, user):
        response = user_client.post(
            reverse("account_change_password"),
            {"oldpassword": "pw-alice", "password1": "123", "password2": "123"},
        )
        assert response.status_code == 200
        assert "too short" in response.content.decode()
        user.refresh_from_db()
        assert user.check_password("pw-alice")

    def test_the_page_needs_a_login(self, client):
        response = client.get(reverse("account_change_password"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("account_login"))


def _reset_link(message) -> str:
    [link] = re.findall(r"https?://\S+/accounts/password/reset/key/\S+/", message.body)
    return link.split("testserver", 1)[1]


class TestPasswordReset:
    def test_a_reset_email_holds_a_single_use_link_that_sets_a_new_password(self, client, user):
        response = client.post(reverse("account_reset_password"), {"email": "ALICE@example.test"})
        assert response.status_code == 302
        [message] = mail.outbox
        assert message.to == ["alice@example.test"]
        assert message.from_email == "Threads Console <threads-console@localhost>"
        assert message.body.startswith("Hello from Threads Console,")
        link = _reset_link(message)

        form = client.get(link, follow=True)
        assert form.status_code == 200
        set_url = form.redirect_chain[-1][0]
        done = client.post(set_url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
        assert done.status_code == 302
        user.refresh_from_db()
        assert user.check_password(NEW_PASSWORD)

        # Used once: the same link no longer works, and the password stays.
        again = Client().get(link, follow=True)
        assert "This link has expired or was used" in again.content.decode()
        assert _log_in(Client(), "alice", NEW_PASSWORD).status_code == 302

    def test_an_unknown_address_gets_the_same_answer_and_no_link(self, client, user):
        known = client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
        unknown = client.post(reverse("account_reset_password"), {"email": "nobody@example.test"})
        assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
        assert [m.to for m in mail.outbox] == [["alice@example.test"]]

    def test_a_malformed_address_is_refused_with_a_message(self, client):
        response = client.post(reverse("account_reset_password"), {"email": "not an email"})
        assert response.status_code == 200
        assert "Enter a valid email address" in response.content.decode()
        assert not mail.outbox

    def test_a_forged_link_is_refused(self, client, user):
        response = client.get("/accounts/password/reset/key/1-forged-token/", follow=True)
        assert response.status_code == 200
        assert "This link has expired or was used" in response.content.decode()


class TestOutbox:
    def test_the_page_is_a_404_unless_debug_mode_uses_the_outbox(self, client, settings):
        assert client.get(reverse("sent_email_list")).status_code == 404
        settings.DEBUG = True  # with another backend: still a 404
        assert client.get(reverse("sent_email_list")).status_code == 404

    def test_in_debug_mode_it_lists_the_emails_sent_with_their_links(
        self, client, settings, tmp_path, user, capsys
    ):
        settings.DEBUG = True
        settings.EMAIL_BACKEND = OUTBOX_BACKEND
        settings.EMAIL_FILE_PATH = str(tmp_path / "outbox")
        assert "No email has been sent yet" in client.get(reverse("sent_email_list")).text

        client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
        assert "/accounts/password/reset/key/" in capsys.readouterr().out  # the console copy

        page = client.get(reverse("sent_email_list")).content.decode()
        assert "alice@example.test" in page
        assert "Reset your password" in page
        [href] = re.findall(r'href="(http://testserver/accounts/password/reset/key/[^"]+)"', page)
        assert client.get(href, follow=True).status_code == 200


class TestEmailUrl:
    def test_smtp_with_starttls_and_a_quoted_password(self):
        parsed = email_settings("smtp+tls://mailer%40example.com:p%40ss%3Aword@mail.example.com")
        assert parsed.backend == "django.core.mail.backends.smtp.EmailBackend"
        assert (parsed.host, parsed.port) == ("mail.example.com", 587)
        assert (parsed.user, parsed.password) == ("mailer@example.com", "p@ss:word")
        assert (parsed.use_tls, parsed.use_ssl) == (True, False)

    def test_smtps_and_plain_smtp_and_the_console(self):
        assert email_settings("smtps://mail.example.com").port == 465
        assert email_settings("smtps://mail.example.com").use_ssl
        plain = email_settings("smtp://localhost:2525")
        assert (plain.port, plain.use_tls, plain.use_ssl) == (2525, False, False)
        assert email_settings("console:").backend.endswith("console.EmailBackend")
        assert email_settings("outbox:").backend == OUTBOX_BACKEND

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            ("imap://mail.example.com", "EMAIL_URL must start with one of"),
            ("mail.example.com", "it starts with no scheme"),
            ("smtp+tls://", "must name the mail server"),
            ("smtp://mail.example.com:port", "port must be a number"),
        ],
    )
    def test_a_bad_url_is_refused_naming_the_problem(self, url, message):
        from django.core.exceptions import ImproperlyConfigured

        with pytest.raises(ImproperlyConfigured, match=message):
            email_settings(url)


def totp_code(secret: str) -> str:
    """The code an authenticator app would show for `secret` now; never in the last seconds of
    its window (allauth accepts the current window's code alone: one computed at 29.9 s and
    checked at 30.1 s is refused, which made the tests that type it fail now and then)."""
    from allauth.mfa import app_settings as mfa_settings
    from allauth.mfa.totp.internal.auth import (
        format_hotp_value,
        hotp_value,
        yield_hotp_counters_from_time,
    )

    left = mfa_settings.TOTP_PERIOD - time.time() % mfa_settings.TOTP_PERIOD
    if left < TOTP_MARGIN_SECONDS:
        time.sleep(left)
    return format_hotp_value(hotp_value(secret, next(yield_hotp_counters_from_time())))


# How long a code computed by `totp_code` stays the current one, at least.
TOTP_MARGIN_SECONDS = 5


def turn_on_totp(client) -> str:
    """Turn on two-factor through its page, as a user would; returns the secret. (allauth
    signals it once the transaction commits: run inside `django_capture_on_commit_callbacks`
    to see its audit event.)"""
    from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY

    page = client.get(reverse("mfa_activate_totp"))
    assert page.status_code == 200
    secret = client.session[SECRET_SESSION_KEY]
    done = client.post(reverse("mfa_activate_totp"), {"code": totp_code(secret)})
    assert done.status_code == 302, done.content.decode()
    return secret


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def _row_text(event):
    return " ".join(str(getattr(event, f.name)) for f in AuditEvent._meta.get_fields())


class TestSignInAudit:
    def test_a_log_in_and_a_log_out_are_in_the_users_own_log(self, client, user):
        _log_in(client, "alice", "pw-alice")
        client.post(reverse("account_logout"))
        [login] = _events(Action.LOGGED_IN)
        [logout] = _events(Action.LOGGED_OUT)
        for event in (login, logout):
            assert (event.actor_id, event.owner_id, event.team_id) == (user.pk, user.pk, None)
            assert event.outcome == Outcome.SUCCESS
            assert event.client_ip == "127.0.0.1"
            assert "pw-alice" not in _row_text(event)
        assert verify_chain().ok

    def test_a_wrong_password_is_recorded_without_it(self, client, user):
        _log_in(client, "alice", "my-secret-guess")
        [failed] = _events(Action.LOGIN_FAILED)
        assert (failed.actor_username, failed.owner_id, failed.outcome) == (
            "alice",
            user.pk,
            Outcome.FAILED,
        )
        assert failed.details == {"step": "password", "known_account": True}
        assert "my-secret-guess" not in _row_text(failed)

    def test_what_was_typed_for_an_unknown_account_is_not_recorded(self, client, user):
        _log_in(client, "hunter2-typed-in-the-wrong-box", "pw")
        [failed] = _events(Action.LOGIN_FAILED)
        assert (failed.actor_id, failed.actor_username, failed.owner_id) == (None, "", None)
        assert failed.details == {"step": "password", "known_account": False}
        assert "hunter2" not in _row_text(failed)

    def test_the_lockout_is_recorded_when_it_locks_and_each_time_it_refuses(self, client, user):
        for _ in range(6):
            _log_in(Client(), "alice", "wrong")
        assert len(_events(Action.LOGIN_FAILED)) == 4
        locked = _events(Action.LOCKED_OUT)
        assert len(locked) == 2  # the fifth failure locked it; the sixth attempt was refused
        assert {(e.actor_username, e.outcome) for e in locked} == {("alice", Outcome.REFUSED)}
        # Even the right password is refused now, and recorded as such.
        assert _log_in(Client(), "alice", "pw-alice").status_code == 429
        assert len(_events(Action.LOCKED_OUT)) == 3
        assert not _events(Action.LOGGED_IN)

    def test_password_changes_and_resets(self, user_client, client, user):
        user_client.post(
            reverse("account_change_password"),
            {"oldpassword": "pw-alice", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        )
        [changed] = _events(Action.PASSWORD_CHANGED)
        assert (changed.actor_id, changed.owner_id) == (user.pk, user.pk)

        client.post(reverse("account_reset_password"), {"email": "alice@example.test"})
        form = client.get(_reset_link(mail.outbox[0]), follow=True)
        client.post(
            form.redirect_chain[-1][0],
            {"password1": "x" + NEW_PASSWORD, "password2": "x" + NEW_PASSWORD},
        )
        [reset] = _events(Action.PASSWORD_RESET)
        assert (reset.actor_id, reset.owner_id) == (user.pk, user.pk)
        for event in (changed, reset):
            assert NEW_PASSWORD not in _row_text(event)

    def test_two_factor_on_and_off_and_a_wrong_code_without_the_secret(
        self, user_client, user, django_capture_on_commit_callbacks
    ):
        committed = django_capture_on_commit_callbacks  # allauth signals after the commit
        with committed(execute=True):
            secret = turn_on_totp(user_client)
        # One event per authenticator: the TOTP, and the recovery codes that come with it.
        enabled = _events(Action.TWO_FACTOR_ENABLED)
        assert [(e.owner_id, e.actor_id, e.details["kind"]) for e in enabled] == [
            (user.pk, user.pk, "totp"),
            (user.pk, user.pk, "recovery_codes"),
        ]
        with committed(execute=True):
            user_client.post(reverse("mfa_generate_recovery_codes"))
        [renewed] = _events(Action.RECOVERY_CODES_RENEWED)
        assert (renewed.owner_id, renewed.details) == (user.pk, {})
        with committed(execute=True):
            assert user_client.post(reverse("mfa_deactivate_totp")).status_code == 302
        disabled = _events(Action.TWO_FACTOR_DISABLED)
        # The renewal replaced the recovery codes; turning it off removed both.
        assert [e.details["kind"] for e in disabled] == ["recovery_codes", "totp", "recovery_codes"]

        # A wrong code at the log-in's second step.
        turn_on_totp(user_client)
        client = Client()
        assert _log_in(client, "alice", "pw-alice")["Location"] == reverse("mfa_authenticate")
        client.post(reverse("mfa_authenticate"), {"code": "000000"})
        [failed] = _events(Action.LOGIN_FAILED)
        assert failed.details == {"step": "two-factor code", "known_account": True}
        for event in AuditEvent.objects.all():
            assert secret not in _row_text(event)

    def test_the_audit_page_filters_sign_in_events_and_shows_them_to_their_user_only(
        self, client, user, other_user
    ):
        _log_in(client, "alice", "pw-alice")
        _log_in(Client(), "bob", "wrong")
        page = client.get(reverse("threads_app:audit_list"), {"action": Action.LOGGED_IN})
        assert page.status_code == 200
        assert "Logged in" in page.content.decode()
        failed = client.get(reverse("threads_app:audit_list"), {"action": Action.LOGIN_FAILED})
        assert "bob" not in failed.content.decode()  # bob's failure is his log, not hers
        rows = client.get(reverse("threads_app:audit_export"), {"action": Action.LOGGED_IN})
        assert b"account.logged_in" in b"".join(rows.streaming_content)
