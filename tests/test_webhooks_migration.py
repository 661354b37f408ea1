"""Migration 0018 (webhooks) on a database with teams, keys and tokens in it: they stay as
they were, and endpoints and their deliveries can be made for them afterwards."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from threads_app.models import ApiKey, ApiToken, Team, WebhookDelivery, WebhookEndpoint

BEFORE = ("threads_app", "0017_api_tokens")
AFTER = ("threads_app", "0018_webhooks")


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor


@pytest.mark.django_db(transaction=True)
def test_teams_keys_and_tokens_made_before_the_migration_get_webhooks(user):
    executor = _migrate(BEFORE)
    try:
        old = executor.loader.project_state([BEFORE]).apps
        OldTeam, OldKey, OldToken = (
            old.get_model("threads_app", name) for name in ("Team", "ApiKey", "ApiToken")
        )
        team = OldTeam.objects.create(name="Before webhooks")
        key = OldKey.objects.create(
            team_id=team.pk, label="old key", secret_encrypted="x", hint="sk-…old", fingerprint="f"
        )
        token = OldToken.objects.create(
            created_by_id=user.pk,
            label="old token",
            hint="tc_old",
            token_hash="h" * 64,
            scopes=["threads:read"],
            expires_at=timezone.now() + timedelta(days=1),
        )
    finally:
        _migrate(AFTER)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert Team.objects.get(pk=team.pk).name == "Before webhooks"
    assert ApiKey.objects.get(pk=key.pk).label == "old key"
    assert ApiToken.objects.get(pk=token.pk).scopes == ["threads:read"]
    endpoint = WebhookEndpoint.objects.create(
        team_id=team.pk, url="https://example.com/h", events=["job.finished"], secret_encrypted="s"
    )
    now = timezone.now()
    WebhookDelivery.objects.create(
        endpoint=endpoint,
        message_id="msg_1",
        event="job.finished",
        body="{}",
        created_at=now,
        give_up_at=now,
    )
    assert endpoint.enabled and endpoint.deliveries.count() == 1
    # An endpoint is a team's or a user's, never both nor neither (a database constraint).
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookEndpoint.objects.create(
            team_id=team.pk, owner=user, url="https://example.com/x", secret_encrypted="s"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookEndpoint.objects.create(url="https://example.com/y", secret_encrypted="s")
