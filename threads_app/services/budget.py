"""One rate budget per API key, shared by every worker and job that sends with it.

`AdaptiveConcurrency` learns, from the answers one loop gets, how many calls to keep in
flight; two workers on one key would each believe they have the key's whole limit. So the
learning is kept in the database (`KeyRateBudget`, a row per key): the limit of calls in
flight on the key in all, and the moment before which nothing may be sent (a 429's
Retry-After, seen by any worker). Each run sending with a key holds a lease on it
(`KeyRateLease`, renewed as it syncs) and takes an equal share of the limit. `SharedConcurrency`
is the controller `run_adaptively` drives: it decides as `AdaptiveConcurrency` does, from
the shared figures, which it reads and writes back every SYNC_SECONDS (and at once on a 429):
the additive increases of every run add up on the row, a 429 halves it once per congestion
event (whoever sees it first), and every run pauses until the Retry-After is over.

A run over several keys shares each key's budget: its limit is the smallest share among its
keys, its pause the latest; a 429 counts against all of them (the loop does not say which
key answered, so it errs on the side of sending less).
"""

import math
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest, Least
from django.utils import timezone

from threads_app.models import KeyRateBudget, KeyRateLease
from threads_app.services.concurrency import MAXIMUM, MINIMUM, START, AdaptiveConcurrency

SYNC_SECONDS = 0.5  # how often a run reads and writes its keys' budgets
LEASE_SECONDS = 10.0  # a run that has not synced for this long no longer takes a share


class SharedConcurrency(AdaptiveConcurrency):
    """`AdaptiveConcurrency` over the keys' shared budgets (see the module's docstring).

    `clock` is monotonic seconds, as `run_adaptively`'s; `wall` is the database's time (the
    shared pause is a moment, comparable across machines). Call `close` at the end of the
    run: its leases are given back, so the others take the whole budget again.
    """

    def __init__(
        self,
        key_ids: Iterable[int],
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = timezone.now,
        sync_every: float = SYNC_SECONDS,
    ) -> None:
        super().__init__(START, MINIMUM, MAXIMUM)
        self.key_ids = sorted(set(key_ids))
        self.holder = holder or uuid.uuid4().hex
        self.clock, self.wall, self.sync_every = clock, wall, sync_every
        self._earned = 0.0  # additive increase not yet written to the shared limits
        self._synced_at = -math.inf
        for key_id in self.key_ids:
            KeyRateBudget.objects.get_or_create(api_key_id=key_id)
        self.sync()

    # --- what run_adaptively calls

    def may_send(self, in_flight: int, now: float) -> bool:
        if now - self._synced_at >= self.sync_every:
            self.sync()
        return super().may_send(in_flight, now)

    def on_success(self, latency: float, *, now: float) -> None:
        before = self.limit + self._credit
        super().on_success(latency, now=now)
        self._earned += max(0.0, self.limit + self._credit - before)

    def on_rate_limited(
        self, retry_after: float | None, *, now: float, sent_at: float | None = None
    ) -> None:
        super().on_rate_limited(retry_after, now=now, sent_at=sent_at)
        pause = self.default_pause if retry_after is None else max(0.0, retry_after)
        wall = self.wall()
        sent_wall = wall - timedelta(seconds=now - sent_at) if sent_at is not None else wall
        budgets = KeyRateBudget.objects.filter(api_key_id__in=self.key_ids)
        with transaction.atomic():
            until = wall + timedelta(seconds=pause)
            budgets.filter(pause_until__lt=until).update(pause_until=until)
            budgets.filter(pause_until__isnull=True).update(pause_until=until)
            # Once per congestion event: a 429 for a call sent before the last decrease (by
            # any run) was paid for already.
            fresh = budgets.exclude(decreased_at__gte=sent_wall)
            fresh.update(
                limit=Greatest(F("limit") / 2, Value(float(self.minimum))), decreased_at=wall
            )
        self._earned = 0.0
        self.sync()

    # --- the shared figures

    def sync(self) -> None:
        """Write this run's increase and lease; read the budgets back: this run's limit is
        its share of the smallest, its pause the latest."""
        wall = self.wall()
        budgets = KeyRateBudget.objects.filter(api_key_id__in=self.key_ids)
        with transaction.atomic():
            if self._earned:
                budgets.update(limit=Least(F("limit") + self._earned, Value(float(self.maximum))))
                self._earned = 0.0
            for key_id in self.key_ids:
                KeyRateLease.objects.update_or_create(
                    budget_id=key_id, holder=self.holder, defaults={"seen_at": wall}
                )
        live = KeyRateLease.objects.filter(
            budget_id__in=self.key_ids, seen_at__gte=wall - timedelta(seconds=LEASE_SECONDS)
        )
        runs: dict[int, int] = {}
        for key_id in live.values_list("budget_id", flat=True):
            runs[key_id] = runs.get(key_id, 0) + 1
        shares, pause_until = [], None
        for budget in budgets:
            shares.append(budget.limit / max(1, runs.get(budget.api_key_id, 1)))
            if budget.pause_until is not None and (
                pause_until is None or budget.pause_until > pause_until
            ):
                pause_until = budget.pause_until
        if shares:
            self.limit = max(self.minimum, math.floor(min(shares)))
        now = self.clock()
        if pause_until is not None and pause_until > wall:
            self.pause_until = max(self.pause_until, now + (pause_until - wall).total_seconds())
        self._synced_at = now

    def close(self) -> None:
        """Give the leases back (the others' shares grow at their next sync)."""
        KeyRateLease.objects.filter(holder=self.holder).delete()
