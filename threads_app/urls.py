from django.urls import path

from threads_app.views import (
    audit,
    bulk,
    invitations,
    keys,
    operations,
    retention,
    teams,
    threads,
    transcripts,
)

app_name = "threads_app"

thread_urls = [
    path("", threads.thread_list, name="thread_list"),
    path("threads/new/", threads.thread_create, name="thread_create"),
    path("threads/import/", threads.thread_import, name="thread_import"),
    path("threads/<int:pk>/", threads.thread_detail, name="thread_detail"),
    path("threads/<int:pk>/messages/", threads.thread_messages, name="thread_messages"),
    path("threads/<int:pk>/edit/", threads.thread_edit, name="thread_edit"),
    path("threads/<int:pk>/delete/", threads.thread_delete, name="thread_delete"),
    path("threads/<int:pk>/untrack/", threads.thread_untrack, name="thread_untrack"),
    path("threads/bulk-delete/", bulk.thread_bulk_delete, name="thread_bulk_delete"),
    path("jobs/<int:pk>/", bulk.bulk_delete_job, name="bulk_delete_job"),
    path("threads/<int:pk>/check/", threads.thread_check, name="thread_check"),
    path("threads/<int:pk>/export.json", transcripts.thread_export, name="thread_export"),
]

key_urls = [
    path("keys/", keys.key_list, name="key_list"),
    path("keys/new/", keys.key_create, name="key_create"),
    path("keys/<int:pk>/rotate/", keys.key_rotate, name="key_rotate"),
    path("keys/<int:pk>/revoke/", keys.key_revoke, name="key_revoke"),
    path("keys/<int:pk>/retention/", retention.key_retention, name="key_retention"),
]

team_urls = [
    path("teams/", teams.team_list, name="team_list"),
    path("teams/new/", teams.team_create, name="team_create"),
    path("teams/<int:pk>/", teams.team_detail, name="team_detail"),
    path("teams/<int:pk>/delete/", teams.team_delete, name="team_delete"),
    path("teams/<int:pk>/invite/", teams.team_invite, name="team_invite"),
    path(
        "teams/<int:pk>/invitations/<int:invitation_pk>/revoke/",
        teams.team_invitation_revoke,
        name="team_invitation_revoke",
    ),
    path(
        "teams/<int:pk>/members/<int:membership_pk>/role/",
        teams.team_member_role,
        name="team_member_role",
    ),
    path(
        "teams/<int:pk>/members/<int:membership_pk>/remove/",
        teams.team_member_remove,
        name="team_member_remove",
    ),
]

invitation_urls = [
    path("invitations/", invitations.invitation_list, name="invitation_list"),
    path("invitations/<int:pk>/accept/", invitations.invitation_accept, name="invitation_accept"),
    path(
        "invitations/<int:pk>/decline/", invitations.invitation_decline, name="invitation_decline"
    ),
]

audit_urls = [
    path("audit/", audit.audit_list, name="audit_list"),
    path("audit/export.csv", audit.audit_export, name="audit_export"),
    path("audit/<int:pk>/snapshot.json", transcripts.audit_snapshot, name="audit_snapshot"),
]

operations_urls = [
    path("health/", operations.health, name="health"),
]

urlpatterns = thread_urls + key_urls + team_urls + invitation_urls + audit_urls + operations_urls
