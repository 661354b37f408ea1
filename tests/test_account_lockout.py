"""Issue 16, defects 3, 4 and 6: the lockout counts two-factor codes as it counts passwords
(log-in, recovery codes, reauthentication), a case variant of a username is the same username
to it, and the audit names the client behind a trusted proxy, as the lockout does."""

import time
from itertools import islice

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from axes.models import AccessAttempt
from django.test import Client, override_settings
from django.urls import reverse

from tests.test_accounts import totp_code, turn_on_totp
from threads_app.audit import verify_chain
from threads_app.models import AuditEvent

pytestmark = pytest.mark.django_db

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
LOGIN, CODE, REAUTH = (
    "/accounts/login/",
    "/accounts/2fa/authenticate/",
    "/accounts/2fa/reauthenticate/",
)


def _log_in(client: Client, username: str, password: str, **meta: str):
    return client.post(LOGIN, {"login": username, "password": password}, **meta)


def wrong_codes(secret: str, count: int) -> list[str]:
    """`count` six-digit codes none of which is valid now (nor a period either side)."""
    now = int(time.time()) // 30
    valid = {format_hotp_value(hotp_value(secret, now + d)) for d in (-2, -1, 0, 1, 2)}
    codes = (f"{n:06d}" for n in range(10**6))
    return list(islice((code for code in codes if code not in valid), count))


def _events(action: str, **details: str) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(action=action).order_by("sequence")
    return [e for e in events if all(e.details.get(k) == v for k, v in details.items())]


@pytest.fixture
def secret(user_client):
    """alice (password pw-alice) with two-factor on; the secret of her authenticator app."""
    return turn_on_totp(user_client)


def _at_second_step(**meta: str) -> Client:
    client = Client()
    assert _log_in(client, "alice", "pw-alice", **meta)["Location"] == CODE
    return client


class TestCodesAtTheLogIn:
    def test_the_600_guess_attack_is_locked_out_after_5_and_then_the_right_code_is_refused(
        self, secret, user
    ):
        attacker = _at_second_step()
        other_session = _at_second_step()  # a second log-in waiting at the code, same address

        answers = [attacker.post(CODE, {"code": code}) for code in wrong_codes(secret, 600)]

        assert [a.status_code for a in answers[:4]] == [200] * 4
        assert all("Incorrect code" in a.content.decode() for a in answers[:4])
        assert answers[4].status_code == 429  # the fifth wrong code locks
        assert "Too many failed log-ins" in answers[4].content.decode()
        # The pending log-in was dropped: the rest never reached a code check.
        assert {a["Location"] for a in answers[5:]} == {LOGIN}
        assert len(_events(Action.LOGIN_FAILED, step="two-factor code")) == 4
        [locked] = _events(Action.LOCKED_OUT)
        assert (locked.actor_username, locked.outcome) == ("alice", Outcome.REFUSED)
        assert locked.details == {"step": "two-factor code", "known_account": True}

        # Even the right code, in the session that was still waiting, is refused.
        refused = other_session.post(CODE, {"code": totp_code(secret)})
        assert refused.status_code == 429
        assert other_session.get(reverse("threads_app:overview"))["Location"].startswith(LOGIN)
        assert other_session.get(CODE)["Location"] == LOGIN  # and its log-in dropped too
        assert len(_events(Action.LOCKED_OUT)) == 2
        # The password is refused as well, right or wrong, from this address ...
        assert _log_in(Client(), "alice", "pw-alice").status_code == 429
        assert not _events(Action.LOGGED_IN)
        # One count for the account at this address: 5 codes, then 2 refused attempts (each
        # restarts the pause, as for passwords); nothing typed was kept in it.
        [attempt] = AccessAttempt.objects.all()
        assert (attempt.username, attempt.failures_since_start) == ("alice", 7)
        assert all(code not in attempt.post_data for code in wrong_codes(secret, 5))
        assert verify_chain().ok

    def test_the_lock_is_per_address_as_for_passwords(self, secret, user):
        attacker = _at_second_step(REMOTE_ADDR="198.51.100.1")
        for code in wrong_codes(secret, 5):
            attacker.post(CODE, {"code": code}, REMOTE_ADDR="198.51.100.1")
        owner = _at_second_step(REMOTE_ADDR="198.51.100.2")
        done = owner.post(CODE, {"code": totp_code(secret)}, REMOTE_ADDR="198.51.100.2")
        assert done["Location"] == reverse("threads_app:overview")

    def test_wrong_recovery_codes_count_and_a_right_one_is_refused_once_locked(self, secret, user):
        recovery = Authenticator.objects.get(user=user, type="recovery_codes")
        unused = recovery.wrap().get_unused_codes()[0]
        attacker, waiting = _at_second_step(), _at_second_step()
        answers = [attacker.post(CODE, {"code": f"{n:08x}"}) for n in range(6)]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 302]

        assert waiting.post(CODE, {"code": unused}).status_code == 429
        recovery.refresh_from_db()
        assert unused in recovery.wrap().get_unused_codes()  # refused unchecked: not spent
        assert len(_events(Action.LOGIN_FAILED, step="two-factor code")) == 4

    def test_fewer_than_5_wrong_codes_then_the_right_one_logs_in_and_clears_the_count(
        self, secret, user
    ):
        client = _at_second_step()
        for code in wrong_codes(secret, 4):
            assert client.post(CODE, {"code": code}).status_code == 200
        assert client.post(CODE, {"code": totp_code(secret)})["Location"] == (
            reverse("threads_app:overview")
        )
        assert not AccessAttempt.objects.exists()


