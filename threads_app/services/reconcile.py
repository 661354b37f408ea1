"""Reconcile tracked threads with the upstream: one thread ("Check now") or all of them.

A check retrieves the live thread with its key: an answer refreshes the cached metadata and
tool_resources (and brings a gone thread back), a 404 marks the thread gone, a 401/403 marks
the key failing. Any other failure (5xx, timeout) changes nothing, not even `last_checked_at`:
the thread was not checked. A check is a cache refresh, not a change anyone made, so it is not
audited and only needs read access.
"""

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import connections
from django.db.models import QuerySet

from threads_app.models import TrackedThread
from threads_app.selectors import unreachable_reason
from threads_app.services.threads import refresh_thread
from threads_app.upstream import AuthenticationError, NotFoundError, UpstreamError

State = TrackedThread.State


@dataclass(frozen=True)
class CheckResult:
    OK = "ok"
    GONE = "gone"
    KEY_REJECTED = "key_rejected"
    FAILED = "failed"
    SKIPPED = "skipped"

    thread: TrackedThread
    outcome: str
    message: str
    request_id: str = ""


def _explain(thread: TrackedThread, exc: UpstreamError) -> tuple[str, str]:
    """(outcome, message) for a check the upstream failed, in the one shape every error
    takes: what happened, then the API's answer (never inside brackets of its own)."""
    if isinstance(exc, NotFoundError):
        return (
            CheckResult.GONE,
            f"“{thread}” is gone upstream: the Threads API no longer has it. {exc}",
        )
    if isinstance(exc, AuthenticationError):
        return CheckResult.KEY_REJECTED, (
            f"The Threads API rejected the key “{thread.api_key.label}”, which is now marked "
            f"failing. {exc}"
        )
    return (
        CheckResult.FAILED,
        f"“{thread}” could not be checked, nothing was changed. {exc.headline} {exc}",
    )


def check_thread(thread: TrackedThread) -> CheckResult:
    """Check one thread against the upstream; never raises for an upstream failure."""
    reason = unreachable_reason(thread)
    if reason is not None:
        return CheckResult(thread, CheckResult.SKIPPED, reason)
    try:
        live = refresh_thread(thread)
    except UpstreamError as exc:
        return CheckResult(thread, *_explain(thread, exc), exc.request_id or "")
    message = f"“{thread}” is live; its details are up to date."
    return CheckResult(thread, CheckResult.OK, message, live.request_id or "")


@dataclass
class Summary:
    """What `reconcile_all` did, for the command's report."""

    checked: int = 0  # the upstream answered for the thread (gone included)
    gone: int = 0
    skipped: int = 0  # not checked: their key was rejected
    rejected_keys: dict[int, CheckResult] = field(default_factory=dict)  # key pk -> first one
    errors: list[CheckResult] = field(default_factory=list)  # the failed checks

    def add(self, result: CheckResult) -> None:
        if result.outcome in (CheckResult.OK, CheckResult.GONE):
            self.checked += 1
            self.gone += result.outcome == CheckResult.GONE
        elif result.outcome == CheckResult.FAILED:
            self.errors.append(result)
        else:
            self.skipped += 1
            if result.outcome == CheckResult.KEY_REJECTED:
                self.rejected_keys.setdefault(result.thread.api_key_id, result)


def _reconcilable_threads() -> QuerySet[TrackedThread]:
    return (
        TrackedThread.objects.select_related("api_key", "api_key__team", "tracked_by")
        .exclude(state=State.DELETED)
        .filter(api_key__revoked_at__isnull=True)
    )


def _batches(queryset: QuerySet[TrackedThread], size: int) -> Iterator[list[TrackedThread]]:
    """Lists of at most `size` rows in pk order: the table is never loaded whole."""
    last_pk = 0
    while batch := list(queryset.filter(pk__gt=last_pk).order_by("pk")[:size]):
        yield batch
        last_pk = batch[-1].pk


def _check_in_worker(threads: list[TrackedThread], rejected: set[int]) -> list[CheckResult]:
    """Check threads one after another in a pool thread, then close its DB connection.

    `rejected` (key pks) is shared by the workers: once a key is rejected, its other threads
    are skipped rather than sent to be rejected again.
    """
    try:
        results: list[CheckResult] = []
        for thread in threads:
            if thread.api_key_id in rejected:
                result = CheckResult(
                    thread, CheckResult.SKIPPED, "Not checked: the upstream rejected its key."
                )
            else:
                result = check_thread(thread)
                if result.outcome == CheckResult.KEY_REJECTED:
                    rejected.add(thread.api_key_id)
            results.append(result)
        return results
    finally:
        connections.close_all()


def reconcile_all(*, batch_size: int = 200, workers: int = 4) -> Summary:
    """Check every thread under a live key, `workers` at a time; returns a `Summary`.

    In each batch the first thread of every key not yet accepted in this run is checked
    before the others, so a rejected key costs one request, not one per thread.
    """
    summary, rejected, accepted = Summary(), set[int](), set[int]()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile") as pool:
        for batch in _batches(_reconcilable_threads(), batch_size):
            probes: dict[int, TrackedThread] = {}
            for thread in batch:
                if thread.api_key_id not in accepted and thread.api_key_id not in rejected:
                    probes.setdefault(thread.api_key_id, thread)
            probe_pks = {thread.pk for thread in probes.values()}
            rest = [thread for thread in batch if thread.pk not in probe_pks]
            for threads in (list(probes.values()), rest):
                slices = [threads[start::workers] for start in range(workers)]
                for results in pool.map(_check_in_worker, slices, itertools.repeat(rejected)):
                    for result in results:
                        summary.add(result)
                        if result.outcome in (CheckResult.OK, CheckResult.GONE):
                            accepted.add(result.thread.api_key_id)
    return summary
