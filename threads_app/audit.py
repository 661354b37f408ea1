"""Append to, and verify, the hash-chained audit log.

Each event stores HMAC-SHA256(AUDIT_HMAC_KEY, previous hash + the event's canonical JSON).
The key lives outside the database, so rewriting a row, or the whole chain, is detectable
by `manage.py verify_audit`. Appends lock the single `AuditChainHead` row, so concurrent
requests still produce one unbroken chain; the head also exposes a truncated tail, and
database triggers let it only move forward.

Someone who can drop those triggers can still remove the tail and set the head back. For
that, signed checkpoints of the chain's end leave the database (a dedicated logger, and
`AUDIT_CHECKPOINT_FILE`): every `AUDIT_CHECKPOINT_EVERY` events and on
`manage.py audit_checkpoint`. `verify_audit --checkpoints FILE` holds the log to them.
"""

import functools
import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from threads_app.client_ip import client_ip
from threads_app.models import ApiKey, AuditChainHead, AuditEvent, Team

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
# Every other column of the audit table, with the reason it is not among `_HASHED_FIELDS`.
# A test holds the two to the table: a new column must be hashed or explained here.
_NOT_IN_HASHED_FIELDS = {
    "id": "the database's row number; the chain's order is `sequence`, which is hashed",
    "hash": "the result of the hash itself",
    "created_at": "hashed by `canonical_json` as UTC ISO-8601 text (a datetime is not JSON)",
    "snapshot": "hashed by `canonical_json` as its SHA-256, not as the whole transcript",
}


def canonical_json(event: AuditEvent) -> str:
    data = {name: getattr(event, name) for name in _HASHED_FIELDS}
    data["created_at"] = event.created_at.astimezone(UTC).isoformat()
    data["snapshot_sha256"] = hashlib.sha256(event.snapshot.encode()).hexdigest()
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(event: AuditEvent) -> str:
    message = (event.prev_hash + "\n" + canonical_json(event)).encode()
    return hmac.new(settings.AUDIT_HMAC_KEY.encode(), message, hashlib.sha256).hexdigest()


def _same(stored: str, expected: str) -> bool:
    """Constant-time comparison that also takes what a tampered row may hold (non-ASCII)."""
    return hmac.compare_digest(stored.encode(), expected.encode())


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
        """The client IP, as the lockout reads it (`client_ip`: behind trusted proxies, the
        address they forwarded), and the user agent.

        The IP is normalised as its column stores it (e.g. `::ffff:1.2.3.4`, not Python's
        `::ffff:102:304`): the hash is computed before the INSERT and must match what is read
        back.
        """
        try:
            address = str(ipaddress.ip_address(client_ip(request) or ""))
        except ValueError:
            ip = None
        else:
            ip = AuditEvent._meta.get_field("client_ip").get_prep_value(address)
        return cls(ip=ip, user_agent=request.META.get("HTTP_USER_AGENT", "")[:300])

    def to_data(self) -> dict[str, str | None]:
        """The origin as JSON data (a background task's argument): `from_data` reads it."""
        return {"ip": self.ip, "user_agent": self.user_agent}

    @classmethod
    def from_data(cls, data: dict[str, Any] | None) -> "Origin | None":
        """The origin `to_data` made (None for None); what is not a string is dropped."""
        if data is None:
            return None
        ip, user_agent = data.get("ip"), data.get("user_agent")
        return cls(
            ip=ip if isinstance(ip, str) else None,
            user_agent=user_agent if isinstance(user_agent, str) else "",
        )


def event(
    *,
    action: str,
    outcome: str,
    actor: AbstractBaseUser | None = None,
    api_key: ApiKey | None = None,
    team: Team | None = None,
    owner: AbstractBaseUser | None = None,
    thread_id: str | None = "",
    http_status: int | None = None,
    request_id: str | None = "",
    origin: Origin | None = None,
    details: dict[str, Any] | None = None,
    snapshot: str = "",
) -> AuditEvent:
    """An event not yet appended: pass it to `record_many`.

    `team` defaults to the key's team; a personal key's events belong to its owner, and so
    do the events of `owner`'s own account (log-ins, password changes).
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
        owner_id=(
            owner.pk
            if owner is not None
            else api_key.owner_id
            if api_key is not None and team is None
            else None
        ),
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


def record(*, durable: bool = False, **fields: Any) -> AuditEvent:
    """Append one event (the keyword arguments of `event`) and return it.

    `durable=True` refuses to run inside an outer transaction, so the event is committed
    when this returns: used for a deletion's intent, which must exist before the upstream
    DELETE is sent.
    """
    [appended] = record_many([event(**fields)], durable=durable)
    return appended


def record_many(events: list[AuditEvent], *, durable: bool = False) -> list[AuditEvent]:
    """Append `events` (from `event`), in order, as consecutive links; return them.

    One lock of the chain head, one INSERT and one transaction for all of them, which is what
    makes a bulk job's audit trail cheap: the chain is the same as with one `record` each.
    `durable` as for `record`: all of them are committed when this returns.
    When the append passes a multiple of `AUDIT_CHECKPOINT_EVERY`, a checkpoint of its last
    event is written once it is committed.
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
            locked = head.values_list("sequence", "hash").get()
        first, prev_hash = locked
        # Stamped under the lock, so time order follows sequence order.
        now = timezone.now()
        prev_hash = prev_hash or GENESIS_HASH
        sequence = first
        for appended in events:
            sequence += 1
            appended.created_at, appended.sequence, appended.prev_hash = now, sequence, prev_hash
            appended.hash = prev_hash = compute_hash(appended)
        AuditEvent.objects.bulk_create(events)
        head.update(sequence=sequence, hash=prev_hash)
        every = settings.AUDIT_CHECKPOINT_EVERY
        if every and sequence // every > first // every:
            # After the commit: a rolled-back append must leave no checkpoint behind.
            transaction.on_commit(functools.partial(_checkpoint_after_commit, sequence, prev_hash))
    return events


