"""Deletion receipts: a finished job's threads, each with its outcome and the audit event
that records it, ending with a signed audit checkpoint that covers them.

A receipt is written as CSV or JSON, a line at a time (`receipt_csv`, `receipt_json`: a
job of any size never sits in memory), and read back by `read_receipt` for
`verify_receipt` (`manage.py verify_audit --receipt FILE`), which holds every line to the
chain: the event it names exists, has that hash, and is that thread's outcome in that job,
with that outcome, status, request id and time; no outcome event of the job up to the
checkpoint is left out; the chain is intact up to the checkpoint, which is signed and in the
checkpoint log. The receipt's own signature (under a key derived from AUDIT_HMAC_KEY, as the
checkpoints') covers its lines and checkpoint, so what the chain cannot vouch for (a line
of a thread never reached, its note) cannot be changed either.

Say what is known, no more: a line without an outcome event says why (not reached, refused
before anything was sent), and has no status, request id or event.
"""

import csv
import dataclasses
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TextIO

from django.conf import settings

from threads_app import audit
from threads_app.audit import Checkpoint, Verification
from threads_app.models import ITEM_OUTCOME_OF, AuditEvent, BulkDeleteJob

VERSION = 1
# The receipt's signature is made under a key derived from AUDIT_HMAC_KEY with this label.
_KEY_LABEL = b"threads-console deletion receipt v1"
CHECK_BATCH = 1000  # lines held to the chain per query
# A CSV cell starting with one of these is prefixed with "'" so no spreadsheet runs it as a
# formula; a leading "'" is doubled the same way, so reading back drops exactly one.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "'")


