"""Webhooks: endpoints registered, changed, rotated and deleted (each audited), events recorded
as deliveries (`notify`), and deliveries tried by the worker until they are answered.

A message follows Standard Webhooks: the body is `{"type", "timestamp", "data"}` (ids and
labels only, never a secret), signed with the endpoint's secret (`whsec_` and 32 random bytes
in base64, kept encrypted like an API key, shown only when made or rotated) in the headers
`webhook-id` (the delivery's, the same on every attempt), `webhook-timestamp` and
`webhook-signature` (the `standardwebhooks` package signs). A delivery that is not answered
2xx is tried again with exponential backoff and jitter (`retry_delay`) until RETRY_FOR has
passed since it was made (or sent again); then it has failed, its endpoint is disabled and
the endpoint's owners are emailed. Tasks are queued through the function `tasks.register`
gives (`queue_deliveries_with`): services never import tasks.
"""

import base64
import json
import logging
import random
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from standardwebhooks import Webhook

from threads_app import audit, selectors, webhook_http
from threads_app.audit import Origin
from threads_app.crypto import DecryptionError, decrypt_secret, encrypt_secret
from threads_app.models import AuditEvent, Team, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from threads_app.services.refusals import NotAllowed, Refused

logger = logging.getLogger(__name__)

Action = AuditEvent.Action
Event = WebhookEndpoint.Event
Status = WebhookDelivery.Status
EVENTS = tuple(Event.values)
SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=4)
CLAIM = timedelta(minutes=2)  # an attempt under way holds its delivery this long
OVERDUE = timedelta(minutes=10)  # due this long ago and not tried: its task was lost
USER_AGENT = "ThreadsConsole-Webhooks/1"
MAX_ENDPOINTS = 20  # per team, and per user for their own


class WebhookRefused(Refused):
    default_code = "webhook_refused"


def _queue_nothing(delivery_ids: list[int]) -> None:
    raise RuntimeError("No task queue: threads_app.tasks.register() was not called.")


_queue: Callable[[list[int]], None] = _queue_nothing


def queue_deliveries_with(queue: Callable[[list[int]], None]) -> None:
    """Set how deliveries are handed to the worker (`tasks.register` does, at start)."""
    global _queue
    _queue = queue


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


# --- endpoints ---------------------------------------------------------------------------


def _checked_url(url: str) -> str:
    try:
        webhook_http.check_url(url)
    except webhook_http.RefusedURL as refusal:
        raise WebhookRefused(str(refusal), field="url", code="webhook_url_refused") from None
    return url


def _checked_events(events: Sequence[str]) -> list[str]:
    unknown = set(events) - set(EVENTS)
    if unknown or not events:
        raise WebhookRefused(
            f"Events are {', '.join(EVENTS)}; choose at least one.",
            field="events",
            code="webhook_events",
        )
    return [event for event in EVENTS if event in events]


def _record(
    endpoint: WebhookEndpoint,
    action: str,
    *,
    actor: User | None,
    origin: Origin | None,
    **details: object,
) -> None:
    """An endpoint's audit row, in its team's log or its owner's: the URL's host only (its
    path may hold the receiver's token), never the secret."""
    audit.record(
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor=actor,
        team=endpoint.team,
        owner=endpoint.owner if endpoint.team is None else None,
        origin=origin,
        details={
            "endpoint": endpoint.pk,
            "host": urlsplit(endpoint.url).hostname or "",
            "description": endpoint.description,
            **details,
        },
    )