@dataclass(frozen=True)
class Verification:
    """The outcome of a check: `count` things were found sound (events, or checkpoints)
    before the first problem, if any: `bad_sequence` (the event it is at, when known) and
    `reason`."""

    ok: bool
    count: int
    bad_sequence: int | None = None
    reason: str = ""


def verify_chain(*, through: int | None = None) -> Verification:
    """Recompute the whole chain (or its events up to `through`: what a checkpoint covers);
    report the first broken link."""
    expected_sequence, prev_hash, count = 1, GENESIS_HASH, 0
    events = AuditEvent.objects.order_by("sequence")
    if through is not None:
        events = events.filter(sequence__lte=through)
    for event in events.iterator(chunk_size=2000):
        if event.sequence != expected_sequence:
            return Verification(
                False, count, expected_sequence, f"event {expected_sequence} is missing (gap)"
            )
        if event.prev_hash != prev_hash:
            return Verification(
                False, count, event.sequence, "its previous-hash does not match the event before"
            )
        if not _same(event.hash, compute_hash(event)):
            return Verification(False, count, event.sequence, "its content was changed")
        expected_sequence, prev_hash, count = expected_sequence + 1, event.hash, count + 1
    if through is None:
        return _verify_head(count, prev_hash)
    if count < through:
        reason = f"events {count + 1} to {through} are missing"
        return Verification(False, count, count + 1, reason)
    return Verification(True, count)


def _verify_head(count: int, last_hash: str) -> Verification:
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
    if count and (head_sequence != count or not _same(head_hash, last_hash)):
        return Verification(
            False, count, count, "it is the last event but the chain head does not point at it"
        )
    return Verification(True, count)


# --- Checkpoints: the chain's end, signed, kept outside the database

CHECKPOINT_LOGGER = logging.getLogger("threads_app.audit.checkpoints")
# A checkpoint is signed under a key derived from AUDIT_HMAC_KEY with this label, never under
# AUDIT_HMAC_KEY itself: its MAC cannot pass for an event's hash, nor an event's for its MAC.
_CHECKPOINT_KEY_LABEL = b"threads-console audit checkpoint v1"
_CHECKPOINT_FIELDS = {"sequence", "hash", "at", "mac"}


