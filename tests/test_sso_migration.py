"""Migration 0014_sso from the schema before it, with data in it: existing memberships become
hand-made ones (no mapping ever touches them) and the audit chain still verifies."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threads_app import audit
from threads_app.models import AuditEvent, Membership

BEFORE = [("threads_app", "0013_access_audit")]


@pytest.mark.django_db(transaction=True)
def test_existing_memberships_become_hand_made(user, other_user):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        team = old.get_model("threads_app", "Team").objects.create(name="Before SSO")
        old.get_model("threads_app", "Membership").objects.create(
            team=team, user_id=user.pk, role="owner"
        )
        old.get_model("threads_app", "Membership").objects.create(
            team=team, user_id=other_user.pk, role="viewer"
        )
        audit.record(action=AuditEvent.Action.TEAM_CREATED, outcome="success", actor=user)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    memberships = Membership.objects.filter(team__name="Before SSO").order_by("role")
    assert [(m.user, m.role, m.managed_by) for m in memberships] == [
        (user, "owner", ""),
        (other_user, "viewer", ""),
    ]
    audit.record(action=AuditEvent.Action.SSO_PROVISIONED, outcome="success", actor=user)
    assert audit.verify_chain().ok
