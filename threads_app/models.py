"""Data kept by the dashboard: teams, stored API keys, tracked threads and the audit chain.

The upstream API has no list endpoint, so `TrackedThread` is the dashboard's memory of every
thread it created or was told about. Secrets live only in `ApiKey.secret_encrypted`.
"""

import re
import unicodedata
from collections.abc import Iterable
from typing import Any, NoReturn
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Lower
from django.utils.safestring import SafeString


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Its owners must turn on two-factor authentication (threads_app/middleware.py).
    owners_need_two_factor = models.BooleanField(default=False)
    # Two-person approval: a deletion of more than this many of the team's threads waits for
    # another owner's approval (services.approvals); None: the rule is off.
    approval_threshold = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)
    # The single sign-on provider (its OIDC_PROVIDERS id) whose team mapping made and manages
    # this membership; empty for one made by hand, which no mapping ever touches.
    managed_by = models.CharField(max_length=50, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="unique_membership"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


# --- Usernames: the one rule for every form that creates or renames an account -------------
# Log-in finds an account by its username in any case (allauth), so two usernames differing only
# by case would lock both out: they are unique regardless of case, in the database too
# (migration 0012's index on LOWER(username)). A username has no "@", so it never passes for an
# email (invitations to an email go to the account with that email), and it is plain ASCII: no
# look-alike letters from other scripts (an "admin" spelt with a Cyrillic "a"), and LOWER()
# folds it the same on PostgreSQL and SQLite.
USERNAME_MAX_LENGTH = 150
USERNAME_HELP = "Letters a-z, digits and . _ + - only (no spaces, no @). Mia and mia are one name."
_USERNAME_CHARACTERS = re.compile(r"[A-Za-z0-9._+-]+")


def normalise_username(username: str) -> str:
    """A username as typed, made comparable: compatibility forms folded (a full-width letter
    is its ASCII one, as Django's forms do it) and surrounding whitespace trimmed; the case
    is kept."""
    return unicodedata.normalize("NFKC", username).strip()


def validate_username(username: str) -> None:
    """Raise a ValidationError saying what is wrong with a new username (taken aside)."""
    if not username:
        raise ValidationError("Enter a username.", code="required")
    if len(username) > USERNAME_MAX_LENGTH:
        raise ValidationError(
            f"A username has at most {USERNAME_MAX_LENGTH} characters.", code="max_length"
        )
    if "@" in username:
        raise ValidationError(
            "A username cannot contain “@”: it would look like an email address.", code="email"
        )
    if not _USERNAME_CHARACTERS.fullmatch(username):
        raise ValidationError(
            "Use only letters a-z, digits and . _ + - in a username "
            "(no spaces, accents or other alphabets).",
            code="invalid",
        )


def normalise_identifier(identifier: str) -> str:
    """How an invitation names its invitee: an email (anything with an "@") or a username,
    normalised as a username is and lower-cased, as log-in finds both in any case (so "Bob"
    and "bob" are one pending invitation)."""
    return normalise_username(identifier).lower()


class Invitation(models.Model):
    """An owner's invitation to join a team, addressed to a username or an email as typed.

    It names no user: whether an account answers to the identifier is known only when
    someone logged in under it accepts or declines. One to an email also goes out as a
    link: its token is kept only as a hash, and the invitation expires (`expires_at`).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        REVOKED = "revoked", "Revoked"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    # Normalised with `normalise_identifier`; long enough for any email.
    identifier = models.CharField(max_length=254)
    role = models.CharField(max_length=10, choices=Membership.Role.choices)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    responded_at = models.DateTimeField(null=True, blank=True)
    # An emailed invitation's link: the SHA-256 of its token (the token itself is only in the
    # email), and when the invitation stops counting (it cannot be accepted any more).
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "identifier"],
                condition=Q(status="pending"),
                name="unique_pending_invitation",
            ),
        ]
        indexes = [models.Index(fields=["identifier", "status"], name="invitation_invitee")]

    def __str__(self) -> str:
        return f"{self.identifier} to {self.team} ({self.status})"


class ApiKey(models.Model):
    """An upstream API key, owned by exactly one user or exactly one team."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys"
    )
    label = models.CharField(max_length=100)
    secret_encrypted = models.TextField(editable=False)
    hint = models.CharField(max_length=20, editable=False)
    # Keyed hash of the secret: finds duplicates without decrypting every row.
    fingerprint = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    # The upstream's last complaint about this key (never contains the key itself).
    last_error = models.CharField(max_length=500, blank=True)
    failing = models.BooleanField(default=False)

    class Meta:
        ordering = ["label", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(owner__isnull=False, team__isnull=True))
                | (Q(owner__isnull=True, team__isnull=False)),
                name="apikey_owned_by_user_xor_team",
            ),
            models.UniqueConstraint(
                fields=["owner", "fingerprint"],
                condition=Q(revoked_at__isnull=True, owner__isnull=False),
                name="unique_live_personal_key",
            ),
            models.UniqueConstraint(
                fields=["team", "fingerprint"],
                condition=Q(revoked_at__isnull=True, team__isnull=False),
                name="unique_live_team_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.hint})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


# When a thread was created, as the list shows, filters and sorts it: upstream, or (unknown)
# when the dashboard began tracking it; and the key of its label's A to Z sort.
CREATED = Coalesce("upstream_created_at", "tracked_at")
LABEL_KEY = Lower("label")


class TrackedThread(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        GONE = "gone", "Gone upstream"
        DELETING = "deleting", "Being deleted"  # claimed by a deletion whose outcome is unknown
        DELETED = "deleted", "Deleted"

    thread_id = models.CharField(max_length=100)
    # Both foreign keys lead the list's composite indexes below, which serve their lookups too.
    api_key = models.ForeignKey(
        ApiKey, on_delete=models.PROTECT, related_name="threads", db_index=False
    )
    label = models.CharField(max_length=200, blank=True)
    tracked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    tracked_at = models.DateTimeField(auto_now_add=True)
    upstream_created_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tool_resources = models.JSONField(default=dict, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    # While `deleting`: when the deletion claimed the thread, and the state it goes back to if
    # the deletion fails (services.deletions).
    deletion_started_at = models.DateTimeField(null=True, blank=True)
    state_before_deletion = models.CharField(max_length=10, choices=State.choices, blank=True)
    # Lower-cased thread id, label and metadata values: what the list's search box matches.
    # Indexed for substring search by migration 0009: a pg_trgm GIN index on PostgreSQL, an
    # FTS5 trigram table kept in step by triggers on SQLite (`SEARCH_TABLE`).
    search_text = models.TextField(blank=True, editable=False)

    SEARCH_TABLE = "threads_app_trackedthread_search"

    # Set on the rows of the list page by its view (views.threads), not stored: each worked
    # out once per row. `delete_url` is None where the user may not delete the thread; `pair`
    # is the metadata pair the row shows (`pair_matched`: the search found it), `more_pairs`
    # how many others there are.
    display_name: str
    detail_url: str
    delete_url: str | None
    created_time: SafeString
    pair: tuple[str, str] | None
    pair_matched: bool
    more_pairs: int

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "thread_id"], name="unique_thread_per_key"),
        ]
        # The list's sorts (`CREATED`, `LABEL_KEY`, then id), per key (a user's threads are read
        # key by key: paging.keyset_page's partitions) and over the whole table (a superuser),
        # alone and after the filters that narrow by equality (state, tracked by).
        indexes = [
            models.Index(F("api_key"), CREATED, F("id"), name="thread_key_created"),
            models.Index(F("api_key"), LABEL_KEY, F("id"), name="thread_key_label"),
            models.Index(F("api_key"), F("state"), CREATED, F("id"), name="thread_key_state"),
            models.Index(
                F("api_key"), F("tracked_by"), CREATED, F("id"), name="thread_key_tracker"
            ),
            models.Index(CREATED, F("id"), name="thread_created"),
            models.Index(LABEL_KEY, F("id"), name="thread_label"),
            models.Index(F("state"), CREATED, F("id"), name="thread_state_created"),
            models.Index(F("tracked_by"), CREATED, F("id"), name="thread_tracker_created"),
            models.Index(fields=["thread_id"], name="thread_upstream_id"),
        ]

    def __str__(self) -> str:
        return self.label or self.thread_id

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Every save keeps the search text in step (`build_search_text`, its one builder)."""
        self.search_text = self.build_search_text()
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "search_text"}
        super().save(*args, **kwargs)

    def build_search_text(self) -> str:
        return self.search_text_of(self.thread_id, self.label, self.metadata)

    @staticmethod
    def search_text_of(thread_id: str, label: str, metadata: dict[str, Any] | None) -> str:
        """The one builder of `search_text` (bulk loads call it without making instances)."""
        values = [thread_id, label, *(str(v) for v in (metadata or {}).values())]
        return "\n".join(values).lower()

    @property
    def deletion_begun(self) -> bool:
        """Deleted, or being deleted: not to be deleted, edited or asked about again."""
        return self.state in (self.State.DELETING, self.State.DELETED)


class ThreadCount(models.Model):
    """How many tracked threads a key has in a state: what the overview reads, so that its
    cost does not grow with the threads.

    Kept by database triggers on `TrackedThread` (migration 0010): every insert, delete and
    change of a row's key or state adds +1 or -1 here, whichever code (or SQL) made it. The
    count of (key, state) is the sum over its shards. On PostgreSQL each connection adds to a
    shard of its own (its backend's pid), so concurrent writers never wait for one another
    here, and never deadlock; `services.counts.fold_thread_counts` (the worker's sweep) folds
    the shards into shard 0. On SQLite, one writer at a time, everything is shard 0.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="thread_counts")
    state = models.CharField(max_length=10, choices=TrackedThread.State.choices)
    shard = models.IntegerField(default=0)
    threads = models.IntegerField(default=0)  # a shard other than 0 may be below zero

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "state", "shard"], name="unique_thread_count_shard"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.api_key_id}/{self.state}/{self.shard}: {self.threads}"


