"""Issuing a delete job's receipt (`threads_app.receipts` is its format): audited, and
anchored to a signed checkpoint of the audit chain that covers the job's last outcome."""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth.models import User
from django.db.models import Max

from threads_app import audit, receipts, selectors
from threads_app.audit import Checkpoint, Origin
from threads_app.models import AuditEvent, BulkDeleteJob
from threads_app.services.refusals import NotAllowed, Refused

logger = logging.getLogger(__name__)

Format = Literal["csv", "json"]
CONTENT_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json; charset=utf-8",
}


@dataclass(frozen=True)
class IssuedReceipt:
    """A receipt ready to stream: `chunks()` reads the job's items as it goes."""

    job: BulkDeleteJob
    format: Format
    checkpoint: Checkpoint

    @property
    def filename(self) -> str:
        return f"job-{self.job.pk}-receipt.{self.format}"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def chunks(self) -> Iterator[str]:
        write = receipts.receipt_csv if self.format == "csv" else receipts.receipt_json
        return write(self.job, selectors.receipt_lines(self.job), self.checkpoint)


def issue_receipt(
    *, user: User, job: BulkDeleteJob, format: Format, origin: Origin | None = None
) -> IssuedReceipt:
    """The receipt of a job the user may see (the caller's selector found it): refused
    (`receipt_not_ready`) until the job has finished or been cancelled and left; refused
    (`checkpoint_unwritable`) when the checkpoint it needs cannot be written. Its download
    is audited (`receipt.downloaded`, naming the job and format)."""
    if selectors.job_thread_teams(user, job) is not None:
        raise NotAllowed(
            f"Job #{job.pk}'s receipt names every thread it deleted, other teams' too: its "
            "requester or a superuser can download it.",
            code="receipt_other_teams",
        )
    if not job.receipt_ready:
        raise Refused(
            f"Job #{job.pk} has not finished: its receipt is ready once it has "
            "(or once it is cancelled and its deletions in flight have their outcomes).",
            code="receipt_not_ready",
        )
    last = job.items.aggregate(last=Max("outcome_sequence"))["last"] or 0
    try:
        checkpoint = audit.checkpoint_covering(last)
        audit.record(
            action=AuditEvent.Action.RECEIPT_DOWNLOADED,
            outcome=AuditEvent.Outcome.SUCCESS,
            actor=user,
            team=job.team,
            owner=None if job.team_id else job.created_by,
            origin=origin,
            details={"job": job.pk, "format": format},
        )
        # Only a log that held nothing before this download has no checkpoint yet.
        checkpoint = checkpoint or audit.checkpoint_head()
    except OSError:
        logger.exception("Could not write the audit checkpoint for job %s's receipt", job.pk)
        raise Refused(
            "The audit checkpoint that the receipt ends with could not be written "
            "(AUDIT_CHECKPOINT_FILE); try again, or ask an operator.",
            code="checkpoint_unwritable",
        ) from None
    assert checkpoint is not None, "the download's event is in the log now"
    return IssuedReceipt(job, format, checkpoint)