@sensitive_variables("secret")
def create_endpoint(
    *,
    actor: User,
    url: str,
    events: Sequence[str],
    description: str = "",
    team: Team | None = None,
    origin: Origin | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint of the team (its owners only) or the actor's own (team None).
    Returns it and its secret: the only time the secret leaves the database."""
    if team is not None and not selectors.is_team_owner(actor, team):
        raise NotAllowed("Only the team's owners can register its webhook endpoints.")
    mine = WebhookEndpoint.objects.filter(team=team) if team else actor.webhook_endpoints.all()
    if mine.count() >= MAX_ENDPOINTS:
        raise WebhookRefused(
            f"At most {MAX_ENDPOINTS} endpoints each: delete one first.", code="webhook_limit"
        )
    chosen = _checked_events(events)
    _checked_url(url)
    secret = new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            team=team,
            owner=None if team else actor,
            created_by=actor,
            url=url,
            description=description,
            events=chosen,
            secret_encrypted=encrypt_secret(secret),
        )
        _record(endpoint, Action.WEBHOOK_CREATED, actor=actor, origin=origin, events=chosen)
    return endpoint, secret


def _refuse_unless_manager(actor: User, endpoint: WebhookEndpoint) -> None:
    if not selectors.manageable_webhooks(actor).filter(pk=endpoint.pk).exists():
        raise NotAllowed("Only the team's owners (or the endpoint's owner) can change it.")


def update_endpoint(
    endpoint: WebhookEndpoint,
    *,
    actor: User,
    url: str,
    events: Sequence[str],
    description: str,
    enabled: bool,
    origin: Origin | None = None,
) -> WebhookEndpoint:
    """Change what the endpoint is sent and where. Turning it off fails what it still had
    to deliver; turning it on again clears why it was off."""
    _refuse_unless_manager(actor, endpoint)
    chosen = _checked_events(events)
    _checked_url(url)
    before = {
        "host": urlsplit(endpoint.url).hostname or "",
        "url_changed": url != endpoint.url,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
    }
    with transaction.atomic():
        endpoint.url, endpoint.events, endpoint.description = url, chosen, description
        if enabled and not endpoint.enabled:
            endpoint.disabled_reason = ""
        endpoint.enabled = enabled
        endpoint.save(update_fields=["url", "events", "description", "enabled", "disabled_reason"])
        if not enabled:
            _fail_pending(endpoint, "The endpoint was turned off before this was delivered.")
        _record(
            endpoint,
            Action.WEBHOOK_UPDATED,
            actor=actor,
            origin=origin,
            before=before,
            events=chosen,
            enabled=enabled,
        )
    return endpoint


@sensitive_variables("secret")
def rotate_secret(
    endpoint: WebhookEndpoint, *, actor: User, origin: Origin | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret signs every attempt from now on (the old one no longer verifies).
    Returns the endpoint and the new secret, shown once."""
    _refuse_unless_manager(actor, endpoint)
    secret = new_secret()
    with transaction.atomic():
        endpoint.secret_encrypted = encrypt_secret(secret)
        endpoint.secret_rotated_at = timezone.now()
        endpoint.save(update_fields=["secret_encrypted", "secret_rotated_at"])
        _record(endpoint, Action.WEBHOOK_SECRET_ROTATED, actor=actor, origin=origin)
    return endpoint, secret


def delete_endpoint(
    endpoint: WebhookEndpoint, *, actor: User, origin: Origin | None = None
) -> WebhookEndpoint:
    """Delete the endpoint and its deliveries (the audit row stays)."""
    _refuse_unless_manager(actor, endpoint)
    with transaction.atomic():
        _record(endpoint, Action.WEBHOOK_DELETED, actor=actor, origin=origin)
        endpoint.delete()
    return endpoint


def send_again(
    delivery: WebhookDelivery,
    *,
    actor: User,
    origin: Origin | None = None,
    now: datetime | None = None,
) -> WebhookDelivery:
    """Try the delivery again now, with the same `webhook-id` (a receiver that has it
    already may ignore it), and for another RETRY_FOR if it fails."""
    endpoint = delivery.endpoint
    _refuse_unless_manager(actor, endpoint)
    if not endpoint.enabled:
        raise WebhookRefused(
            "The endpoint is turned off: turn it on to send it anything.", code="webhook_disabled"
        )
    now = now or timezone.now()
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=Status.PENDING, next_attempt_at=now, give_up_at=now + RETRY_FOR
        )
        _record(
            endpoint,
            Action.WEBHOOK_RESENT,
            actor=actor,
            origin=origin,
            message_id=delivery.message_id,
            event=delivery.event,
        )
        transaction.on_commit(partial(_queue, [delivery.pk]))
    delivery.refresh_from_db()
    return delivery


