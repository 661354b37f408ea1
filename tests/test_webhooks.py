"""Webhooks (issue 19, item 3): endpoints registered, changed, rotated and deleted on their
pages (audited, the secret shown once), deliveries signed the Standard Webhooks way and sent
to a real HTTPS receiver on 127.0.0.1 (tests/webhook_fixtures.py), retried with backoff for
24 hours and then given up (the endpoint turned off, its owners emailed), URLs checked at
save time and at every delivery, and the events the app sends."""

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import TEST_KEY
from threads_app import webhook_http
from threads_app.audit import Origin
from threads_app.crypto import decrypt_secret
from threads_app.models import (
    AuditEvent,
    Membership,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from threads_app.services import webhooks
from threads_app.services.deletions import delete_thread
from threads_app.services.keys import note_key_result
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.services.retention import enforce_retention, set_retention_policy
from threads_app.upstream import AuthenticationError

Action = AuditEvent.Action
Event = WebhookEndpoint.Event
Status = WebhookDelivery.Status
Role = Membership.Role
LIST = reverse("threads_app:webhook_list")
CREATE = reverse("threads_app:webhook_create")


def _endpoint(actor, url, *, team=None, events=(Event.THREAD_DELETED,), **extra):
    return webhooks.create_endpoint(
        actor=actor, url=url, events=list(events), team=team, description="ops hook", **extra
    )


def _notify(user, data=None, event=Event.THREAD_DELETED):
    webhooks.notify(event=event, team=None, owner=user, data=data or {"thread_id": "thread_1"})


def _deliveries(endpoint):
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk"))


# --- signing ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_delivery_verifies_with_the_reference_library_and_by_hand(user, webhook_receiver):
    endpoint, secret = _endpoint(user, webhook_receiver.url())
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32

    _notify(user, {"thread_id": "thread_abc", "label": "Ticket 7"})
    assert webhooks.run_due_deliveries() == 1

    [received] = webhook_receiver.requests
    assert received.path == "/hook"
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["content-type"] == "application/json"
    payload = Webhook(secret).verify(received.body, headers)
    assert payload["type"] == "thread.deleted"
    assert payload["data"] == {"thread_id": "thread_abc", "label": "Ticket 7"}
    assert timezone.datetime.fromisoformat(payload["timestamp"])
    # The same signature computed independently: HMAC-SHA256 over "id.timestamp.body".
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{received.body.decode()}"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert abs(int(headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    [delivery] = _deliveries(endpoint)
    assert headers["webhook-id"] == delivery.message_id
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.DELIVERED,
        1,
        200,
    )
    # Another secret does not verify it.
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(received.body, headers)


@pytest.mark.django_db
def test_rotating_the_secret_signs_with_the_new_one_only(user, webhook_receiver):
    endpoint, old = _endpoint(user, webhook_receiver.url())
    endpoint, new = webhooks.rotate_secret(endpoint, actor=user)
    assert new != old and decrypt_secret(endpoint.secret_encrypted) == new

    _notify(user)
    webhooks.run_due_deliveries()

    [received] = webhook_receiver.requests
    assert Webhook(new).verify(received.body, received.headers)["type"] == "thread.deleted"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(received.body, received.headers)
    assert AuditEvent.objects.filter(action=Action.WEBHOOK_SECRET_ROTATED).count() == 1


# --- retries and giving up ---------------------------------------------------------------------


def test_the_backoff_doubles_with_jitter_up_to_its_cap():
    rng = random.Random(7)
    for attempts in range(1, 14):
        full = min(webhooks.FIRST_RETRY * 2 ** (attempts - 1), webhooks.LONGEST_RETRY)
        delays = {webhooks.retry_delay(attempts, rng=rng) for _ in range(20)}
        assert all(full / 2 <= delay <= full for delay in delays), attempts
        assert len(delays) > 1  # jittered
    assert webhooks.retry_delay(10**6) <= webhooks.LONGEST_RETRY