def _checkpoint_mac(sequence: int, hash_: str, at: str) -> str:
    key = hmac.new(settings.AUDIT_HMAC_KEY.encode(), _CHECKPOINT_KEY_LABEL, hashlib.sha256)
    signed = {"sequence": sequence, "hash": hash_, "at": at}
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.digest(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """Event `sequence` had hash `hash` at time `at` (UTC ISO-8601), signed by `mac`."""

    sequence: int
    hash: str
    at: str
    mac: str

    @classmethod
    def sign(cls, sequence: int, hash_: str) -> "Checkpoint":
        at = timezone.now().astimezone(UTC).isoformat()
        return cls(sequence, hash_, at, _checkpoint_mac(sequence, hash_, at))

    @classmethod
    def from_json(cls, line: str) -> "Checkpoint":
        """The checkpoint a line of a checkpoint file holds; ValueError if it holds none."""
        data = json.loads(line)
        if not isinstance(data, dict) or set(data) != _CHECKPOINT_FIELDS:
            raise ValueError("not a checkpoint")
        sequence, hash_, at, mac = data["sequence"], data["hash"], data["at"], data["mac"]
        if type(sequence) is not int or not all(isinstance(v, str) for v in (hash_, at, mac)):
            raise ValueError("not a checkpoint")
        return cls(sequence, hash_, at, mac)

    def to_json(self) -> str:
        data = {"sequence": self.sequence, "hash": self.hash, "at": self.at, "mac": self.mac}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def signed(self) -> bool:
        """Whether `mac` is this checkpoint's signature under the audit key."""
        return _same(self.mac, _checkpoint_mac(self.sequence, self.hash, self.at))


def write_checkpoint(checkpoint: Checkpoint) -> None:
    """Log it (one JSON line, the message) and append it to AUDIT_CHECKPOINT_FILE if set.

    The file is opened for appending and the line written at once, so processes appending
    side by side do not interleave lines. OSError if the file cannot be written.
    """
    line = checkpoint.to_json()
    CHECKPOINT_LOGGER.info("%s", line)
    if settings.AUDIT_CHECKPOINT_FILE:
        with open(settings.AUDIT_CHECKPOINT_FILE, "a", encoding="utf-8") as file:
            file.write(line + "\n")


def _checkpoint_after_commit(sequence: int, hash_: str) -> None:
    """The automatic checkpoint: the append is committed, so a full disk must not fail it."""
    try:
        write_checkpoint(Checkpoint.sign(sequence, hash_))
    except OSError:
        CHECKPOINT_LOGGER.exception(
            "Could not append the audit checkpoint at event #%d to AUDIT_CHECKPOINT_FILE",
            sequence,
        )


def checkpoint_head() -> Checkpoint | None:
    """Sign the chain's end as its head stands, and write it; None if the log is empty."""
    head = AuditChainHead.objects.filter(pk=1).values_list("sequence", "hash").first()
    if head is None or head[0] == 0:
        return None
    checkpoint = Checkpoint.sign(*head)
    write_checkpoint(checkpoint)
    return checkpoint


def checkpoint_covering(sequence: int) -> Checkpoint | None:
    """A signed checkpoint of event `sequence` or a later one: the earliest in
    AUDIT_CHECKPOINT_FILE that still matches the log, or else a new one of the chain's head
    (`checkpoint_head`; OSError if it cannot be written). None only for an empty log."""
    found = _earliest_checkpoint_from(sequence) if sequence > 0 else None
    if found is not None:
        stored = _hashes_at({found.sequence}).get(found.sequence, "")
        if _same(stored, found.hash):
            return found
    return checkpoint_head()


def _earliest_checkpoint_from(sequence: int) -> Checkpoint | None:
    """The signed checkpoint of AUDIT_CHECKPOINT_FILE (if set and readable) with the lowest
    sequence at or after `sequence`."""
    path, found = settings.AUDIT_CHECKPOINT_FILE, None
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                try:
                    checkpoint = Checkpoint.from_json(line)
                except ValueError:
                    continue
                earlier = found is None or checkpoint.sequence < found.sequence
                if checkpoint.sequence >= sequence and earlier and checkpoint.signed:
                    found = checkpoint
    except (OSError, UnicodeDecodeError):
        return None  # a new checkpoint is written instead (or says why it cannot be)
    return found


def verify_checkpoints(lines: Iterable[str]) -> Verification:
    """Hold the log to checkpoints written earlier: one JSON line each, blank lines skipped.

    Each must carry a valid signature, and the log must still hold its event, with its hash.
    `count` is the number of checkpoints that matched.
    """
    checkpoints: list[tuple[int, Checkpoint]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            checkpoint = Checkpoint.from_json(line)
        except ValueError:
            return Verification(False, 0, None, f"line {number} is not a checkpoint")
        if not checkpoint.signed:
            return Verification(
                False,
                0,
                None,
                f"the checkpoint on line {number} has a wrong signature "
                "(forged, or signed under another AUDIT_HMAC_KEY)",
            )
        checkpoints.append((number, checkpoint))
    stored = _hashes_at({checkpoint.sequence for _, checkpoint in checkpoints})
    for matched, (number, checkpoint) in enumerate(checkpoints):
        if checkpoint.sequence not in stored:
            held = AuditEvent.objects.count()
            reason = (
                f"the log holds {held} events, fewer than the checkpoint on line {number} "
                "vouches for (events were removed)"
                if held < checkpoint.sequence
                else f"it is missing, and the checkpoint on line {number} vouches for it"
            )
            return Verification(False, matched, checkpoint.sequence, reason)
        if not _same(stored[checkpoint.sequence], checkpoint.hash):
            return Verification(
                False,
                matched,
                checkpoint.sequence,
                f"its hash differs from the checkpoint on line {number} (the log was rewritten)",
            )
    return Verification(True, len(checkpoints))


def _hashes_at(sequences: set[int]) -> dict[int, str]:
    """The stored hash of each of these events that exists, a bounded query at a time."""
    ordered, hashes = sorted(sequences), dict[int, str]()
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        hashes.update(AuditEvent.objects.filter(sequence__in=chunk).values_list("sequence", "hash"))
    return hashes