# --- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One event for the endpoints of a team (`team_id`) or, for none, of a user (`owner_id`)."""

    team_id: int | None
    owner_id: int | None
    data: dict[str, Any]


def notify(*, event: str, team: Team | None, owner: User | None, data: dict[str, Any]) -> None:
    """Record one delivery of `event` per enabled endpoint of the team subscribed to it (or
    of the owner's own endpoints, for no team), and queue them once the transaction commits.
    `data` holds ids and labels only: never a secret."""
    notify_each(
        event=event,
        notices=[
            Notice(team.pk if team else None, owner.pk if owner and team is None else None, data)
        ],
    )


def notify_each(
    *, event: str, notices: Sequence[Notice], now: datetime | None = None
) -> list[WebhookDelivery]:
    """`notify` for many events of one type at once (a bulk job's batch): one query for the
    endpoints, one insert, one task. Returns the deliveries recorded."""
    if event not in EVENTS:
        raise ValueError(f"Unknown webhook event {event!r}.")
    team_ids = {notice.team_id for notice in notices if notice.team_id is not None}
    owner_ids = {
        notice.owner_id
        for notice in notices
        if notice.team_id is None and notice.owner_id is not None
    }
    subscribed: dict[tuple[int | None, int | None], list[WebhookEndpoint]] = {}
    for endpoint in selectors.enabled_webhooks(team_ids=team_ids, owner_ids=owner_ids):
        if event in endpoint.events:
            subscribed.setdefault((endpoint.team_id, endpoint.owner_id), []).append(endpoint)
    now = now or timezone.now()
    deliveries = []
    for notice in notices:
        scope = (notice.team_id, None) if notice.team_id is not None else (None, notice.owner_id)
        endpoints = subscribed.get(scope, [])
        if not endpoints:
            continue
        body = json.dumps(
            {"type": event, "timestamp": now.isoformat(), "data": notice.data},
            separators=(",", ":"),
        )
        deliveries += [
            WebhookDelivery(
                endpoint=endpoint,
                message_id=f"msg_{uuid.uuid4().hex}",
                event=event,
                body=body,
                created_at=now,
                next_attempt_at=now,
                give_up_at=now + RETRY_FOR,
            )
            for endpoint in endpoints
        ]
    if not deliveries:
        return []
    WebhookDelivery.objects.bulk_create(deliveries)
    transaction.on_commit(partial(_queue, [delivery.pk for delivery in deliveries]))
    return deliveries


# --- delivery --------------------------------------------------------------------------------


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """How long after its `attempts`-th failed attempt a delivery is tried again: doubling
    from FIRST_RETRY up to LONGEST_RETRY, less a random part of up to a half (jitter: the
    retries of many deliveries failing together spread out)."""
    full = min(FIRST_RETRY * (1 << min(max(attempts - 1, 0), 20)), LONGEST_RETRY)
    jitter: float = (rng or random).random() / 2
    return full * (1 - jitter)


def deliver(delivery_id: int, *, now: datetime | None = None) -> datetime | None:
    """Try the delivery once, if it is pending and due at `now` and its endpoint is enabled.
    Returns when to try again (None: delivered, failed for good, or not tried)."""
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
    ).update(next_attempt_at=now + CLAIM)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    status_code, error = _send(delivery)
    answered = status_code is not None and 200 <= status_code < 300
    attempts = delivery.attempts + 1
    next_at: datetime | None = None
    status = Status.DELIVERED if answered else Status.PENDING
    if not answered:
        if now >= delivery.give_up_at:
            status = Status.FAILED
        else:
            next_at = min(now + retry_delay(attempts), delivery.give_up_at)
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=now, status_code=status_code, error=error
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=F("attempts") + 1,
            last_attempt_at=now,
            last_status_code=status_code,
            last_error=error,
            next_attempt_at=next_at,
        )
        if status == Status.FAILED:
            _disable_after_failing(delivery.endpoint, now=now)
    return next_at