@pytest.mark.django_db
def test_a_receiver_answering_500_gets_its_retries_then_a_success_ends_them(user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    webhook_receiver.answer(500, 503)
    _notify(user)
    start = timezone.now()
    [delivery] = _deliveries(endpoint)

    webhooks.run_due_deliveries(now=start)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        Status.PENDING,
        1,
        500,
    )
    assert delivery.last_error == "Answered 500."
    first_wait = delivery.next_attempt_at - start
    assert webhooks.FIRST_RETRY / 2 <= first_wait <= webhooks.FIRST_RETRY
    # Not due yet: nothing is sent.
    assert webhooks.run_due_deliveries(now=start + first_wait / 2) == 0
    assert len(webhook_receiver.requests) == 1

    webhooks.run_due_deliveries(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (2, 503)
    webhooks.run_due_deliveries(now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (Status.DELIVERED, 3, "")
    assert len(webhook_receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in webhook_receiver.requests}) == 1
    assert list(
        WebhookAttempt.objects.filter(delivery=delivery)
        .order_by("attempted_at")
        .values_list("status_code", flat=True)
    ) == [500, 503, 200]


@pytest.mark.django_db
def test_after_24_hours_of_failures_the_endpoint_is_disabled_and_its_owners_emailed(
    make_user, make_team, webhook_receiver, django_capture_on_commit_callbacks
):
    owner, co_owner, member = make_user("olga"), make_user("omar"), make_user("mel")
    team = make_team(members={owner: Role.OWNER, co_owner: Role.OWNER, member: Role.MEMBER})
    endpoint, secret = _endpoint(owner, webhook_receiver.url(), team=team)
    webhook_receiver.default = 500
    webhooks.notify(event=Event.THREAD_DELETED, team=team, owner=None, data={"thread_id": "t"})
    webhooks.notify(event=Event.THREAD_DELETED, team=team, owner=None, data={"thread_id": "u"})
    first, second = _deliveries(endpoint)
    start = first.created_at
    # The second one waits: only the first is driven through its day.
    WebhookDelivery.objects.filter(pk=second.pk).update(next_attempt_at=start + timedelta(days=9))

    now, waits = start, []
    while True:
        with django_capture_on_commit_callbacks(execute=True):  # the email, once committed
            webhooks.deliver(first.pk, now=now)
        first.refresh_from_db()
        if first.status != Status.PENDING:
            break
        waits.append(first.next_attempt_at - now)
        now = first.next_attempt_at
    assert first.status == Status.FAILED
    assert now == start + webhooks.RETRY_FOR  # the last attempt is at the end of the day
    assert first.attempts == len(webhook_receiver.requests) == len(waits) + 1
    assert 10 <= first.attempts <= 20
    assert max(waits) <= webhooks.LONGEST_RETRY
    assert waits[1] > waits[0]  # backing off

    endpoint.refresh_from_db()
    assert not endpoint.enabled and "24 hours" in endpoint.disabled_reason
    second.refresh_from_db()
    assert second.status == Status.FAILED and "turned off" in second.last_error
    [email] = mail.outbox
    assert sorted(email.to) == ["olga@example.test", "omar@example.test"]
    assert "ops hook" in email.subject and "127.0.0.1" in email.body
    assert secret not in email.body and endpoint.url not in email.body
    [disabled] = AuditEvent.objects.filter(action=Action.WEBHOOK_DISABLED)
    assert (disabled.team_id, disabled.actor_id) == (team.pk, None)
    # Nothing more is recorded or sent while it is off.
    webhooks.notify(event=Event.THREAD_DELETED, team=team, owner=None, data={"thread_id": "v"})
    assert len(_deliveries(endpoint)) == 2
    assert webhooks.run_due_deliveries(now=now + timedelta(days=30)) == 0


# --- URL safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # shared address space (carrier NAT)
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address to refuse, not bound)
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("93.184.215.14", None),
        ("2606:4700::1111", None),
        ("::ffff:93.184.215.14", None),
    ],
)
def test_which_addresses_are_refused(address, problem):
    assert webhook_http.address_problem(ipaddress.ip_address(address), allow_private=False) == (
        problem
    )
    # WEBHOOK_ALLOW_PRIVATE lets private and loopback addresses through, nothing else.
    allowed = webhook_http.address_problem(ipaddress.ip_address(address), allow_private=True)
    assert allowed == (None if problem in ("loopback", "private") else problem)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
        ("https://localhost:8443/hook", "localhost resolves to 127.0.0.1, which is a loopback"),
        ("https://[::1]/hook", "::1 is a loopback address"),
        ("https://[::ffff:7f00:1]/hook", "loopback"),
        ("https://10.0.0.5/hook", "private address"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://2130706433/", "loopback"),  # 127.0.0.1 as one number
        ("http://93.184.215.14/hook", "Only https://"),
        ("ftp://93.184.215.14/hook", "Only https://"),
        ("https://user:pw@93.184.215.14/hook", "user name and password"),
        ("https://no-such-host.invalid/hook", "cannot be found"),
        ("https://93.184.215.14:99999/", "not valid"),
    ],
)
def test_unsafe_urls_are_refused_at_save_time(settings, user, url, words):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(webhook_http.RefusedURL, match=words):
        webhook_http.check_url(url)


