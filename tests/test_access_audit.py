"""Issue 16, defect 5: every change of access is in the audit chain, whatever the path (the
Django admin, a shell, a management command): superuser, staff and active flags, groups,
permissions (a user's and a group's), and every authenticator added or removed."""

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from tests.test_accounts import _log_in, turn_on_totp
from threads_app import audit
from threads_app.audit import verify_chain
from threads_app.models import AuditEvent

pytestmark = pytest.mark.django_db

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
ACCESS_ACTIONS = (
    Action.ACCESS_CHANGED,
    Action.GROUPS_CHANGED,
    Action.PERMISSIONS_CHANGED,
    Action.TWO_FACTOR_ENABLED,
    Action.TWO_FACTOR_DISABLED,
)


def access_events():
    """(action, actor, owner, details) of each access event, in order."""
    events = AuditEvent.objects.filter(action__in=ACCESS_ACTIONS).order_by("sequence")
    return [(e.action, e.actor_username, e.owner_id, e.details) for e in events]


@pytest.fixture
def root(make_user):
    return make_user("root", is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client(root):
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def editors():
    return Group.objects.create(name="editors")


def _change_form(user, **changes):
    """The admin's user change form as it would post it, with `changes`."""
    data = {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": user.email,
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [],
        "user_permissions": [],
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


PERMISSION = "threads_app.view_apikey"


def _permission():
    app_label, codename = PERMISSION.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


class TestTheAdmin:
    def test_making_someone_superuser_staff_and_giving_groups_and_permissions(
        self, admin_client, root, other_user, editors
    ):
        start = len(access_events())  # root's own creation is one
        url = reverse("admin:auth_user_change", args=[other_user.pk])
        form = _change_form(
            other_user,
            is_superuser="on",
            is_staff="on",
            groups=[editors.pk],
            user_permissions=[_permission().pk],
        )
        response = admin_client.post(url, form)
        assert response.status_code == 302, response.content.decode()[:2000]

        events = access_events()[start:]
        assert events == [
            (
                Action.ACCESS_CHANGED,
                "root",
                other_user.pk,
                {
                    "user": "bob",
                    "changes": {
                        "is_superuser": {"from": False, "to": True},
                        "is_staff": {"from": False, "to": True},
                    },
                },
            ),
            (Action.GROUPS_CHANGED, "root", other_user.pk, {"user": "bob", "added": ["editors"]}),
            (
                Action.PERMISSIONS_CHANGED,
                "root",
                other_user.pk,
                {"user": "bob", "added": [PERMISSION]},
            ),
        ]
        [changed] = AuditEvent.objects.filter(action=Action.ACCESS_CHANGED, owner_id=other_user.pk)
        assert changed.client_ip == "127.0.0.1"

        # Taking it all away again, and deactivating the account.
        admin_client.post(url, _change_form(other_user, is_active=None))
        events = access_events()[start + 3 :]
        assert [(action, details) for action, _actor, _owner, details in events] == [
            (
                Action.ACCESS_CHANGED,
                {
                    "user": "bob",
                    "changes": {
                        "is_superuser": {"from": True, "to": False},
                        "is_staff": {"from": True, "to": False},
                        "is_active": {"from": True, "to": False},
                    },
                },
            ),
            (Action.GROUPS_CHANGED, {"user": "bob", "removed": ["editors"]}),
            (Action.PERMISSIONS_CHANGED, {"user": "bob", "removed": [PERMISSION]}),
        ]
        assert verify_chain().ok

    def test_deleting_someones_authenticator(self, admin_client, other_user):
        bob = Client()
        bob.force_login(other_user)
        turn_on_totp(bob)
        totp = Authenticator.objects.get(user=other_user, type="totp")
        url = reverse("admin:mfa_authenticator_delete", args=[totp.pk])
        assert admin_client.post(url, {"post": "yes"}).status_code == 302

        assert not Authenticator.objects.filter(pk=totp.pk).exists()
        assert access_events()[-1] == (
            Action.TWO_FACTOR_DISABLED,
            "root",
            other_user.pk,
            {"user": "bob", "kind": "totp"},
        )

    def test_deleting_an_account_records_its_authenticators_going(self, admin_client, other_user):
        bob = Client()
        bob.force_login(other_user)
        turn_on_totp(bob)
        url = reverse("admin:auth_user_delete", args=[other_user.pk])
        assert admin_client.post(url, {"post": "yes"}).status_code == 302
        removed = [e for e in access_events() if e[0] == Action.TWO_FACTOR_DISABLED]
        assert sorted((actor, owner, d["kind"]) for _a, actor, owner, d in removed) == [
            ("root", other_user.pk, "recovery_codes"),
            ("root", other_user.pk, "totp"),
        ]
        assert verify_chain().ok

    def test_the_user_sees_changes_to_their_access_in_their_own_log(self, admin_client, other_user):
        admin_client.post(
            reverse("admin:auth_user_change", args=[other_user.pk]),
            _change_form(other_user, is_staff="on"),
        )
        bob = Client()
        bob.force_login(other_user)
        page = bob.get(reverse("threads_app:audit_list"), {"action": Action.ACCESS_CHANGED})
        assert page.status_code == 200
        assert "Superuser, staff or active status changed" in page.content.decode()


class TestShellAndCommands:
    def test_flags_saved_in_a_shell_are_recorded_as_the_systems(self, other_user):
        other_user.is_superuser = True
        other_user.save()
        other_user.save()  # no change: nothing more
        assert access_events() == [
            (
                Action.ACCESS_CHANGED,
                "",
                other_user.pk,
                {
                    "user": "bob",
                    "by": "system",
                    "changes": {"is_superuser": {"from": False, "to": True}},
                },
            )
        ]

    def test_groups_and_permissions_from_either_side_and_cleared(self, other_user, user, editors):
        editors.user_set.add(other_user, user)  # from the group's side: one event per user
        other_user.groups.clear()
        other_user.user_permissions.add(_permission())
        _permission().user_set.remove(other_user)
        editors.permissions.add(_permission())  # a group's permissions: every member's access
        editors.permissions.clear()
        events = [(action, owner, details) for action, _a, owner, details in access_events()]
        system = {"by": "system"}
        assert events == [
            (Action.GROUPS_CHANGED, other_user.pk, {"user": "bob", **system, "added": ["editors"]}),
            (Action.GROUPS_CHANGED, user.pk, {"user": "alice", **system, "added": ["editors"]}),
            (
                Action.GROUPS_CHANGED,
                other_user.pk,
                {"user": "bob", **system, "removed": ["editors"]},
            ),
            (
                Action.PERMISSIONS_CHANGED,
                other_user.pk,
                {"user": "bob", **system, "added": [PERMISSION]},
            ),
            (
                Action.PERMISSIONS_CHANGED,
                other_user.pk,
                {"user": "bob", **system, "removed": [PERMISSION]},
            ),
            (
                Action.PERMISSIONS_CHANGED,
                None,
                {"group": "editors", **system, "added": [PERMISSION]},
            ),
            (
                Action.PERMISSIONS_CHANGED,
                None,
                {"group": "editors", **system, "removed": [PERMISSION]},
            ),
        ]

    def test_createsuperuser_is_recorded(self):
        call_command("createsuperuser", "--noinput", username="ops", email="ops@example.test")
        [(action, actor, _owner, details)] = access_events()
        assert (action, actor) == (Action.ACCESS_CHANGED, "")
        assert details["changes"] == {
            "is_superuser": {"from": False, "to": True},
            "is_staff": {"from": False, "to": True},
        }

    def test_an_authenticator_removed_in_a_shell(self, user_client, user):
        turn_on_totp(user_client)
        added = access_events()
        assert [(a, actor, d["kind"]) for a, actor, _o, d in added] == [
            (Action.TWO_FACTOR_ENABLED, "alice", "totp"),
            (Action.TWO_FACTOR_ENABLED, "alice", "recovery_codes"),
        ]
        Authenticator.objects.filter(user=user).delete()
        removed = access_events()[2:]
        assert {(a, d["kind"], d["by"]) for a, _actor, _o, d in removed} == {
            (Action.TWO_FACTOR_DISABLED, "totp", "system"),
            (Action.TWO_FACTOR_DISABLED, "recovery_codes", "system"),
        }


def test_logging_in_and_ordinary_saves_record_no_access_change(client, user, make_user):
    make_user("carol")  # a new ordinary account has the default access
    _log_in(client, "alice", "pw-alice")  # saves last_login
    user.first_name = "Alice"
    user.save()
    assert access_events() == []


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_chain_and_its_protection(user):
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0012_username_any_case")])
    try:
        audit.record(action=Action.LOGGED_IN, outcome=Outcome.SUCCESS, actor=user, owner=user)
        audit.record(action=Action.TWO_FACTOR_ENABLED, outcome=Outcome.SUCCESS, owner=user)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    user.is_staff = True
    user.save()
    assert [e.action for e in AuditEvent.objects.order_by("sequence")] == [
        Action.LOGGED_IN,
        Action.TWO_FACTOR_ENABLED,
        Action.ACCESS_CHANGED,
    ]
    assert verify_chain() == audit.Verification(True, 3)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE threads_app_auditevent SET details = '{}'")  # triggers still on