class TestCodesOnTheReauthenticationPage:
    def test_5_wrong_codes_lock_and_then_the_right_code_does_not_reauthenticate(
        self, secret, user_client, user
    ):
        for n, code in enumerate(wrong_codes(secret, 5), 1):
            answer = user_client.post(REAUTH, {"code": code})
            assert answer.status_code == (429 if n == 5 else 200), n
        refused = user_client.post(REAUTH, {"code": totp_code(secret)})
        assert refused.status_code == 429
        failed = _events(Action.LOGIN_FAILED, step="reauthentication code")
        assert len(failed) == 4
        assert [e.details["step"] for e in _events(Action.LOCKED_OUT)] == [
            "reauthentication code"
        ] * 2
        # A log-in from this address is locked as well: one count per account and address.
        assert _log_in(Client(), "alice", "pw-alice").status_code == 429


class TestCaseVariants:
    def test_a_locked_user_cannot_log_in_under_another_case(self, make_user):
        make_user("viewer1")
        for typed in ("viewer1", "VIEWER1", "Viewer1", "vIEWER1", "viewer1"):
            _log_in(Client(), typed, "wrong")
        assert _log_in(Client(), "VIEWEr1", "pw-viewer1").status_code == 429
        assert _log_in(Client(), "viewer1", "pw-viewer1").status_code == 429
        [attempt] = AccessAttempt.objects.all()
        assert (attempt.username, attempt.failures_since_start) == ("viewer1", 7)

    def test_each_case_variant_is_recorded_against_the_account(self, make_user):
        viewer = make_user("viewer1")
        _log_in(Client(), "VIEWER1", "wrong")
        [failed] = _events(Action.LOGIN_FAILED)
        assert (failed.actor_id, failed.details["known_account"]) == (viewer.pk, True)


class TestClientAddressInTheAudit:
    @override_settings(TRUSTED_PROXY_COUNT=1)
    def test_behind_a_proxy_the_audit_names_the_client_as_the_lockout_does(self, user):
        proxy = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.7"}
        _log_in(Client(), "alice", "wrong", **proxy)
        assert AccessAttempt.objects.get().ip_address == "203.0.113.7"  # the lockout's
        _log_in(Client(), "alice", "pw-alice", **proxy)
        failed, logged_in = _events(Action.LOGIN_FAILED)[0], _events(Action.LOGGED_IN)[0]
        assert failed.client_ip == logged_in.client_ip == "203.0.113.7"
        assert verify_chain().ok

    def test_without_trusted_proxies_a_forwarded_header_is_not_believed(self, user):
        _log_in(
            Client(), "alice", "wrong", REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="1.2.3.4"
        )
        assert _events(Action.LOGIN_FAILED)[0].client_ip == "198.51.100.9"
