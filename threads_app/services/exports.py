"""Exports by selection: every thread of a selection, live, in one gzip JSON Lines file.

An export is a job (`BulkDeleteJob`, kind "export") run by the worker as a deletion is
(`services.bulk.JobRun`: the same filling, batches, rate budget, pause, cancel and resume);
what differs is what it does to a thread: fetch its live object and all its messages
(`transcripts.TranscriptFetch`, a call at a time, so a 429 mid-way costs no call again) and
write its line. Each line is one JSON object: the transcript (`thread`, `messages`,
`exported_at`, `tracked`: key label, team, tracked by and when), or for a thread the upstream
no longer has, `{"thread": {"id": ...}, "gone": true, ...}`. Threads that fail otherwise get
no line; their items say why, as a deletion's do.

The file is written through Django's storage API (the "exports" storage: a directory,
`EXPORT_DIR`, by default), as a stream: each batch of EXPORT_BATCH threads becomes a part
(`job-<pk>-part-<first item pk>.jsonl.gz`, a gzip member) saved before its items' outcomes
are committed; once every item is done, the parts are copied in order into the file
(concatenated gzip members are one gzip file) and removed. So memory holds a batch at most,
and a run killed anywhere is resumed exactly: a part whose first item is still pending was
never committed, and is removed before the next run writes that batch again; a file left
half-copied by a killed run is written again from the parts, which stay until the file's
name is committed on the job.

The file is kept EXPORT_TTL_DAYS after the job finished; the worker's sweep then removes it
(`remove_expired_exports`), and the parts of cancelled exports.
"""

import gzip
import json
import logging
import queue
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob
from threads_app.services.bulk import JobRun, JobTakenOver, unexpected
from threads_app.services.refusals import Refused
from threads_app.services.transcripts import TranscriptFetch, tracked_facts
from threads_app.upstream import NotFoundError, RateLimitedError, UpstreamError

logger = logging.getLogger(__name__)

EXPORT_BATCH = 50  # threads a part holds
ItemOutcome = BulkDeleteItem.Outcome
JobState = BulkDeleteJob.State
Action = AuditEvent.Action
NOT_ALLOWED = "You may no longer read this thread's key, so it was not exported."
NOT_TRACKED = "No longer tracked here, so it was not exported."


def export_storage() -> Storage:
    return storages["exports"]


def _prefix(job_pk: int) -> str:
    return f"job-{job_pk}-"


def _part_name(job_pk: int, first_item_pk: int) -> str:
    return f"{_prefix(job_pk)}part-{first_item_pk:020d}.jsonl.gz"


def _file_name(job_pk: int) -> str:
    return f"{_prefix(job_pk)}threads.jsonl.gz"


def _job_files(job_pk: int) -> list[str]:
    """The names of the job's files in the storage (its parts and its file), sorted."""
    try:
        _, names = export_storage().listdir("")
    except FileNotFoundError:  # a directory storage before its first file
        return []
    return sorted(name for name in names if name.startswith(_prefix(job_pk)))


def _parts(job_pk: int) -> dict[int, str]:
    """The job's parts: first item pk -> name."""
    pattern = re.compile(re.escape(_prefix(job_pk)) + r"part-(\d{20})\.jsonl\.gz")
    matches = (pattern.fullmatch(name) for name in _job_files(job_pk))
    return {int(match[1]): match[0] for match in matches if match}


# --- Running an export -------------------------------------------------------------------


@dataclass
class _Part:
    """A batch of items, written as one part once every item has its outcome."""

    first: int  # its first item's pk (its name)
    items: list[BulkDeleteItem]
    lines: dict[int, bytes] = field(default_factory=dict)  # item pk -> its line
    fetching: int = 0  # items handed out and not answered yet
    handed_out: bool = False  # every item handed out (or settled without a request)


@dataclass
class _Export:
    """An item being fetched (a pool thread's), and where its line goes."""

    part: _Part
    item: BulkDeleteItem
    fetch: TranscriptFetch


