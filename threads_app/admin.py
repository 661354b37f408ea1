"""The Django admin: a superuser's window on every model.

Anything that changes access or destroys data (adding a key, membership changes, deleting a
thread record) goes through the app's services, which check permissions and write the audit
log; the admin bypasses both, so here such records can be looked at and relabelled only.
The audit log itself cannot be touched at all, and a key's secret is never shown.
"""

from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import User
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest

from threads_app.forms.accounts import UserAddForm, UserEditForm
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    RetentionPolicy,
    Team,
    TrackedThread,
)

if TYPE_CHECKING:  # django-stubs makes the admin classes generic; Django itself does not
    from django_stubs_ext import WithAnnotations

    ModelAdmin = admin.ModelAdmin[Any]
    TabularInline = admin.TabularInline[Any, Any]

    class _TeamCounts(TypedDict):
        member_count: int
        key_count: int

    CountedTeam = WithAnnotations[Team, _TeamCounts]
else:
    ModelAdmin, TabularInline = admin.ModelAdmin, admin.TabularInline


class NoAddOrDeleteMixin:
    """Records are created and removed in the app only, where the change is audited.

    Without the delete permission, Django also leaves out the "delete selected" action.
    """

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class ReadOnlyMixin(NoAddOrDeleteMixin):
    """View only: every field is shown read-only and nothing can be saved."""

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class MembershipInline(ReadOnlyMixin, TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    extra = 0


@admin.register(Team)
class TeamAdmin(NoAddOrDeleteMixin, ModelAdmin):
    list_display = ("name", "member_count", "key_count", "created_at")
    search_fields = ("name",)
    fields = ("name", "created_at")
    readonly_fields = ("created_at",)
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        teams: QuerySet[Team] = super().get_queryset(request)
        return teams.annotate(
            member_count=Count("memberships", distinct=True),
            key_count=Count("api_keys", distinct=True),
        )

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, team: "CountedTeam") -> int:
        return team.member_count

    @admin.display(description="Keys", ordering="key_count")
    def key_count(self, team: "CountedTeam") -> int:
        return team.key_count


@admin.register(Membership)
class MembershipAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("user", "team", "role", "created_at")
    list_filter = ("role", "team")
    search_fields = ("user__username", "user__email", "team__name")
    list_select_related = ("user", "team")


@admin.register(ApiKey)
class ApiKeyAdmin(NoAddOrDeleteMixin, ModelAdmin):
    """No adding here: a new key is verified against the upstream and encrypted by the app.

    No deleting either: revoke the key in the app (audited). The secret and its fingerprint
    are excluded from every form; only the hint is shown.
    """

    list_display = (
        "label",
        "owner",
        "team",
        "hint",
        "created_at",
        "last_used_at",
        "revoked_at",
        "failing",
    )
    list_filter = ("failing", ("revoked_at", admin.EmptyFieldListFilter), "team")
    search_fields = ("label", "hint", "owner__username", "team__name")
    list_select_related = ("owner", "team")
    exclude = ("secret_encrypted", "fingerprint")
    fields = (
        "label",
        "hint",
        "owner",
        "team",
        "created_by",
        "created_at",
        "rotated_at",
        "revoked_at",
        "last_used_at",
        "last_checked_at",
        "failing",
        "last_error",
    )
    readonly_fields = tuple(name for name in fields if name not in ("label", "failing"))


@admin.register(TrackedThread)
class TrackedThreadAdmin(NoAddOrDeleteMixin, ModelAdmin):
    list_display = ("thread_id", "label", "api_key", "state", "tracked_by", "tracked_at")
    list_filter = ("state", "api_key__team")
    search_fields = ("thread_id", "label")
    list_select_related = ("api_key", "tracked_by")
    fields = (
        "thread_id",
        "label",
        "api_key",
        "state",
        "tracked_by",
        "tracked_at",
        "upstream_created_at",
        "last_checked_at",
        "metadata",
        "tool_resources",
    )
    readonly_fields = tuple(name for name in fields if name != "label")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = (
        "sequence",
        "created_at",
        "actor_username",
        "action",
        "outcome",
        "team_name",
        "thread_id",
        "http_status",
        "request_id",
    )
    list_filter = ("action", "outcome")
    search_fields = ("thread_id", "request_id", "actor_username")
    # Counting a large log on every page load is the slow part; the pager does without it.
    show_full_result_count = False


class BulkDeleteItemInline(ReadOnlyMixin, TabularInline):
    model = BulkDeleteItem
    fields = ("thread_id", "outcome", "message", "request_id", "finished_at")
    extra = 0


@admin.register(BulkDeleteJob)
class BulkDeleteJobAdmin(ReadOnlyMixin, ModelAdmin):
    list_display = ("id", "created_by", "created_at", "state", "finished_at")
    list_filter = ("state",)
    list_select_related = ("created_by",)
    inlines = [BulkDeleteItemInline]


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(ReadOnlyMixin, ModelAdmin):
    """Policies change on their page only, where the change is audited."""

    list_display = ("api_key", "max_age_days", "enabled", "set_by", "updated_at", "last_run_at")
    list_filter = ("enabled",)
    list_select_related = ("api_key", "set_by")


if TYPE_CHECKING:
    BaseUserAdmin = auth_admin.UserAdmin[User]
else:
    BaseUserAdmin = auth_admin.UserAdmin


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Django's, adding and renaming users by the usernames' one rule (forms/accounts.py)."""

    form = UserEditForm
    add_form = UserAddForm