def run_due_deliveries(*, now: datetime | None = None) -> int:
    """Try every delivery due at `now` (pending, its time come, its endpoint enabled), one
    after the other; how many were due. For tests driving the schedule with a clock, and for
    an operator catching up by hand; the worker tries each when its task comes due."""
    now = now or timezone.now()
    due = selectors.due_webhook_delivery_ids(now)
    for pk in due:
        deliver(pk, now=now)
    return len(due)


def take_overdue(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """The deliveries due more than OVERDUE ago and still not tried, whose task was lost (its
    worker died, or stopped before queueing the retry): their time moved to `now`, so the
    worker's sweep, which queues them again, finds each once per OVERDUE at most."""
    now = now or timezone.now()
    overdue = WebhookDelivery.objects.filter(
        status=Status.PENDING, next_attempt_at__lt=now - OVERDUE, endpoint__enabled=True
    )
    ids = list(overdue.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    overdue.filter(pk__in=ids).update(next_attempt_at=now)
    return ids


@sensitive_variables("secret")
def _send(delivery: WebhookDelivery) -> tuple[int | None, str]:
    """POST the delivery, signed now: the answer's status, and what went wrong if anything."""
    endpoint = delivery.endpoint
    try:
        target = webhook_http.check_url(endpoint.url)
        secret = decrypt_secret(endpoint.secret_encrypted)
        sent_at = timezone.now()  # the receiver's clock checks this: the real time, always
        signature = Webhook(secret).sign(delivery.message_id, sent_at, delivery.body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery.message_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        status_code = webhook_http.post(target, delivery.body.encode(), headers)
    except (webhook_http.RefusedURL, webhook_http.SendFailed) as exc:
        return None, str(exc)[: webhook_http.MESSAGE_LENGTH]
    except DecryptionError:
        return None, "The endpoint's secret cannot be decrypted (CREDENTIAL_ENCRYPTION_KEYS)."
    if 300 <= status_code < 400:
        return status_code, f"Answered {status_code}: a redirect, not followed."
    if not 200 <= status_code < 300:
        return status_code, f"Answered {status_code}."
    return status_code, ""


def _fail_pending(endpoint: WebhookEndpoint, reason: str) -> None:
    WebhookDelivery.objects.filter(endpoint=endpoint, status=Status.PENDING).update(
        status=Status.FAILED, next_attempt_at=None, last_error=reason
    )


def _disable_after_failing(endpoint: WebhookEndpoint, *, now: datetime) -> None:
    """Turn the endpoint off (once), fail what it still had to deliver, audit it and email
    its owners once committed."""
    reason = (
        f"Turned off on {now:%Y-%m-%d %H:%M} UTC: a delivery failed for "
        f"{RETRY_FOR.total_seconds() / 3600:g} hours."
    )
    if not WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason
    ):
        return
    endpoint.enabled, endpoint.disabled_reason = False, reason
    _fail_pending(endpoint, "The endpoint was turned off before this was delivered.")
    _record(endpoint, Action.WEBHOOK_DISABLED, actor=None, origin=None, reason=reason)
    transaction.on_commit(partial(_email_owners, endpoint))


def _email_owners(endpoint: WebhookEndpoint) -> None:
    recipients = selectors.webhook_owner_emails(endpoint)
    if not recipients:
        return
    try:
        send_mail(
            subject=f"[Threads Console] Webhook endpoint turned off: {endpoint}",
            message=render_to_string(
                "threads_app/email/webhook_disabled.txt",
                {"endpoint": endpoint, "host": urlsplit(endpoint.url).hostname},
            ),
            from_email=None,
            recipient_list=recipients,
        )
    except OSError as exc:  # the endpoint stays off and audited; the mail server is down
        logger.warning("Could not email the owners of webhook endpoint %s: %s", endpoint.pk, exc)