class ExportRun(JobRun):
    """An export's run (see the module's docstring)."""

    def batch_size(self) -> int:
        return EXPORT_BATCH

    def __init__(self, job: BulkDeleteJob, **kwargs: Any) -> None:
        super().__init__(job, **kwargs)
        self.answers: queue.SimpleQueue[_Export] = queue.SimpleQueue()
        self.storage = export_storage()

    def recover(self) -> None:
        """Remove the parts an earlier run wrote but never committed (their first item is
        still pending): their batches are written again."""
        parts = _parts(self.job.pk)
        pending = self.job.items.filter(pk__in=list(parts), outcome=ItemOutcome.PENDING)
        for first in pending.values_list("pk", flat=True):
            self.storage.delete(parts[first])

    def send(self, batches: Iterable[list[BulkDeleteItem]]) -> None:
        adaptive = self.budgeted(self._exports(batches), self._fetch)
        for export, error in adaptive.gave_up:  # 429 after 429
            self.mark(export.item, ItemOutcome.FAILED, f"Not exported: {error}")
            self.answers.put(export)
        self._take_answers()

    def _exports(self, batches: Iterable[list[BulkDeleteItem]]) -> Iterator[_Export]:
        """The items to fetch, a batch at a time (read by `run_adaptively` as it has room);
        the items that need no request are settled here, and parts written as they fill."""
        for batch in batches:
            part = _Part(batch[0].pk, batch)
            usable = self.usable_keys(item.tracked_thread for item in batch)
            for item in batch:
                thread = item.tracked_thread
                if thread is None:
                    self.mark(item, ItemOutcome.FAILED, NOT_TRACKED)
                elif thread.api_key_id not in usable:
                    self.mark(item, ItemOutcome.FAILED, NOT_ALLOWED)
                elif isinstance(client := self.client(thread.api_key), Exception):
                    self.mark(
                        item,
                        ItemOutcome.FAILED,
                        unexpected(item, client, doing="exporting", what="export"),
                    )
                else:
                    part.fetching += 1
                    yield _Export(part, item, TranscriptFetch(thread, client))
                self._take_answers()
            part.handed_out = True
            self._write_if_complete(part)

    def _fetch(self, export: _Export) -> None:
        """A pool thread's call: the thread's transcript, as its line. A 429 is raised for
        `run_adaptively` to call again after the pause (what was fetched is kept)."""
        item, thread = export.item, export.fetch.thread
        try:
            line: dict[str, Any] = export.fetch.fetch()
        except RateLimitedError:
            raise
        except NotFoundError as exc:
            line = {
                "thread": {"id": thread.thread_id, "object": "thread"},
                "gone": True,
                "status": exc.status,
                "request_id": exc.request_id,
                "exported_at": timezone.now().isoformat(),
                "tracked": tracked_facts(thread),
            }
            self.mark(item, ItemOutcome.ALREADY_GONE, "Gone upstream: its line says so.")
        except UpstreamError as exc:
            self.mark(item, ItemOutcome.FAILED, f"Not exported: {exc.headline} {exc}")
            line = {}
        except Exception as exc:
            self.mark(
                item, ItemOutcome.FAILED, unexpected(item, exc, doing="exporting", what="export")
            )
            line = {}
        else:
            self.mark(item, ItemOutcome.EXPORTED, f"{len(line['messages'])} messages")
        if line:
            text = json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
            export.part.lines[item.pk] = text.encode()
        self.answers.put(export)

    def _take_answers(self) -> None:
        while True:
            try:
                export = self.answers.get_nowait()
            except queue.Empty:
                return
            export.part.fetching -= 1
            self._write_if_complete(export.part)

    def _write_if_complete(self, part: _Part) -> None:
        """Once every item of the part has its outcome: its lines saved as one gzip member
        (in item order, over what a killed run may have left), then its items committed."""
        if not part.handed_out or part.fetching:
            return
        if part.lines:
            name = _part_name(self.job.pk, part.first)
            data = b"".join(part.lines[item.pk] for item in part.items if item.pk in part.lines)
            self.storage.delete(name)
            saved = self.storage.save(name, ContentFile(gzip.compress(data, compresslevel=6)))
            if saved != name:  # another run wrote it meanwhile: this one was taken over
                self.storage.delete(saved)
                raise JobTakenOver(f"Export job {self.job.pk}: part {name} was written twice")
        self.commit(part.items, lambda: None)

    def finish(self) -> None:
        """Copy the parts, in order, into the file; commit its name on the job; remove them."""
        job = BulkDeleteJob.objects.get(pk=self.job.pk)
        parts = [name for _, name in sorted(_parts(job.pk).items())]
        if not job.export_file:
            name = _file_name(job.pk)
            self.storage.delete(name)  # a killed run's, half copied
            joined = File(cast(IO[bytes], _Concatenation(self.storage, parts)), name=name)
            saved = self.storage.save(name, joined)
            size = self.storage.size(saved)
            if not self._mine().update(export_file=saved, export_size=size):
                raise JobTakenOver(f"Export job {job.pk} was taken over by another task")
        for name in parts:
            self.storage.delete(name)