class DailyThreadActivity(models.Model):
    """Threads created, imported and deleted on a UTC day, per scope of the audit log: a team,
    or (team 0) the owner of a personal key. What the overview's chart reads.

    Kept by a database trigger on `AuditEvent` (migrations 0010, 0013): a `thread.created`
    event adds to `created`, a `thread.imported` one to `imported`, a `thread.deleted` event
    whose thread went (success, already gone) to `deleted`. Audit events are appended under
    the chain head's lock, one append at a time, so these rows are too: they add no wait of
    their own.
    """

    NO_TEAM = 0  # `team_id` of a personal key's events (`owner_id` is 0 for a team's)

    day = models.DateField()
    team_id = models.BigIntegerField(default=NO_TEAM)
    owner_id = models.BigIntegerField(default=0)
    created = models.IntegerField(default=0)
    imported = models.IntegerField(default=0)
    deleted = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "team_id", "owner_id"], name="unique_daily_thread_activity"
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.day} team {self.team_id} owner {self.owner_id}: "
            f"+{self.created} +{self.imported} imported -{self.deleted}"
        )


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AppendOnlyQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit events cannot be updated.")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("Audit events cannot be deleted.")

    def bulk_update(
        self, objs: Iterable["AuditEvent"], fields: Iterable[str], batch_size: int | None = None
    ) -> NoReturn:
        raise AppendOnlyError("Audit events cannot be updated.")