@hypothesis_settings(max_examples=300, deadline=None)
@given(address=st.ip_addresses())
def test_an_ip_literal_is_accepted_exactly_when_its_address_is(address):
    """No DNS: the URL's own address is the one judged (public ones pass, nothing else)."""
    host = f"[{address}]" if address.version == 6 else str(address)
    try:
        target = webhook_http.check_url(f"https://{host}:8443/x?y=1")
    except webhook_http.RefusedURL:
        assert webhook_http.address_problem(address, allow_private=True) is not None
    else:
        assert webhook_http.address_problem(address, allow_private=True) is None
        assert (target.addresses, target.port, target.path) == ((address,), 8443, "/x?y=1")


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    url=st.one_of(
        st.text(max_size=60),
        st.text(alphabet="0123456789abcdef.:[]@%/?#-", max_size=40).map("https://".__add__),
    )
)
def test_any_url_is_checked_or_refused_with_a_message(url):
    """Whatever is typed or stored, the check answers with a target or a `RefusedURL`."""
    try:
        webhook_http.check_url(url)
    except webhook_http.RefusedURL as refusal:
        assert str(refusal)


@pytest.mark.django_db
def test_the_form_refuses_a_private_address_and_http_with_the_reason(settings, client, user):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(user)
    for url, words in [
        ("https://192.168.0.10/hook", "192.168.0.10 is a private address"),
        ("http://93.184.215.14/hook", "Only https:// URLs are allowed"),
    ]:
        response = client.post(CREATE, {"url": url, "events": ["thread.deleted"]})
        assert response.status_code == 200
        assert words in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action=Action.WEBHOOK_CREATED).exists()


@pytest.mark.django_db
def test_a_private_address_is_refused_at_delivery_too(settings, user, webhook_receiver):
    """Saved while allowed (or while the name resolved elsewhere): checked again before the
    attempt, and nothing is sent."""
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    settings.WEBHOOK_ALLOW_PRIVATE = False
    _notify(user)
    webhooks.run_due_deliveries()

    [delivery] = _deliveries(endpoint)
    assert webhook_receiver.requests == []
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert delivery.last_status_code is None
    assert delivery.last_error.startswith("127.0.0.1 is a loopback address")


@pytest.mark.django_db
def test_http_is_refused_at_delivery(user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        url=webhook_receiver.url().replace("https:", "http:")
    )
    _notify(user)
    webhooks.run_due_deliveries()
    [delivery] = _deliveries(endpoint)
    assert webhook_receiver.requests == [] and "Only https://" in delivery.last_error