class _Concatenation:
    """The named files read one after the other, as one (what `Storage.save` reads)."""

    def __init__(self, storage: Storage, names: list[str]) -> None:
        self.storage, self.names = storage, iter(names)
        self.current: File[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        while True:
            if self.current is None:
                name = next(self.names, None)
                if name is None:
                    return b""
                self.current = self.storage.open(name, "rb")
            data: bytes = self.current.read(size)
            if data:
                return data
            self.current.close()
            self.current = None


# --- Downloading, and removing what expired ----------------------------------------------


@dataclass(frozen=True)
class ExportDownload:
    """An export's file, opened: stream it, then close it."""

    file: File[bytes]
    filename: str
    size: int | None


def open_export(*, user: User, job: BulkDeleteJob, origin: Origin | None = None) -> ExportDownload:
    """Open the export's file for the user, and audit the download (`export.downloaded`).

    The caller has the job from `selectors.get_downloadable_export` (whoever asked for it,
    or the team's owners). Refused while it is not written yet (`export_not_ready`), and once
    it expired or its job was cancelled (`export_expired`)."""
    if selectors.export_status(user, job).expired or job.state in (
        JobState.CANCELLED,
        JobState.FAILED,
    ):
        raise Refused(
            "This export is no longer available: its file expired or was never finished. "
            "Export the selection again.",
            code="export_expired",
        )
    if job.state != JobState.FINISHED or not job.export_file:
        raise Refused(
            "The export is not finished yet: try again once it is.", code="export_not_ready"
        )
    file = export_storage().open(job.export_file, "rb")
    audit.record(
        action=Action.EXPORT_DOWNLOADED,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor=user,
        team=job.team,
        owner=job.created_by if job.team is None else None,
        origin=origin,
        details={"job": job.pk, "size": job.export_size, "threads": job.done},
    )
    stamp = (job.finished_at or job.created_at).strftime("%Y%m%d")
    return ExportDownload(file, f"threads-export-{job.pk}-{stamp}.jsonl.gz", job.export_size)


def remove_expired_exports(*, now: datetime | None = None) -> int:
    """Remove the files of exports that expired (finished EXPORT_TTL_DAYS ago, audited as
    `export.expired`) or were cancelled (their run over); mark each job's `export_removed_at`.
    How many jobs' files were removed. The worker's sweep calls it. A failed export keeps its
    parts: `manage.py resume_jobs --resume` runs it on from them."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.EXPORT_TTL_DAYS)
    ended = (
        BulkDeleteJob.objects.filter(kind=BulkDeleteJob.Kind.EXPORT, export_removed_at__isnull=True)
        .filter(
            Q(state=JobState.FINISHED, finished_at__lt=cutoff)
            | Q(state=JobState.CANCELLED, task_id="")
        )
        .select_related("team", "created_by")
    )
    removed = 0
    for job in ended:
        for name in _job_files(job.pk):
            export_storage().delete(name)
        with transaction.atomic():
            if not BulkDeleteJob.objects.filter(pk=job.pk, export_removed_at__isnull=True).update(
                export_removed_at=now
            ):
                continue  # another worker's sweep did
            if job.state == JobState.FINISHED:
                audit.record(
                    action=Action.EXPORT_EXPIRED,
                    outcome=AuditEvent.Outcome.SUCCESS,
                    team=job.team,
                    owner=job.created_by if job.team is None else None,
                    details={
                        "job": job.pk,
                        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                    },
                )
        removed += 1
        logger.info("Export job %s: its files were removed (%s)", job.pk, job.state)
    return removed