class AuditEvent(models.Model):
    """One link of the append-only, HMAC-chained audit log.

    Who and what are kept as plain values (no foreign keys), so deleting a user, key or
    team never rewrites history; `verify_audit` recomputes the chain.
    """

    class Action(models.TextChoices):
        THREAD_CREATED = "thread.created", "Thread created"
        THREAD_IMPORTED = "thread.imported", "Thread imported"
        THREAD_UPDATED = "thread.updated", "Thread updated"
        THREAD_UNTRACKED = "thread.untracked", "Thread untracked"
        THREAD_DELETE_INTENT = "thread.delete_intent", "Thread deletion requested"
        THREAD_DELETED = "thread.deleted", "Thread deletion outcome"
        KEY_ADDED = "key.added", "Key added"
        KEY_ROTATED = "key.rotated", "Key rotated"
        KEY_REVOKED = "key.revoked", "Key revoked"
        MEMBER_ADDED = "member.added", "Member added"
        MEMBER_REMOVED = "member.removed", "Member removed"
        MEMBER_ROLE_CHANGED = "member.role_changed", "Member role changed"
        INVITATION_SENT = "invitation.sent", "Invitation sent"
        INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
        INVITATION_DECLINED = "invitation.declined", "Invitation declined"
        INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
        TEAM_CREATED = "team.created", "Team created"
        TEAM_DELETED = "team.deleted", "Team deleted"
        TEAM_TWO_FACTOR_RULE = "team.two_factor_rule", "Owners' two-factor rule changed"
        RETENTION_SET = "retention.set", "Retention policy set"
        RETENTION_ENABLED = "retention.enabled", "Retention policy enabled"
        RETENTION_DISABLED = "retention.disabled", "Retention policy disabled"
        LOGGED_IN = "account.logged_in", "Logged in"
        LOGGED_OUT = "account.logged_out", "Logged out"
        LOGIN_FAILED = "account.login_failed", "Log-in failed"
        LOCKED_OUT = "account.locked_out", "Log-in locked out"
        PASSWORD_CHANGED = "account.password_changed", "Password changed"
        PASSWORD_RESET = "account.password_reset", "Password reset"
        # One event per authenticator (TOTP, recovery codes) added or removed, by any path.
        TWO_FACTOR_ENABLED = "account.two_factor_enabled", "Two-factor method added"
        TWO_FACTOR_DISABLED = "account.two_factor_disabled", "Two-factor method removed"
        RECOVERY_CODES_RENEWED = "account.recovery_codes_renewed", "Recovery codes renewed"
        ACCESS_CHANGED = "account.access_changed", "Superuser, staff or active status changed"
        GROUPS_CHANGED = "account.groups_changed", "Groups changed"
        PERMISSIONS_CHANGED = "account.permissions_changed", "Permissions changed"
        SSO_PROVISIONED = "account.sso_provisioned", "Account created by single sign-on"
        SSO_LINKED = "account.sso_linked", "Account linked to single sign-on"
        SSO_REFUSED = "account.sso_refused", "Single sign-on refused"
        BREAK_GLASS = "account.break_glass", "Break-glass password log-in"
        TOKEN_CREATED = "token.created", "Access token created"
        TOKEN_FIRST_USED = "token.first_used", "Access token used for the first time"
        TOKEN_NEW_ADDRESS = "token.new_address", "Access token used from a new address"
        TOKEN_REVOKED = "token.revoked", "Access token revoked"
        TOKEN_EXPIRED = "token.expired", "Access token expired"
        # Webhooks (issue 19, item 3)
        WEBHOOK_CREATED = "webhook.created", "Webhook endpoint registered"
        WEBHOOK_UPDATED = "webhook.updated", "Webhook endpoint changed"
        WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated", "Webhook secret rotated"
        WEBHOOK_DELETED = "webhook.deleted", "Webhook endpoint deleted"
        WEBHOOK_DISABLED = "webhook.disabled", "Webhook endpoint disabled after failing"
        WEBHOOK_RESENT = "webhook.resent", "Webhook message sent again"
        # Deletion receipts (issue 18)
        RECEIPT_DOWNLOADED = "receipt.downloaded", "Deletion receipt downloaded"
        # Two-person approval of large deletions (issue 18, h18a)
        TEAM_APPROVAL_RULE = "team.approval_rule", "Large-deletion approval rule changed"
        JOB_APPROVAL_REQUESTED = "job.approval_requested", "Deletion approval requested"
        JOB_APPROVED = "job.approved", "Deletion approved"
        JOB_APPROVAL_REFUSED = "job.approval_refused", "Deletion approval refused"
        JOB_APPROVAL_EXPIRED = "job.approval_expired", "Deletion approval expired"
        # Export by selection (issue 18)
        EXPORT_REQUESTED = "export.requested", "Export requested"
        EXPORT_DOWNLOADED = "export.downloaded", "Export downloaded"
        EXPORT_EXPIRED = "export.expired", "Export expired and removed"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCESS = "success", "Success"
        ALREADY_GONE = "already_gone", "Already gone"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"
        # Deletion receipts (issue 18): the GET resolving an interrupted deletion answered 404.
        GONE_AFTER_INTERRUPT = "gone_interrupted", "Gone, confirmed after an interrupted deletion"

    # The outcomes of a deletion whose thread went (it is marked deleted).
    REMOVED_OUTCOMES = (Outcome.SUCCESS, Outcome.ALREADY_GONE, Outcome.GONE_AFTER_INTERRUPT)

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    team_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    team_name = models.CharField(max_length=100, blank=True)
    # The personal key's owner, for events outside any team (who may see them).
    owner_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    key_hint = models.CharField(max_length=20, blank=True)
    thread_id = models.CharField(max_length=100, blank=True, db_index=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    # A thread's JSON transcript taken just before its deletion (its SHA-256 is in the hash).
    snapshot = models.TextField(blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["action", "-sequence"], name="audit_action_newest"),
            models.Index(fields=["created_at"], name="audit_created"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be updated.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditChainHead(models.Model):
    """The single row locked while appending, so concurrent appends make one chain.

    Database triggers (migration 0003) refuse to delete it or to move it back.
    """

    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"audit chain head at #{self.sequence}"


class SavedView(models.Model):
    """A named filter and sort of the thread list: its creator's, or (set by an owner) shared
    with a team, whose members see it above the list. `filters` is `ThreadFilters.to_data()`."""

    name = models.CharField(max_length=80)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="saved_views"
    )
    filters = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name


class Selection(models.Model):
    """The thread list's filter, frozen: the threads matching `filters` (`ThreadFilters.to_data()`)
    that its creator may act on, among those tracked when it was made (pk <= `bound_pk`), so a
    thread tracked later never joins it. `count` is how many it held when made: deleting
    them asks for that number to be typed (the request starting the job counts nothing)."""

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="selections"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    filters = models.JSONField(default=dict)
    bound_pk = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)
    saved_view = models.ForeignKey(
        SavedView, null=True, blank=True, on_delete=models.SET_NULL, related_name="selections"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"selection #{self.pk} ({self.count})"


class BulkDeleteJob(models.Model):
    """A job run by a background task over many threads (today: deleting them); its progress
    lives here, not in memory. Jobs have no size limit.

    Its items are either given when it is made (ticked rows) or filled by the worker, in
    batches in pk order, from its `selection` or retention `policy` (`filled` is False until
    done; `fill_cursor` is the last thread pk filled, `bound_pk` the highest it may take).
    `total` and `done` count its items and those with an outcome (kept with each save).

    `task_id` is the task (a `DBTaskResult`) that runs it now: a run that finds another id
    there has been taken over and stops. `worker_id` and `progress_at` say which worker runs
    it and when that run last saved progress; `run_started_at` and `run_done` when this run
    began and how many were done then (its rate). A job whose worker stopped is resumed by a
    new task (`threads_app.tasks.sweep`, `manage.py resume_jobs`): `resumed_at` and
    `resume_note` say when and why. A job whose task raised is failed, with the task's `error`.
    Paused or cancelled, its run stops after the deletions in flight (their outcomes saved)
    and leaves `task_id` empty.
    """

    class Kind(models.TextChoices):
        DELETE = "delete", "Delete"
        EXPORT = "export", "Export"

    class State(models.TextChoices):
        QUEUED = "queued", "Waiting"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        CANCELLED = "cancelled", "Cancelled"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        # Two-person approval (services.approvals): waiting for its approvals, not queued; and
        # not approved in time (a refused one is cancelled).
        AWAITING_APPROVAL = "approval", "Awaiting approval"
        EXPIRED = "expired", "Approval expired"

    ACTIVE_STATES = (State.QUEUED, State.RUNNING)  # a run sends while the job is in these

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.DELETE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bulk_delete_jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    snapshot_before_delete = models.BooleanField(default=False)
    # The retention policy that started the job (its setter is `created_by`), or None.
    policy = models.ForeignKey(
        "RetentionPolicy",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="bulk_delete_jobs",
    )
    selection = models.ForeignKey(
        Selection, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    # The team whose owners see the job too (its selection's team or key's team, its policy's).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    filled = models.BooleanField(default=True)
    fill_cursor = models.BigIntegerField(default=0)
    bound_pk = models.BigIntegerField(null=True, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    worker_id = models.CharField(max_length=64, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    run_started_at = models.DateTimeField(null=True, blank=True)
    run_done = models.PositiveIntegerField(default=0)
    resumed_at = models.DateTimeField(null=True, blank=True)
    resume_count = models.PositiveIntegerField(default=0)
    resume_note = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    # Awaiting approval until then (services.approvals); None for a job that needed none.
    approval_expires_at = models.DateTimeField(null=True, blank=True)
    # An export's file (`services.exports`): its name in the "exports" storage once written
    # whole, its size, and when its files were removed (expired, or the job cancelled).
    export_file = models.CharField(max_length=300, blank=True)
    export_size = models.PositiveBigIntegerField(null=True, blank=True)
    export_removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "id"], name="job_state_idx")]

    def __str__(self) -> str:
        return f"bulk {self.kind} #{self.pk} ({self.state})"

    @property
    def receipt_ready(self) -> bool:
        """Whether the job's receipt can be issued: a delete job that finished, or was
        cancelled and has no run left resolving its interrupted deletions."""
        if self.kind != self.Kind.DELETE:
            return False
        stopped = self.state == self.State.CANCELLED and not self.task_id
        return self.state == self.State.FINISHED or stopped

    @property
    def audit_details(self) -> dict[str, Any]:
        """What each deletion of the job adds to its audit events' details: the job, and the
        retention policy that started it and who set it (the job's creator, the events' actor)."""
        details: dict[str, Any] = {"job": self.pk}
        if self.policy_id is not None:
            details |= {"policy": self.policy_id, "set_by": self.created_by.get_username()}
        return details


class BulkDeleteItem(models.Model):
    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        DELETED = "deleted", "Deleted"
        ALREADY_GONE = "already_gone", "Already gone"
        REFUSED = "refused", "Refused"
        FAILED = "failed", "Failed"
        # Deletion receipts (issue 18): as AuditEvent.Outcome.GONE_AFTER_INTERRUPT.
        GONE_AFTER_INTERRUPT = "gone_interrupted", "Gone, confirmed after an interrupted deletion"
        # Export by selection: its line is in the file (a thread gone upstream: ALREADY_GONE).
        EXPORTED = "exported", "Exported"

    job = models.ForeignKey(BulkDeleteJob, on_delete=models.CASCADE, related_name="items")
    tracked_thread = models.ForeignKey(
        TrackedThread, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    thread_id = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.PENDING)
    message = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=100, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The sequence of its deletion's intent, saved with the claim: a pending item that has one
    # was interrupted between intent and outcome, and is resolved by asking the upstream first.
    intent_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    # The sequence of its outcome's audit event, saved with the outcome (None: none recorded):
    # the job's receipt names it, and its hash, for each thread.
    outcome_sequence = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["job", "outcome", "id"], name="job_item_outcome_idx")]

    def __str__(self) -> str:
        return f"{self.thread_id}: {self.outcome}"


