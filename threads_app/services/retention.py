"""Retention policies: "delete this key's threads created more than N days ago".

A key's owners set its policy (`set_retention_policy`); it is off until enabled, and it can
only be enabled for the number of days whose preview was shown (`PreviewFirst`). Every change
is audited (set, enabled, disabled, with the settings before and after).

`enforce_retention` (run by `manage.py enforce_retention` or `tasks.enforce_retention_task`)
deletes through the same audited pipeline as anyone's bulk delete: one job per policy run,
whatever its size (`services.jobs.start_policy_job`: the worker fills it with the key's
threads older than the policy allows), started in the name of the policy's setter and naming
the policy, so every deletion's intent and outcome say `{"job": id, "policy": id, "set_by":
username}`. A policy whose setter may no longer
manage or use the key is not enforced (`selectors.retention_not_enforced`).
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteJob,
    RetentionPolicy,
    WebhookEndpoint,
)
from threads_app.services import webhooks
from threads_app.services.jobs import start_policy_job
from threads_app.services.refusals import NotAllowed, Refused

Action = AuditEvent.Action


class PreviewFirst(Refused):
    """Enabling a policy needs its preview, for the very same number of days, shown first."""


def set_retention_policy(
    api_key: ApiKey,
    *,
    actor: User,
    max_age_days: int,
    enabled: bool,
    previewed_days: int | None = None,
    origin: Origin | None = None,
) -> RetentionPolicy:
    """Set the key's policy (creating it), with `actor` as its setter; audited.

    Raises `NotAllowed` unless the actor may manage the key, `Refused` for days out of bounds
    or enabling on a revoked key, and `PreviewFirst` when enabling without `previewed_days`
    equal to `max_age_days` (the days whose preview the actor was shown). Saving the settings
    it has, by the setter it has, changes and records nothing. The audit event is
    `retention.enabled` or `retention.disabled` when that switches, else `retention.set`.
    """
    if not selectors.manageable_keys(actor).filter(pk=api_key.pk).exists():
        raise NotAllowed("Only the key's owner or a team owner can set its retention policy.")
    low, high = RetentionPolicy.MIN_DAYS, RetentionPolicy.MAX_DAYS
    if not low <= max_age_days <= high:
        raise Refused(f"Choose between {low} and {high} days.", field="max_age_days")
    if enabled and api_key.is_revoked:
        raise Refused("The key is revoked: a policy cannot be enabled for it.")
    if enabled and previewed_days != max_age_days:
        raise PreviewFirst("Check the preview, then enable.")
    after = {"max_age_days": max_age_days, "enabled": enabled, "set_by": actor.get_username()}
    try:
        with transaction.atomic():
            policy = RetentionPolicy.objects.select_for_update().filter(api_key=api_key).first()
            before = _settings(policy) if policy is not None else None
            if policy is not None and before == after:
                return policy
            policy = policy or RetentionPolicy(api_key=api_key)
            policy.max_age_days, policy.enabled, policy.set_by = max_age_days, enabled, actor
            policy.save()
            audit.record(
                action=_action(before, enabled=enabled),
                outcome=AuditEvent.Outcome.SUCCESS,
                actor=actor,
                api_key=api_key,
                origin=origin,
                details={"policy": policy.pk, "before": before, "after": after},
            )
    except IntegrityError:  # another request created the key's policy meanwhile
        raise Refused("The policy was changed by another request a moment ago.") from None
    return policy


def _settings(policy: RetentionPolicy) -> dict[str, Any]:
    setter = policy.set_by.get_username() if policy.set_by is not None else None
    return {"max_age_days": policy.max_age_days, "enabled": policy.enabled, "set_by": setter}


def _action(before: dict[str, Any] | None, *, enabled: bool) -> str:
    was_enabled = bool(before and before["enabled"])
    if enabled != was_enabled:
        return Action.RETENTION_ENABLED if enabled else Action.RETENTION_DISABLED
    return Action.RETENTION_SET


@dataclass(frozen=True)
class Enforcement:
    """What enforcing one enabled policy did (or, on a dry run, would do)."""

    policy: RetentionPolicy
    count: int = 0  # threads to go, when counted
    thread_ids: list[str] = field(default_factory=list)  # on a dry run: their upstream ids
    job: BulkDeleteJob | None = None  # started (none on a dry run, or with nothing to delete)
    not_enforced: str = ""  # why the policy was not enforced, if it was not

    @property
    def summary(self) -> str:
        if self.not_enforced:
            return f"Not enforced: {self.not_enforced}"
        if not self.count:
            return "Nothing to delete."
        count = f"{self.count} thread{'s' if self.count != 1 else ''}"
        if self.job is None:
            return f"{count} would go."
        return f"{count} to delete: bulk-delete job #{self.job.pk}."


def enforce_retention(
    *, dry_run: bool = False, origin: Origin | None = None, now: datetime | None = None
) -> list[Enforcement]:
    """Enforce every enabled policy: one job per policy, of any size, started by the
    policy's setter and naming the policy.

    With `dry_run`, only say what would go: nothing is started or written. Otherwise each
    policy keeps when it ran and what came of it (`last_run_at`, `last_result`). The jobs are
    queued like every bulk delete (`bulk_delete_task`, run by `db_worker`).
    """
    now = now or timezone.now()
    policies = selectors.enabled_retention_policies()
    done = [_enforce(policy, dry_run=dry_run, origin=origin, now=now) for policy in policies]
    if not dry_run:
        for enforcement in done:
            RetentionPolicy.objects.filter(pk=enforcement.policy.pk).update(
                last_run_at=now, last_result=enforcement.summary[:500]
            )
            _notify_enforced(enforcement)
    return done


def _notify_enforced(enforcement: Enforcement) -> None:
    """`retention.enforced` to the key's team's endpoints (or its owner's own)."""
    policy, key = enforcement.policy, enforcement.policy.api_key
    webhooks.notify(
        event=WebhookEndpoint.Event.RETENTION_ENFORCED,
        team=key.team,
        owner=key.owner,
        data={
            "policy_id": policy.pk,
            "key_id": key.pk,
            "key_label": key.label,
            "team_id": key.team_id,
            "max_age_days": policy.max_age_days,
            "threads": enforcement.count,
            "job_id": enforcement.job.pk if enforcement.job else None,
            "not_enforced": enforcement.not_enforced,
        },
    )


def _enforce(
    policy: RetentionPolicy, *, dry_run: bool, origin: Origin | None, now: datetime
) -> Enforcement:
    reason = selectors.retention_not_enforced(policy)
    if reason is not None:
        return Enforcement(policy, not_enforced=reason)
    threads = selectors.retention_candidates(
        policy.api_key, max_age_days=policy.max_age_days, now=now
    )
    if dry_run:
        thread_ids = list(threads.values_list("thread_id", flat=True))
        return Enforcement(policy, len(thread_ids), thread_ids)
    bound = selectors.highest_thread_pk()
    count = threads.filter(pk__lte=bound).count()
    if not count:
        return Enforcement(policy)
    return Enforcement(
        policy, count, job=start_policy_job(policy, bound_pk=bound, as_of=now, origin=origin)
    )