@dataclass(frozen=True)
class ReceiptLine:
    """One thread of the job. `event_*` and `http_status` come from its outcome's audit
    event (None or "" when it has none); `at` is that event's time, or else when the item
    was settled ("" when never)."""

    job: int
    line: int
    thread_id: str
    outcome: str
    http_status: int | None
    request_id: str
    at: str
    intent_sequence: int | None
    event_sequence: int | None
    event_hash: str
    note: str

    def to_data(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(field.name for field in dataclasses.fields(ReceiptLine))
_INTS = {"job", "line", "http_status", "intent_sequence", "event_sequence"}
_OPTIONAL_INTS = {"http_status", "intent_sequence", "event_sequence"}
CHECKPOINT_ROW, SIGNATURE_ROW = "checkpoint", "signature"  # the CSV's last two rows' `line`


def _signer() -> "hmac.HMAC":
    key = hmac.new(settings.AUDIT_HMAC_KEY.encode(), _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _sign(signer: "hmac.HMAC", data: dict[str, Any]) -> None:
    """Add a line (`ReceiptLine.to_data`) to the receipt's signature."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signer.update(canonical.encode() + b"\n")


def _signature(signer: "hmac.HMAC", checkpoint: Checkpoint) -> str:
    signer.update(checkpoint.to_json().encode())
    return signer.hexdigest()


def _iso(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def receipt_header(job: BulkDeleteJob) -> dict[str, Any]:
    """What the JSON receipt says of its job first (informative: the lines are what count)."""
    return {
        "version": VERSION,
        "job": job.pk,
        "state": job.state,
        "created_by": job.created_by.get_username(),
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "total": job.total,
    }


def receipt_json(
    job: BulkDeleteJob, lines: Iterable[ReceiptLine], checkpoint: Checkpoint
) -> Iterator[str]:
    """The receipt as JSON text, a line at a time: `receipt` (the job), `lines`,
    `checkpoint`, then `signature`."""
    signer = _signer()
    yield '{"receipt": ' + json.dumps(receipt_header(job)) + ',\n"lines": ['
    separator = "\n"
    for line in lines:
        data = line.to_data()
        _sign(signer, data)
        yield separator + json.dumps(data, ensure_ascii=False)
        separator = ",\n"
    yield '\n],\n"checkpoint": ' + checkpoint.to_json()
    yield ',\n"signature": ' + json.dumps(_signature(signer, checkpoint)) + "}\n"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def receipt_csv(
    job: BulkDeleteJob, lines: Iterable[ReceiptLine], checkpoint: Checkpoint
) -> Iterator[str]:
    """The receipt as CSV text, a row at a time: the columns' names, a row per thread, then
    a `checkpoint` row (the checkpoint's JSON in `note`) and a `signature` row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def row(values: Iterable[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(value) for value in values])
        return buffer.getvalue()

    signer = _signer()
    yield row(FIELDS)
    for line in lines:
        data = line.to_data()
        _sign(signer, data)
        yield row(data.values())
    tail = dict.fromkeys(FIELDS, "") | {"job": job.pk}
    yield row((tail | {"line": CHECKPOINT_ROW, "note": checkpoint.to_json()}).values())
    yield row((tail | {"line": SIGNATURE_ROW, "note": _signature(signer, checkpoint)}).values())


# --- reading one back


class ReceiptError(ValueError):
    """The file is not a receipt this console writes; the message says where and why."""


@dataclass(frozen=True)
class Receipt:
    """A receipt read back: its job, lines, checkpoint and signature."""

    job: int
    lines: list[ReceiptLine]
    checkpoint: Checkpoint
    signature: str


def read_receipt(file: TextIO) -> Receipt:
    """Read a receipt, JSON or CSV (told by its first character); `ReceiptError` if it is
    neither."""
    start = file.read(1)
    file.seek(0)
    return _read_json(file) if start == "{" else _read_csv(file)


def _line(data: Any, where: str) -> ReceiptLine:
    if not isinstance(data, dict) or set(data) != set(FIELDS):
        raise ReceiptError(f"{where} does not have the receipt's fields ({', '.join(FIELDS)})")
    for name in FIELDS:
        value = data[name]
        if name in _INTS:
            valid = type(value) is int or (value is None and name in _OPTIONAL_INTS)
        else:
            valid = isinstance(value, str)
        if not valid:
            raise ReceiptError(f"{where}: its {name} is not a valid value")
    return ReceiptLine(**data)


def _checkpoint(text: Any, where: str) -> Checkpoint:
    try:
        return Checkpoint.from_json(text if isinstance(text, str) else json.dumps(text))
    except ValueError:
        raise ReceiptError(f"{where} is not an audit checkpoint") from None


def _read_json(file: TextIO) -> Receipt:
    try:
        data = json.load(file)
    except ValueError as error:
        raise ReceiptError(f"it is not valid JSON ({error})") from None
    if not isinstance(data, dict) or set(data) != {"receipt", "lines", "checkpoint", "signature"}:
        raise ReceiptError("it is not a receipt (receipt, lines, checkpoint and signature)")
    header, lines = data["receipt"], data["lines"]
    if not isinstance(header, dict) or type(header.get("job")) is not int:
        raise ReceiptError("its receipt section does not name a job")
    if not isinstance(lines, list) or not isinstance(data["signature"], str):
        raise ReceiptError("its lines are not a list, or its signature not a string")
    read = [_line(line, f"line {number}") for number, line in enumerate(lines, 1)]
    checkpoint = _checkpoint(data["checkpoint"], "its checkpoint")
    return Receipt(header["job"], read, checkpoint, data["signature"])


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _read_csv(file: TextIO) -> Receipt:
    try:
        rows = list(csv.reader(file))
    except csv.Error as error:
        raise ReceiptError(f"it is not valid CSV ({error})") from None
    if not rows or tuple(rows[0]) != FIELDS:
        raise ReceiptError(f"its first row is not the receipt's columns ({','.join(FIELDS)})")
    if len(rows) < 3:
        raise ReceiptError("it ends before its checkpoint and signature rows")
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(FIELDS):
            raise ReceiptError(f"row {number} has {len(row)} cells, not {len(FIELDS)}")
    named = [dict(zip(FIELDS, map(_uncell, row), strict=True)) for row in rows[1:]]
    *body_named, checkpoint_cells, signature_cells = named
    if (checkpoint_cells["line"], signature_cells["line"]) != (CHECKPOINT_ROW, SIGNATURE_ROW):
        raise ReceiptError("its last two rows are not its checkpoint and signature")
    lines = [_csv_line(cells, number) for number, cells in enumerate(body_named, 2)]
    checkpoint = _checkpoint(checkpoint_cells["note"], "its checkpoint row")
    if not checkpoint_cells["job"].isdigit():
        raise ReceiptError("its checkpoint row does not name a job")
    return Receipt(int(checkpoint_cells["job"]), lines, checkpoint, signature_cells["note"])


def _csv_line(cells: dict[str, str], number: int) -> ReceiptLine:
    data: dict[str, Any] = {}
    for name, text in cells.items():
        if name not in _INTS:
            data[name] = text
        elif text == "" and name in _OPTIONAL_INTS:
            data[name] = None
        elif text.isdigit() and len(text) < 19:
            data[name] = int(text)
        else:
            raise ReceiptError(f"row {number}: its {name} is not a whole number")
    return _line(data, f"row {number}")


# --- verifying it


def verify_receipt(receipt: Receipt, checkpoint_log: Iterable[str]) -> Verification:
    """Hold the receipt to the audit log and the checkpoint log (its lines); the first
    problem found, if any. `count` is the number of lines whose outcome event matched."""
    checkpoint = receipt.checkpoint
    held = audit.verify_checkpoints([checkpoint.to_json()])  # signed, and its event's hash
    if not held.ok:
        return _broken(
            held.reason.replace("the checkpoint on line 1", "the receipt's checkpoint"),
            held.bad_sequence,
        )
    if checkpoint.to_json() not in {line.strip() for line in checkpoint_log}:
        return _broken(
            f"the receipt's checkpoint (event #{checkpoint.sequence}) is not in the checkpoint log"
        )
    found = _check_lines(receipt)
    if not found.ok:
        return found
    chain = audit.verify_chain(through=checkpoint.sequence)
    if not chain.ok:
        return chain
    signer = _signer()
    for line in receipt.lines:
        _sign(signer, line.to_data())
    if not hmac.compare_digest(_signature(signer, checkpoint).encode(), receipt.signature.encode()):
        return _broken(
            "the receipt's signature does not match its lines and checkpoint "
            "(a line was changed, added or removed, or its checkpoint replaced)"
        )
    return Verification(True, found.count)


def _broken(reason: str, sequence: int | None = None, count: int = 0) -> Verification:
    return Verification(False, count, sequence, reason)


def _check_lines(receipt: Receipt) -> Verification:
    """Each line against its event, in batches; then the job's outcome events up to the
    checkpoint against the lines (none left out)."""
    job, covered = receipt.job, receipt.checkpoint.sequence
    seen: dict[int, int] = {}  # event sequence: the line naming it
    matched = 0
    for start in range(0, len(receipt.lines), CHECK_BATCH):
        batch = receipt.lines[start : start + CHECK_BATCH]
        sequences = [line.event_sequence for line in batch if line.event_sequence is not None]
        events = AuditEvent.objects.defer("snapshot").in_bulk(sequences, field_name="sequence")
        for number, line in enumerate(batch, start + 1):
            problem = _line_problem(line, number, job, covered, events, seen)
            if problem:
                return _broken(f"line {number}: {problem}", line.event_sequence, matched)
            if line.event_sequence is not None:
                seen[line.event_sequence] = number
                matched += 1
    outcomes = AuditEvent.objects.filter(
        action=AuditEvent.Action.THREAD_DELETED, sequence__lte=covered, details__job=job
    ).order_by("sequence")
    for sequence, thread_id in outcomes.values_list("sequence", "thread_id").iterator(5000):
        if sequence not in seen:
            return _broken(
                f"it is the outcome of {thread_id} in job {job}, and the receipt leaves it "
                "out (a line was removed)",
                sequence,
                matched,
            )
    return Verification(True, matched)


def _line_problem(
    line: ReceiptLine,
    number: int,
    job: int,
    covered: int,
    events: dict[Any, AuditEvent],
    seen: dict[int, int],
) -> str:
    """What is wrong with the line, or ""."""
    if line.line != number:
        return f"it is numbered {line.line} (a line was removed or added)"
    if line.job != job:
        return f"it names job {line.job}, and the receipt is job {job}'s"
    sequence = line.event_sequence
    if sequence is None:
        if line.http_status is not None or line.request_id or line.event_hash:
            return "it has an upstream answer but no audit event"
        return ""
    if sequence in seen:
        return f"it repeats event #{sequence} of line {seen[sequence]} (a line was added)"
    if sequence > covered:
        return f"event #{sequence} is after the receipt's checkpoint (#{covered})"
    event = events.get(sequence)
    if event is None:
        return f"event #{sequence} is not in the audit log"
    if not hmac.compare_digest(event.hash.encode(), line.event_hash.encode()):
        return f"event #{sequence} has another hash in the audit log"
    if event.action != AuditEvent.Action.THREAD_DELETED or event.thread_id != line.thread_id:
        return f"event #{sequence} is not the outcome of deleting {line.thread_id}"
    details = event.details if isinstance(event.details, dict) else {}
    if details.get("job") != job or details.get("intent") != line.intent_sequence:
        return f"event #{sequence} is not the outcome of that request in job {job}"
    recorded = ITEM_OUTCOME_OF.get(event.outcome, event.outcome)
    if recorded != line.outcome:
        return f"event #{sequence} records the outcome {recorded}, not {line.outcome}"
    answer = (event.http_status, event.request_id, _iso(event.created_at))
    if answer != (line.http_status, line.request_id, line.at):
        return f"event #{sequence} records another status, request id or time"
    return ""