# A deletion's audit outcome, as its job's item says it.
ITEM_OUTCOME_OF: dict[str, str] = {
    AuditEvent.Outcome.SUCCESS: BulkDeleteItem.Outcome.DELETED,
    AuditEvent.Outcome.ALREADY_GONE: BulkDeleteItem.Outcome.ALREADY_GONE,
    AuditEvent.Outcome.GONE_AFTER_INTERRUPT: BulkDeleteItem.Outcome.GONE_AFTER_INTERRUPT,
    AuditEvent.Outcome.REFUSED: BulkDeleteItem.Outcome.REFUSED,
    AuditEvent.Outcome.FAILED: BulkDeleteItem.Outcome.FAILED,
}


class JobApproval(models.Model):
    """One team's approval a job waits for (two-person approval): the team's threads it
    deletes (`threads`, more than the team's `approval_threshold` when requested), and who
    decided, when and how ("" while waiting). The team is kept by name too, so the job's page
    still says whose approval it was if the team is deleted."""

    class Decision(models.TextChoices):
        WAITING = "", "Waiting"
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"

    job = models.ForeignKey(BulkDeleteJob, on_delete=models.CASCADE, related_name="approvals")
    team = models.ForeignKey(
        Team, null=True, on_delete=models.SET_NULL, related_name="job_approvals"
    )
    team_name = models.CharField(max_length=100)
    threads = models.PositiveIntegerField()
    threshold = models.PositiveIntegerField()
    decision = models.CharField(
        max_length=10, choices=Decision.choices, default=Decision.WAITING, blank=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["team_name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "team"], name="unique_job_team_approval"),
        ]

    def __str__(self) -> str:
        return f"{self.team_name}'s approval of job #{self.job_id}: {self.decision or 'waiting'}"


class RetentionPolicy(models.Model):
    """ "Delete the key's threads created more than `max_age_days` ago": off until enabled.

    Enforced by `manage.py enforce_retention` (services.retention) as bulk-delete jobs started
    in the name of `set_by`, who must still be allowed to manage and use the key.
    """

    MIN_DAYS = 1
    MAX_DAYS = 3650

    api_key = models.OneToOneField(
        ApiKey, on_delete=models.CASCADE, related_name="retention_policy"
    )
    max_age_days = models.PositiveIntegerField(
        validators=[MinValueValidator(MIN_DAYS), MaxValueValidator(MAX_DAYS)]
    )
    enabled = models.BooleanField(default=False)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["api_key_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_age_days__gte=1, max_age_days__lte=3650),
                name="retention_max_age_in_bounds",
            ),
        ]

    def __str__(self) -> str:
        state = "on" if self.enabled else "off"
        return f"retention of {self.api_key}: {self.max_age_days} days ({state})"


