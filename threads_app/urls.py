from collections.abc import Callable

from django.http.response import HttpResponseBase
from django.urls import path

from threads_app.views import (
    audit,
    bulk,
    invitations,
    keys,
    operations,
    overview,
    retention,
    selections,
    teams,
    threads,
    tokens,
    transcripts,
)

app_name = "threads_app"

# (route, view): each URL is named after its view, so a name is never spelled twice.
ROUTES: list[tuple[str, Callable[..., HttpResponseBase]]] = [
    ("", threads.thread_list),
    ("overview/", overview.overview),
    ("threads/new/", threads.thread_create),
    ("threads/import/", threads.thread_import),
    ("threads/<int:pk>/", threads.thread_detail),
    ("threads/<int:pk>/messages/", threads.thread_messages),
    ("threads/<int:pk>/edit/", threads.thread_edit),
    ("threads/<int:pk>/delete/", threads.thread_delete),
    ("threads/<int:pk>/untrack/", threads.thread_untrack),
    ("threads/bulk-delete/", bulk.thread_bulk_delete),
    ("threads/select-all/", selections.thread_select_all),
    ("selections/<int:pk>/", selections.selection_detail),
    ("views/", selections.saved_view_list),
    ("views/new/", selections.saved_view_create),
    ("views/<int:pk>/delete/", selections.saved_view_delete),
    ("jobs/", bulk.job_list),
    ("jobs/<int:pk>/", bulk.bulk_delete_job),
    ("jobs/<int:pk>/pause/", bulk.job_pause),
    ("jobs/<int:pk>/resume/", bulk.job_resume),
    ("jobs/<int:pk>/cancel/", bulk.job_cancel),
    ("jobs/<int:pk>/export/", bulk.job_export_download),
    ("threads/<int:pk>/check/", threads.thread_check),
    ("threads/<int:pk>/export.json", transcripts.thread_export),
    ("keys/", keys.key_list),
    ("keys/new/", keys.key_create),
    ("keys/<int:pk>/rotate/", keys.key_rotate),
    ("keys/<int:pk>/revoke/", keys.key_revoke),
    ("keys/<int:pk>/retention/", retention.key_retention),
    ("teams/", teams.team_list),
    ("teams/new/", teams.team_create),
    ("teams/<int:pk>/", teams.team_detail),
    ("teams/<int:pk>/delete/", teams.team_delete),
    ("teams/<int:pk>/invite/", teams.team_invite),
    ("teams/<int:pk>/two-factor/", teams.team_two_factor_rule),
    ("teams/<int:pk>/invitations/<int:invitation_pk>/revoke/", teams.team_invitation_revoke),
    ("teams/<int:pk>/members/<int:membership_pk>/role/", teams.team_member_role),
    ("teams/<int:pk>/members/<int:membership_pk>/remove/", teams.team_member_remove),
    ("invitations/", invitations.invitation_list),
    ("invitations/<int:pk>/accept/", invitations.invitation_accept),
    ("invitations/<int:pk>/decline/", invitations.invitation_decline),
    ("invitations/link/<str:token>/", invitations.invitation_link),
    ("audit/", audit.audit_list),
    ("audit/export.csv", audit.audit_export),
    ("audit/<int:pk>/snapshot.json", transcripts.audit_snapshot),
    ("health/", operations.health),
    ("tokens/", tokens.token_list),
    ("tokens/<int:pk>/revoke/", tokens.token_revoke),
]

urlpatterns = [path(route, view, name=view.__name__) for route, view in ROUTES]
