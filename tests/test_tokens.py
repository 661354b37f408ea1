"""Access tokens: made on the account pages (shown once, kept as a hash), revoked, expired,
and each step audited; a team's tokens are its owners'."""

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import ApiToken, AuditEvent, Membership
from threads_app.services import tokens
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.tasks import sweep

Action = AuditEvent.Action
TOKEN_LIST = reverse("threads_app:token_list")


def _actions(**filters):
    return list(
        AuditEvent.objects.filter(**filters).order_by("sequence").values_list("action", flat=True)
    )


def _make(client, **data):
    form = {"label": "ci", "scopes": ["threads:read"], "days": "90", "team": "", **data}
    return client.post(TOKEN_LIST, form)


@pytest.mark.django_db
def test_a_token_is_shown_once_and_kept_only_as_its_hash(client, user):
    client.force_login(user)
    response = _make(client, scopes=["threads:read", "audit:read"])
    assert response.status_code == 200
    token = response.context["new_token"]
    assert token.startswith("tc_") and len(token) == 46
    row = ApiToken.objects.get()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ApiToken.objects.values().get())
    assert row.scopes == ["threads:read", "audit:read"]
    assert row.created_by == user and row.team is None
    assert timedelta(days=89, hours=23) < row.expires_at - timezone.now() <= timedelta(days=90)
    assert "no-store" in response["Cache-Control"]
    again = client.get(TOKEN_LIST)
    assert token not in again.content.decode()
    assert row.hint in again.content.decode()
    [event] = AuditEvent.objects.filter(action=Action.TOKEN_CREATED)
    assert event.owner_id == user.pk and event.team_id is None
    assert token not in str(event.details)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"days": "366"}, "less than or equal to 365"),
        ({"days": "0"}, "greater than or equal to 1"),
        ({"scopes": []}, "Choose at least one scope."),
        ({"scopes": ["threads:admin"]}, "not one of the available choices"),
        ({"label": ""}, "This field is required."),
    ],
)
def test_a_bad_token_form_says_why_and_makes_nothing(client, user, data, error):
    client.force_login(user)
    response = _make(client, **data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_only_a_teams_owners_make_its_tokens_and_the_list_names_who_made_them(
    client, user, other_user, make_team
):
    team = make_team(members={user: Membership.Role.OWNER, other_user: Membership.Role.MEMBER})
    client.force_login(other_user)
    assert "Select a valid choice" in _make(client, team=team.pk).content.decode()
    with pytest.raises(NotAllowed):
        tokens.create_token(actor=other_user, label="x", scopes=["threads:read"], team=team)
    client.force_login(user)
    _make(client, team=team.pk, label="team-ci")
    row = ApiToken.objects.get()
    assert row.team == team
    page = client.get(TOKEN_LIST).content.decode()
    assert "team-ci" in page and team.name in page and user.username in page
    client.force_login(other_user)
    assert "team-ci" not in client.get(TOKEN_LIST).content.decode()
    [event] = AuditEvent.objects.filter(action=Action.TOKEN_CREATED)
    assert event.team_id == team.pk


@pytest.mark.django_db
def test_revoking_asks_first_then_audits_and_the_token_stops_working(client, user, make_user):
    row, token = tokens.create_token(actor=user, label="ci", scopes=["threads:read"])
    client.force_login(user)
    url = reverse("threads_app:token_revoke", args=[row.pk])
    assert "Revoke “ci”?" in client.get(url).content.decode()
    assert client.post(url).status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert _actions() == [Action.TOKEN_CREATED, Action.TOKEN_REVOKED]
    with pytest.raises(tokens.TokenRefused):
        tokens.authenticate(token, origin=Origin(ip="127.0.0.1"), window_seconds=60)
    with pytest.raises(Refused, match="already revoked"):
        tokens.revoke_token(row, actor=user)
    stranger = make_user()
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404


@pytest.mark.django_db
def test_first_use_and_each_new_address_are_audited_once(user):
    row, token = tokens.create_token(actor=user, label="ci", scopes=["threads:read"])
    for ip in ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.3"]:
        use = tokens.authenticate(token, origin=Origin(ip=ip), window_seconds=60)
        assert use.token.pk == row.pk
    assert _actions() == [
        Action.TOKEN_CREATED,
        Action.TOKEN_FIRST_USED,
        Action.TOKEN_NEW_ADDRESS,
        Action.TOKEN_NEW_ADDRESS,
    ]
    ips = AuditEvent.objects.exclude(client_ip=None).order_by("sequence")
    assert list(ips.values_list("client_ip", flat=True)) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    row.refresh_from_db()
    assert row.last_used_at is not None


@pytest.mark.django_db
def test_requests_are_counted_per_window(user):
    _, token = tokens.create_token(actor=user, label="ci", scopes=["threads:read"])
    now = timezone.now()
    counts = [
        tokens.authenticate(token, origin=Origin(), window_seconds=60, now=now).count
        for _ in range(3)
    ]
    later = tokens.authenticate(
        token, origin=Origin(), window_seconds=60, now=now + timedelta(seconds=61)
    )
    assert counts == [1, 2, 3]
    assert later.count == 1


@pytest.mark.django_db
def test_an_expired_token_is_refused_and_its_expiry_audited_once(user):
    _row, token = tokens.create_token(actor=user, label="ci", scopes=["threads:read"])
    later = timezone.now() + timedelta(days=91)
    for _ in range(2):
        with pytest.raises(tokens.TokenRefused):
            tokens.authenticate(token, origin=Origin(), window_seconds=60, now=later)
    assert _actions().count(Action.TOKEN_EXPIRED) == 1
    assert audit.verify_chain().ok


@pytest.mark.django_db
def test_the_workers_sweep_audits_expired_tokens(user):
    row, _ = tokens.create_token(actor=user, label="ci", scopes=["threads:read"], days=1)
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    sweep()
    sweep()
    assert _actions().count(Action.TOKEN_EXPIRED) == 1


@pytest.mark.django_db
def test_a_team_token_stops_when_its_maker_leaves_the_team(user, make_team):
    team = make_team(members={user: Membership.Role.OWNER})
    _, token = tokens.create_token(actor=user, label="t", scopes=["threads:read"], team=team)
    assert tokens.authenticate(token, origin=Origin(), window_seconds=60).token.team == team
    Membership.objects.filter(team=team, user=user).delete()
    with pytest.raises(tokens.TokenRefused):
        tokens.authenticate(token, origin=Origin(), window_seconds=60)


@pytest.mark.django_db
def test_an_inactive_makers_token_is_refused(user):
    _, token = tokens.create_token(actor=user, label="t", scopes=["threads:read"])
    user.is_active = False
    user.save()
    with pytest.raises(tokens.TokenRefused):
        tokens.authenticate(token, origin=Origin(), window_seconds=60)


@pytest.mark.django_db
def test_an_unknown_token_is_refused():
    with pytest.raises(tokens.TokenRefused):
        tokens.authenticate("tc_nothing", origin=Origin(), window_seconds=60)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_data_already_there(make_key, user):
    """From the schema before tokens, with a key, a thread and an audit event in it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from threads_app.models import TrackedThread

    api_key = make_key(owner=user)
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0016_selections")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO threads_app_trackedthread (thread_id, api_key_id, label, "
                "tracked_at, metadata, tool_resources, state, state_before_deletion, "
                "search_text) VALUES ('thread_old', %s, 'old', CURRENT_TIMESTAMP, '{}', '{}', "
                "'active', '', '')",
                [api_key.pk],
            )
        audit.record(action=Action.KEY_ADDED, outcome="success", actor=user, api_key=api_key)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert TrackedThread.objects.get().label == "old"
    row, token = tokens.create_token(actor=user, label="after", scopes=["audit:read"])
    assert tokens.authenticate(token, origin=Origin(), window_seconds=60).token == row
    assert audit.verify_chain().ok