class WorkerHeartbeat(models.Model):
    """A live `db_worker` process: written at start and every WORKER_HEARTBEAT_SECONDS.

    A worker stopped cleanly removes its row; one killed leaves a row that stops beating, and
    after WORKER_LEASE_SECONDS the tasks it was running are abandoned (`threads_app.tasks.sweep`).
    """

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return f"worker {self.worker_id} ({self.hostname}:{self.pid})"


class KeyRateBudget(models.Model):
    """The one rate budget of an API key, shared by every worker and job sending with it
    (`services.budget`): how many calls may be in flight on the key in all (`limit`, learnt
    from the answers), and no call before `pause_until` (a 429's Retry-After)."""

    api_key = models.OneToOneField(
        ApiKey, on_delete=models.CASCADE, primary_key=True, related_name="rate_budget"
    )
    limit = models.FloatField(default=8.0)
    pause_until = models.DateTimeField(null=True, blank=True)
    decreased_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"budget of key {self.api_key_id}: {self.limit:g} in flight"


class KeyRateLease(models.Model):
    """A run sending with a key now: the key's budget is split between its live leases
    (`seen_at` within the lease time), so two workers on one key do not both take all of it."""

    budget = models.ForeignKey(KeyRateBudget, on_delete=models.CASCADE, related_name="leases")
    holder = models.CharField(max_length=100)
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "holder"], name="unique_rate_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.holder} on key {self.budget_id}"