@pytest.mark.django_db
def test_a_redirect_is_not_followed(user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    webhook_receiver.answer(302)
    _notify(user)
    webhooks.run_due_deliveries()

    assert [r.path for r in webhook_receiver.requests] == ["/hook"]  # never /elsewhere
    [delivery] = _deliveries(endpoint)
    assert (delivery.status, delivery.last_status_code) == (Status.PENDING, 302)
    assert delivery.last_error == "Answered 302: a redirect, not followed."


@pytest.mark.django_db
def test_a_certificate_not_trusted_is_a_failed_attempt(settings, user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    settings.WEBHOOK_CA_BUNDLE = None  # the system's store, which does not know the tests' CA
    _notify(user)
    webhooks.run_due_deliveries()
    [delivery] = _deliveries(endpoint)
    assert webhook_receiver.requests == []
    assert delivery.last_error.startswith("TLS failed with 127.0.0.1")
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.last_error


@pytest.mark.django_db
def test_a_receiver_that_is_down_is_a_failed_attempt_naming_the_address(user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    webhook_receiver.close()
    _notify(user)
    webhooks.run_due_deliveries()
    [delivery] = _deliveries(endpoint)
    assert delivery.last_error.startswith("Could not connect to port")
    assert "127.0.0.1" in delivery.last_error and "/hook" not in delivery.last_error


# --- send again ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_send_again_sends_the_same_message_now(client, user, webhook_receiver):
    endpoint, secret = _endpoint(user, webhook_receiver.url())
    _notify(user)
    webhooks.run_due_deliveries()
    [delivery] = _deliveries(endpoint)
    client.force_login(user)

    with pytest.MonkeyPatch.context() as patch:
        queued = []
        patch.setattr(webhooks, "_queue", queued.append)
        response = client.post(reverse("threads_app:webhook_resend", args=[delivery.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("threads_app:webhook_detail", args=[endpoint.pk])
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING
    webhooks.run_due_deliveries()

    first, again = webhook_receiver.requests
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == delivery.message_id
    assert first.body == again.body
    assert Webhook(secret).verify(again.body, again.headers)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.DELIVERED, 2)
    [resent] = AuditEvent.objects.filter(action=Action.WEBHOOK_RESENT)
    assert resent.details["message_id"] == delivery.message_id


@pytest.mark.django_db
def test_send_again_to_a_disabled_endpoint_is_refused(user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    _notify(user)
    webhooks.run_due_deliveries()
    [delivery] = _deliveries(endpoint)
    webhooks.update_endpoint(
        endpoint,
        actor=user,
        url=endpoint.url,
        events=endpoint.events,
        description="",
        enabled=False,
    )
    with pytest.raises(Refused) as refusal:
        webhooks.send_again(delivery, actor=user)
    assert refusal.value.code == "webhook_disabled"


# --- permissions, pages, audit, secrecy ----------------------------------------------------


@pytest.mark.django_db
def test_a_teams_owners_manage_its_endpoints_members_and_viewers_look(
    client, make_user, make_team, webhook_receiver
):
    owner, member, viewer, outsider = (make_user(n) for n in ("own", "mem", "vie", "out"))
    team = make_team(members={owner: Role.OWNER, member: Role.MEMBER, viewer: Role.VIEWER})
    token_url = webhook_receiver.url("/hooks/T0/receiver-token-123")
    form = {"url": token_url, "events": ["job.finished"], "team": team.pk}

    for someone in (member, viewer):
        client.force_login(someone)
        response = client.post(CREATE, form)
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
        with pytest.raises(NotAllowed):
            _endpoint(someone, webhook_receiver.url(), team=team)
    client.force_login(owner)
    response = client.post(CREATE, {**form, "description": "CI"})
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(team=team)
    detail = reverse("threads_app:webhook_detail", args=[endpoint.pk])
    edit = reverse("threads_app:webhook_edit", args=[endpoint.pk])
    for someone in (member, viewer):
        client.force_login(someone)
        page = client.get(detail)
        assert page.status_code == 200 and "CI" in page.content.decode()
        assert "Rotate secret" not in page.content.decode()
        # The receiver's own token, in its URL's path, is for those who may change it.
        for shown in (page, client.get(LIST)):
            assert "receiver-token-123" not in shown.content.decode()
            assert endpoint.url_origin in shown.content.decode()
        assert client.get(edit).status_code == 403
        with pytest.raises(NotAllowed):
            webhooks.rotate_secret(endpoint, actor=someone)
    client.force_login(owner)
    assert "receiver-token-123" in client.get(detail).content.decode()
    client.force_login(outsider)
    assert client.get(detail).status_code == 404
    assert "CI" not in client.get(LIST).content.decode()


@pytest.mark.django_db
def test_a_personal_endpoint_is_its_owners_alone(client, user, other_user, webhook_receiver):
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    client.force_login(other_user)
    for name in ("webhook_detail", "webhook_edit", "webhook_rotate", "webhook_delete"):
        assert client.get(reverse(f"threads_app:{name}", args=[endpoint.pk])).status_code == 404
    with pytest.raises(NotAllowed):
        webhooks.delete_endpoint(endpoint, actor=other_user)
    # Events of someone else's personal keys never reach it.
    _notify(other_user)
    assert _deliveries(endpoint) == []


@pytest.mark.django_db
def test_register_edit_rotate_delete_through_the_pages_audited_and_the_secret_shown_once(
    client, user, webhook_receiver, caplog
):
    caplog.set_level(logging.DEBUG)
    client.force_login(user)
    url = webhook_receiver.url("/hook?token=receiver-own-token")
    response = client.post(
        CREATE, {"url": url, "events": ["thread.deleted", "key.failing"], "description": "Pager"}
    )
    assert response.status_code == 200
    secret = response.context["secret"]
    assert secret in response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.owner, endpoint.team, endpoint.events) == (
        user,
        None,
        ["thread.deleted", "key.failing"],
    )
    assert secret not in endpoint.secret_encrypted
    detail = reverse("threads_app:webhook_detail", args=[endpoint.pk])

    edit = reverse("threads_app:webhook_edit", args=[endpoint.pk])
    response = client.post(
        edit, {"url": url, "events": ["job.finished"], "description": "Pager 2", "enabled": "on"}
    )
    assert response.status_code == 302 and response["Location"] == detail
    rotate = reverse("threads_app:webhook_rotate", args=[endpoint.pk])
    assert "Rotate the secret" in client.get(rotate).content.decode()
    rotated = client.post(rotate)
    new_secret = rotated.context["secret"]
    assert new_secret != secret and new_secret in rotated.content.decode()

    pages = [client.get(page) for page in (LIST, detail, edit, rotate)]
    delete = reverse("threads_app:webhook_delete", args=[endpoint.pk])
    pages.append(client.get(delete))
    assert "Delete “Pager 2”?" in pages[-1].content.decode()
    assert client.post(delete)["Location"] == LIST
    assert not WebhookEndpoint.objects.exists()
    audit_page = client.get(reverse("threads_app:audit_list"))
    pages.append(audit_page)
    for label in ("Webhook endpoint registered", "Webhook secret rotated", "endpoint deleted"):
        assert label in audit_page.content.decode()

    events = list(AuditEvent.objects.filter(action__startswith="webhook.").order_by("sequence"))
    assert [event.action for event in events] == [
        Action.WEBHOOK_CREATED,
        Action.WEBHOOK_UPDATED,
        Action.WEBHOOK_SECRET_ROTATED,
        Action.WEBHOOK_DELETED,
    ]
    assert all(event.owner_id == user.pk and event.actor_id == user.pk for event in events)
    assert events[0].details["host"] == "127.0.0.1"
    assert events[1].details["before"]["events"] == ["thread.deleted", "key.failing"]
    for text in [
        *(page.content.decode() for page in pages),
        *(json.dumps(event.details) for event in events),
        caplog.text,
    ]:
        assert secret not in text and new_secret not in text
    for event in events:  # the URL's query may be the receiver's own secret
        assert "receiver-own-token" not in json.dumps(event.details)


def test_the_log_filter_redacts_a_webhook_secret_too():
    from threads_app.redaction import RedactSecretsFilter

    secret = webhooks.new_secret()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s here", (secret,), None)
    assert RedactSecretsFilter().filter(record)
    assert record.getMessage() == "got [redacted] here"


@pytest.mark.django_db
def test_the_form_says_what_is_missing(client, user):
    client.force_login(user)
    response = client.post(CREATE, {"url": "not a url", "events": ["no.such"]})
    text = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid URL." in text and "Select a valid choice" in text
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_the_list_and_the_page_show_deliveries_and_their_errors(client, user, webhook_receiver):
    client.force_login(user)
    assert "No webhook endpoints yet" in client.get(LIST).content.decode()
    endpoint, _ = _endpoint(user, webhook_receiver.url())
    detail = reverse("threads_app:webhook_detail", args=[endpoint.pk])
    assert "Nothing sent yet" in client.get(detail).content.decode()
    webhook_receiver.answer(500)
    _notify(user)
    webhooks.run_due_deliveries()
    text = client.get(detail).content.decode()
    assert "thread.deleted" in text and "Answered 500." in text and "pending" in text
    assert "Send again" in text and "next try" in text
    assert 'hx-trigger="every 5s"' in text  # refreshes itself while one is pending
    # An htmx request gets the deliveries alone.
    partial = client.get(detail, headers={"HX-Request": "true"}).content.decode()
    assert partial.lstrip().startswith('<section id="deliveries"')


@pytest.mark.django_db
def test_at_most_20_endpoints_each(user):
    for n in range(webhooks.MAX_ENDPOINTS):
        _endpoint(user, f"https://127.0.0.1/{n}")
    with pytest.raises(Refused) as refusal:
        _endpoint(user, "https://127.0.0.1/one-more")
    assert refusal.value.code == "webhook_limit"


# --- the events the app sends --------------------------------------------------------------------


def _payloads(receiver):
    return [json.loads(r.body) for r in receiver.requests]


@pytest.mark.django_db(transaction=True)
def test_a_deleted_thread_is_told_to_the_keys_endpoints_only(
    user, other_user, api_key, make_thread, webhook_receiver, immediate_tasks
):
    mine, _ = _endpoint(user, webhook_receiver.url(), events=[Event.THREAD_DELETED])
    _endpoint(other_user, webhook_receiver.url("/theirs"), events=[Event.THREAD_DELETED])
    _endpoint(user, webhook_receiver.url("/jobs"), events=[Event.JOB_FINISHED])
    thread = make_thread(api_key, label="Customer 42")

    delete_thread(thread, actor=user, origin=Origin(ip="203.0.113.9"))

    [payload] = _payloads(webhook_receiver)  # delivered by the task, once committed
    assert [r.path for r in webhook_receiver.requests] == ["/hook"]
    assert payload["type"] == "thread.deleted"
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED)
    assert payload["data"] == {
        "thread_id": thread.thread_id,
        "label": "Customer 42",
        "key_id": api_key.pk,
        "key_label": api_key.label,
        "team_id": None,
        "outcome": "success",
        "audit_sequence": outcome.sequence,
        "job_id": None,
    }
    assert TEST_KEY not in webhook_receiver.requests[0].body.decode()
    assert _deliveries(mine)[0].status == Status.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_a_thread_already_gone_is_told_and_a_deletion_that_failed_is_not(
    user, api_key, make_thread, emulator, webhook_receiver, immediate_tasks
):
    endpoint, _ = _endpoint(user, webhook_receiver.url(), events=[Event.THREAD_DELETED])
    gone, kept, broken = (make_thread(api_key, label=name) for name in ("gone", "kept", "broken"))
    emulator.remove_thread(gone.thread_id)
    delete_thread(gone, actor=user)
    emulator.add_fault(method="DELETE", path="*", kind="not_deleted")
    delete_thread(kept, actor=user)
    emulator.add_fault(method="DELETE", path="*", status=500, times=10)
    delete_thread(broken, actor=user)

    [payload] = _payloads(webhook_receiver)
    assert (payload["data"]["label"], payload["data"]["outcome"]) == ("gone", "already_gone")
    assert len(_deliveries(endpoint)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_retention_run_tells_of_itself_its_deletions_and_its_finished_job(
    user, make_team, make_key, make_thread, webhook_receiver, immediate_tasks
):
    team = make_team(members={user: Role.OWNER})
    key = make_key(team=team, created_by=user, label="team key")
    _endpoint(
        user,
        webhook_receiver.url(),
        team=team,
        events=[Event.RETENTION_ENFORCED, Event.THREAD_DELETED, Event.JOB_FINISHED],
    )
    old = [make_thread(key, label=f"old {n}", tracked_by=user) for n in range(2)]
    for thread in old:
        type(thread).objects.filter(pk=thread.pk).update(
            upstream_created_at=timezone.now() - timedelta(days=40)
        )
    policy = set_retention_policy(key, actor=user, max_age_days=30, enabled=True, previewed_days=30)

    enforce_retention()

    by_type = {}
    for payload in _payloads(webhook_receiver):
        by_type.setdefault(payload["type"], []).append(payload["data"])
    [enforced] = by_type["retention.enforced"]
    assert enforced["policy_id"] == policy.pk and enforced["threads"] == 2
    assert enforced["team_id"] == team.pk and enforced["key_label"] == "team key"
    assert sorted(d["label"] for d in by_type["thread.deleted"]) == ["old 0", "old 1"]
    assert {d["job_id"] for d in by_type["thread.deleted"]} == {enforced["job_id"]}
    [finished] = by_type["job.finished"]
    assert finished["job_id"] == enforced["job_id"] and finished["policy_id"] == policy.pk
    assert finished["outcomes"]["deleted"] == 2


@pytest.mark.django_db
def test_a_key_turning_failing_is_told_once(
    user, make_team, make_key, webhook_receiver, django_capture_on_commit_callbacks
):
    team = make_team(members={user: Role.OWNER})
    key = make_key(team=team, created_by=user, label="prod key")
    endpoint, _ = _endpoint(user, webhook_receiver.url(), team=team, events=[Event.KEY_FAILING])
    rejected = AuthenticationError(f"Incorrect API key provided: {TEST_KEY[:12]}***", status=401)
    with django_capture_on_commit_callbacks() as queued:
        note_key_result(key, rejected)
        note_key_result(key, rejected)  # still failing: not told again
    assert len(queued) == 1
    [delivery] = _deliveries(endpoint)
    assert json.loads(delivery.body)["data"] == {
        "key_id": key.pk,
        "key_label": "prod key",
        "team_id": team.pk,
    }
    assert TEST_KEY[:12] not in delivery.body
    note_key_result(key)  # working again
    note_key_result(key, rejected)  # failing again: told again
    assert len(_deliveries(endpoint)) == 2


@pytest.mark.django_db(transaction=True)
def test_the_worker_task_retries_later_through_the_queue(user, webhook_receiver):
    """With the database backend: the first attempt is queued on commit, and a failed one
    queues its retry for when its backoff is over (`run_after`)."""
    from django_tasks_db.models import DBTaskResult

    from threads_app.tasks import deliver_webhooks_task

    endpoint, _ = _endpoint(user, webhook_receiver.url())
    webhook_receiver.answer(500)
    _notify(user)
    [delivery] = _deliveries(endpoint)
    [queued] = DBTaskResult.objects.all()
    assert queued.args_kwargs["kwargs"] == {"delivery_ids": [delivery.pk]}

    assert deliver_webhooks_task.call(delivery_ids=[delivery.pk]) == {
        "deliveries": 1,
        "to_retry": 1,
    }
    delivery.refresh_from_db()
    retry = DBTaskResult.objects.exclude(pk=queued.pk).get()
    assert retry.run_after == delivery.next_attempt_at
    assert retry.args_kwargs["kwargs"] == {"delivery_ids": [delivery.pk]}


@pytest.mark.django_db(transaction=True)
def test_the_sweep_queues_again_a_delivery_whose_task_was_lost(user, webhook_receiver):
    from django_tasks_db.models import DBTaskResult

    from threads_app.tasks import sweep

    endpoint, _ = _endpoint(user, webhook_receiver.url())
    _notify(user)
    [delivery] = _deliveries(endpoint)
    DBTaskResult.objects.all().delete()  # its task is gone (a worker killed with -9)
    sweep()
    assert not DBTaskResult.objects.exists()  # not overdue yet

    long_ago = timezone.now() - webhooks.OVERDUE - timedelta(seconds=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=long_ago)
    sweep()
    sweep()  # once per OVERDUE at most
    [queued] = DBTaskResult.objects.all()
    assert queued.args_kwargs["kwargs"] == {"delivery_ids": [delivery.pk]}
    webhooks.run_due_deliveries()
    assert len(webhook_receiver.requests) == 1


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://hooks.example.com/services/T0/B0/secret", "https://hooks.example.com/…"),
        ("https://hooks.example.com/?token=secret", "https://hooks.example.com/…"),
        ("https://hooks.example.com", "https://hooks.example.com"),
        ("https://hooks.example.com:8443/", "https://hooks.example.com:8443"),
        ("https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/…"),
    ],
)
def test_the_url_shown_to_lookers_keeps_its_origin_only(url, origin):
    assert WebhookEndpoint(url=url).url_origin == origin
    assert str(WebhookEndpoint(url=url)) == origin
