"""Append to, and verify, the hash-chained audit log.

Each event stores HMAC-SHA256(AUDIT_HMAC_KEY, previous hash + the event's canonical JSON).
The key lives outside the database, so rewriting a row, or the whole chain, is detectable
by `manage.py verify_audit`. Appends lock the single `AuditChainHead` row, so concurrent
requests still produce one unbroken chain; the head also exposes a truncated tail.
"""

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from threads_app.models import AuditChainHead, AuditEvent

GENESIS_HASH = "0" * 64
_HASHED_FIELDS = (
    "sequence",
    "actor_id",
    "actor_username",
    "action",
    "outcome",
    "team_id",
    "team_name",
    "owner_id",
    "api_key_id",
    "key_hint",
    "thread_id",
    "http_status",
    "request_id",
    "client_ip",
    "user_agent",
    "details",
    "prev_hash",
)


def canonical_json(event):
    data = {name: getattr(event, name) for name in _HASHED_FIELDS}
    data["created_at"] = event.created_at.astimezone(UTC).isoformat()
    data["snapshot_sha256"] = hashlib.sha256(event.snapshot.encode()).hexdigest()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(event):
    message = (event.prev_hash + "\n" + canonical_json(event)).encode()
    return hmac.new(settings.AUDIT_HMAC_KEY.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Origin:
    """Where a change came from, as the audit log records it: the client's IP and user agent.

    Services take this small value rather than the HTTP request, so background work passes
    the one its job was started from instead of faking a request.
    """

    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> "Origin":
        """The client IP (REMOTE_ADDR: the proxy in front must set it) and user agent.

        The IP is normalised as its column stores it (e.g. `::ffff:1.2.3.4`, not Python's
        `::ffff:102:304`): the hash is computed before the INSERT and must match what is read
        back.
        """
        try:
            address = str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
        except ValueError:
            ip = None
        else:
            ip = AuditEvent._meta.get_field("client_ip").get_prep_value(address)
        return cls(ip=ip, user_agent=request.META.get("HTTP_USER_AGENT", "")[:300])


def event(
    *,
    action,
    outcome,
    actor=None,
    api_key=None,
    team=None,
    thread_id="",
    http_status=None,
    request_id="",
    origin=None,
    details=None,
    snapshot="",
):
    """An event not yet appended: pass it to `record_many`.

    `team` defaults to the key's team; a personal key's events belong to its owner.
    """
    if team is None and api_key is not None:
        team = api_key.team
    origin = origin or Origin()
    return AuditEvent(
        actor_id=actor.pk if actor else None,
        actor_username=actor.get_username() if actor else "",
        action=action,
        outcome=outcome,
        team_id=team.pk if team else None,
        team_name=team.name if team else "",
        owner_id=api_key.owner_id if api_key is not None and team is None else None,
        api_key_id=api_key.pk if api_key else None,
        key_hint=api_key.hint if api_key else "",
        thread_id=thread_id or "",
        http_status=http_status,
        request_id=request_id or "",
        client_ip=origin.ip,
        user_agent=origin.user_agent,
        # Hashed as it will read back from the JSON column (tuples become lists, keys strings).
        details=json.loads(json.dumps(details or {})),
        snapshot=snapshot,
    )


def record(*, durable=False, **fields):
    """Append one event (the keyword arguments of `event`) and return it.

    `durable=True` refuses to run inside an outer transaction, so the event is committed
    when this returns: used for a deletion's intent, which must exist before the upstream
    DELETE is sent.
    """
    [appended] = record_many([event(**fields)], durable=durable)
    return appended


def record_many(events, *, durable=False):
    """Append `events` (from `event`), in order, as consecutive links; return them.

    One lock of the chain head, one INSERT and one transaction for all of them, which is what
    makes a bulk job's audit trail cheap: the chain is the same as with one `record` each.
    `durable` as for `record`: all of them are committed when this returns.
    """
    if not events:
        return events
    with transaction.atomic(durable=durable):
        head = AuditChainHead.objects.select_for_update().filter(pk=1)
        locked = head.values_list("sequence", "hash").first()
        if locked is None:
            # The very first append: there is no row to lock yet. Concurrent first appends
            # all try to create it; the others wait for the winner's commit, then lock it.
            AuditChainHead.objects.get_or_create(pk=1)
            locked = head.values_list("sequence", "hash").first()
        sequence, prev_hash = locked
        # Stamped under the lock, so time order follows sequence order.
        now = timezone.now()
        prev_hash = prev_hash or GENESIS_HASH
        for appended in events:
            sequence += 1
            appended.created_at, appended.sequence, appended.prev_hash = now, sequence, prev_hash
            appended.hash = prev_hash = compute_hash(appended)
        AuditEvent.objects.bulk_create(events)
        head.update(sequence=sequence, hash=prev_hash)
    return events


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    bad_sequence: int | None = None
    reason: str = ""


def verify_chain():
    """Recompute the whole chain; report the first broken link."""
    expected_sequence, prev_hash, count = 1, GENESIS_HASH, 0
    for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000):
        if event.sequence != expected_sequence:
            return Verification(
                False, count, expected_sequence, f"event {expected_sequence} is missing (gap)"
            )
        if event.prev_hash != prev_hash:
            return Verification(
                False, count, event.sequence, "its previous-hash does not match the event before"
            )
        if not hmac.compare_digest(event.hash, compute_hash(event)):
            return Verification(False, count, event.sequence, "its content was changed")
        expected_sequence, prev_hash, count = expected_sequence + 1, event.hash, count + 1
    return _verify_head(count, prev_hash)


def _verify_head(count, last_hash):
    """The chain head remembers the last append: it exposes a removed tail."""
    head = AuditChainHead.objects.filter(pk=1).first()
    head_sequence, head_hash = (head.sequence, head.hash) if head else (0, "")
    if head_sequence > count:
        return Verification(
            False,
            count,
            count + 1,
            f"events {count + 1} to {head_sequence} are missing (truncated tail)",
        )
    if count and (head_sequence != count or not hmac.compare_digest(head_hash, last_hash)):
        return Verification(
            False, count, count, "it is the last event but the chain head does not point at it"
        )
    return Verification(True, count)