class ApiToken(models.Model):
    """An access token of the automation API (`/api/v1/`): a user's own (`team` None), or a
    team's (made by one of its owners, `created_by`), limited to `scopes`.

    Only the SHA-256 of the token is kept (`token_hash`): the token is shown once, when it is
    made. It has 256 random bits, so a fast hash is enough (nothing to guess from it). A
    request with it acts as `created_by` with that user's rights at the time of the request
    (roles are checked on every request), narrowed to the team for a team token.
    """

    class Scope(models.TextChoices):
        THREADS_READ = "threads:read", "threads:read — list and read threads, keys' hints, jobs"
        THREADS_WRITE = "threads:write", "threads:write — create, import and edit threads"
        THREADS_DELETE = "threads:delete", "threads:delete — delete threads, start bulk deletes"
        KEYS_MANAGE = "keys:manage", "keys:manage — add, rotate and revoke API keys"
        AUDIT_READ = "audit:read", "audit:read — read and export the audit log"

    DEFAULT_DAYS = 90
    MAX_DAYS = 365

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="api_tokens"
    )
    label = models.CharField(max_length=100)
    # The token's first characters (its prefix and 4 more), to recognise it in the list.
    hint = models.CharField(max_length=20, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # When its expiry was recorded in the audit log (once).
    expiry_recorded_at = models.DateTimeField(null=True, blank=True)
    # The API's rate limit: requests counted in the current window (`rate_window`, the
    # window's number since the epoch), updated in one atomic UPDATE per request.
    rate_window = models.BigIntegerField(default=0, editable=False)
    rate_count = models.IntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["expires_at"], name="api_token_expiry")]

    def __str__(self) -> str:
        return f"{self.label} ({self.hint}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class ApiTokenAddress(models.Model):
    """A client address a token was used from: a new one is audited once."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="addresses")
    address = models.GenericIPAddressField()
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "address"], name="unique_token_address"),
        ]

    def __str__(self) -> str:
        return f"{self.token_id} from {self.address}"


class WebhookEndpoint(models.Model):
    """An HTTPS URL that is sent the events it asks for, signed the Standard Webhooks way
    (threads_app/services/webhooks.py): a team's (its owners manage it) or a user's own
    (`owner`, for their personal keys). The secret (`whsec_…`) is kept encrypted like an API
    key and shown only when it is made or rotated."""

    class Event(models.TextChoices):
        THREAD_DELETED = "thread.deleted", "thread.deleted — a thread was deleted (or found gone)"
        JOB_FINISHED = "job.finished", "job.finished — a bulk job finished"
        JOB_NEEDS_APPROVAL = "job.needs_approval", "job.needs_approval — a job waits for approval"
        KEY_FAILING = "key.failing", "key.failing — the API started rejecting a key"
        RETENTION_ENFORCED = "retention.enforced", "retention.enforced — a retention policy ran"

    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    # Why it was turned off by the app (deliveries failing for a day), if it was.
    disabled_reason = models.CharField(max_length=300, blank=True)
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(owner__isnull=False, team__isnull=True))
                | (Q(owner__isnull=True, team__isnull=False)),
                name="webhook_owned_by_user_xor_team",
            ),
        ]

    def __str__(self) -> str:
        return self.description or self.url_origin

    @property
    def url_origin(self) -> str:
        """The URL's scheme, host and port, "/…" standing for the rest: what is shown to those
        who may not change the endpoint (a path or query often holds the receiver's own
        token)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        port = f":{parts.port}" if parts.port else ""
        rest = "/…" if parts.path not in ("", "/") or parts.query else ""
        return f"{parts.scheme}://{host}{port}{rest}"


class WebhookDelivery(models.Model):
    """One message to one endpoint, tried until it is answered 2xx or its day is over
    (`give_up_at`); `message_id` is its `webhook-id`, the same on every attempt."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    message_id = models.CharField(max_length=40, unique=True)
    event = models.CharField(max_length=40)
    body = models.TextField()  # the JSON sent, byte for byte the same on every attempt
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    give_up_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One try of a delivery: what the receiver answered, or why nothing was sent or heard."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows"
    )
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at}"
