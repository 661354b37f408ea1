"""Issue 16, the identity defects: who may claim an invitation (defect 1), usernames unique
regardless of case everywhere (defect 2), a join page that confirms no username and is
rate-limited (defect 8), and the audit's actor filter comparing names as log-in does."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from threads_app import audit, selectors
from threads_app.accounts import AccountAdapter
from threads_app.forms.teams import JoinForm
from threads_app.models import AuditEvent, Invitation, Membership
from threads_app.selectors import AuditFilters
from threads_app.services import teams as team_services
from threads_app.services.refusals import Refused

pytestmark = pytest.mark.django_db

User = get_user_model()
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
OWNER, VIEWER = Membership.Role.OWNER, Membership.Role.VIEWER
PASSWORD = "a-long-enough-password"


def url(name, *args):
    return reverse(f"threads_app:{name}", args=args)


@pytest.fixture
def invite(django_capture_on_commit_callbacks):
    """Invite `address` to `team` as its owner `owner` would, through the team page; returns
    the emailed link's path."""

    def send(owner, team, address, role):
        client = Client()
        client.force_login(owner)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                url("team_invite", team.pk), {"identifier": address, "role": role}
            )
        assert response.status_code == 302
        [link] = re.findall(r"http://testserver(/invitations/link/[^/\s]+/)", mail.outbox[-1].body)
        return link

    return send


def join(link, username, password=PASSWORD, **extra):
    return Client().post(
        link, {"username": username, "password1": password, "password2": password}, **extra
    )


def logs_in(username, password):
    response = Client().post(reverse("account_login"), {"login": username, "password": password})
    return response.status_code == 302 and response["Location"] == url("overview")


# --- defect 1: an invitee takes another person's invitation --------------------------------


@pytest.fixture
def two_teams(make_user, make_team, invite):
    """The issue's steps 1 and 2: owner A invites mallory@evil.example to team A as viewer,
    owner B invites CFO@Corp.Example to team B as owner. Returns (Mallory's link, team B)."""
    owner_a, owner_b = make_user("owner-a"), make_user("owner-b")
    team_a = make_team("Team A", {owner_a: OWNER})
    team_b = make_team("Team B", {owner_b: OWNER})
    link = invite(owner_a, team_a, "mallory@evil.example", VIEWER)
    invite(owner_b, team_b, "CFO@Corp.Example", OWNER)
    return link, team_b


def test_an_email_shaped_username_cannot_be_chosen_through_a_link(two_teams):
    link, team_b = two_teams
    response = join(link, "cfo@corp.example")  # step 3
    assert response.status_code == 200
    assert "cannot contain “@”" in response.content.decode()
    assert not User.objects.filter(username__icontains="@").exists()
    assert team_b.memberships.count() == 1


def test_an_email_shaped_username_claims_no_email_invitation(two_teams):
    """Step 4 with an account named like an email (made before the rule, say): its username
    is not its email, so team B's invitation is not its to list or accept."""
    _, team_b = two_teams
    mallory = User.objects.create_user("cfo@corp.example", "mallory@evil.example", PASSWORD)
    client = Client()
    client.force_login(mallory)
    assert "Team B" not in client.get(url("invitation_list")).content.decode()
    invitation = Invitation.objects.get(team=team_b)
    assert client.post(url("invitation_accept", invitation.pk)).status_code == 404
    assert not team_b.memberships.filter(user=mallory).exists()
    assert Invitation.objects.get(team=team_b).status == Invitation.Status.PENDING


def test_the_account_whose_email_is_invited_claims_it_in_any_case(two_teams):
    _, team_b = two_teams
    cfo = User.objects.create_user("cfo", "cfo@CORP.example", PASSWORD)
    client = Client()
    client.force_login(cfo)
    assert "Team B" in client.get(url("invitation_list")).content.decode()
    invitation = Invitation.objects.get(team=team_b)
    assert client.post(url("invitation_accept", invitation.pk)).status_code == 302
    assert team_b.memberships.get(user=cfo).role == OWNER


def test_a_username_invitation_is_claimed_by_that_account_alone(make_user, make_team):
    owner, bob, other = make_user("owner"), make_user("bob"), make_user("other")
    other.email = "bob@example.org"  # an email naming "bob" is not the account "bob"
    other.save()
    team = make_team("Blue", {owner: OWNER})
    invitation = team_services.invite_member(team, actor=owner, identifier="BOB", role=VIEWER)
    assert list(selectors.invitations_for(bob)) == [invitation]  # as log-in finds "BOB"
    assert not selectors.invitations_for(other).exists()
    assert not selectors.invitations_for(owner).exists()
    with pytest.raises(Refused, match="already has a pending invitation"):
        team_services.invite_member(team, actor=owner, identifier=" Bob ", role=OWNER)


# --- defect 2: usernames differing only by case --------------------------------------------


@pytest.fixture
def staff(make_user):
    """admin, root and mia, as in the demo."""
    return [make_user("admin", is_superuser=True), make_user("root"), make_user("mia")]


@pytest.mark.parametrize(
    "look_alike", ["ADMIN", "Root", "Mia", " mIa ", "\uff41\uff44\uff4d\uff49\uff4e"]
)
def test_joining_as_a_case_variant_is_refused_and_the_real_account_still_logs_in(
    staff, make_user, make_team, invite, look_alike
):
    owner = make_user("owner")
    link = invite(owner, make_team("Blue", {owner: OWNER}), "new@example.test", VIEWER)
    response = join(link, look_alike)
    assert response.status_code == 200
    assert "is not available" in response.content.decode()
    assert User.objects.count() == 4
    for user in staff:
        assert logs_in(user.username.upper(), f"pw-{user.username}")
    assert Invitation.objects.get().status == Invitation.Status.PENDING


def test_the_database_refuses_a_case_variant_whatever_the_path(staff):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("ADMIN", "impostor@example.test", PASSWORD)
    renamed = User.objects.get(username="mia")
    renamed.username = "ROOT"
    with pytest.raises(IntegrityError), transaction.atomic():
        renamed.save()


def test_createsuperuser_cannot_make_a_case_variant(staff):
    with pytest.raises(IntegrityError), transaction.atomic():
        call_command(
            "createsuperuser",
            username="Admin",
            email="x@example.test",
            interactive=False,
            verbosity=0,
        )
    assert User.objects.filter(username__iexact="admin").count() == 1


@pytest.fixture
def admin_client(client, staff):
    staff[0].is_staff = True
    staff[0].save()
    client.force_login(staff[0])
    return client


@pytest.mark.parametrize(
    ("username", "error"),
    [
        ("MIA", "in this or another case"),
        ("eve@example.test", "cannot contain “@”"),
        ("ève", "Use only letters a-z"),
        ("two words", "Use only letters a-z"),
    ],
)
def test_the_admin_adds_users_by_the_rule(admin_client, username, error):
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": username,
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert User.objects.count() == 3


def test_the_admin_adds_a_user_with_a_fine_name(admin_client):
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": " Nina.K ",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
        },
    )
    assert response.status_code == 302
    assert User.objects.get(username="Nina.K")


def _change(admin_client, user, **fields):
    data = {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        **fields,
    }
    return admin_client.post(reverse("admin:auth_user_change", args=[user.pk]), data)


@pytest.mark.parametrize(
    ("username", "error"),
    [("ADMIN", "in this or another case"), ("mia@example.test", "cannot contain “@”")],
)
def test_the_admin_renames_users_by_the_rule(admin_client, staff, username, error):
    mia = staff[2]
    response = _change(admin_client, mia, username=username)
    assert response.status_code == 200
    assert error in response.content.decode()
    mia.refresh_from_db()
    assert mia.username == "mia"


def test_the_admin_renames_into_another_case_of_the_same_account(admin_client, staff):
    mia = staff[2]
    assert _change(admin_client, mia, username="Mia").status_code == 302
    mia.refresh_from_db()
    assert mia.username == "Mia"


def test_an_account_named_before_the_rule_can_still_be_edited(admin_client):
    legacy = User.objects.create_user("zoë@old.example", "zoe@example.test", PASSWORD)
    response = _change(admin_client, legacy, email="zoe@new.example")
    assert response.status_code == 302
    legacy.refresh_from_db()
    assert (legacy.username, legacy.email) == ("zoë@old.example", "zoe@new.example")


def test_allauth_sign_up_would_use_the_same_rule(staff, rf):
    adapter = AccountAdapter(rf.get("/"))
    for bad in ("ADMIN", "a@b.example", "ève"):
        with pytest.raises(Exception) as refused:
            adapter.clean_username(bad)
        assert refused.type.__name__ == "ValidationError"
    assert adapter.clean_username(" nina ") == "nina"


def _clash_migration(users):
    """Migrate back to 0011, add `users` (as a database of before the upgrade could hold
    them), and migrate forward to 0012; returns what it raised, if anything."""
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0011_accounts")])
    for username in users:
        User.objects.create_user(username, f"{username.lower()}@example.test", PASSWORD)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    try:
        executor.migrate([("threads_app", "0012_username_any_case")])
    except Exception as exc:
        return exc
    return None


def _migrate_to_the_end():
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_refuses_to_run_on_clashing_usernames_and_names_them():
    try:
        refused = _clash_migration(["admin", "ADMIN", "Mia", "mia", "victor"])
        assert refused is not None
        assert type(refused).__name__ == "CommandError"
        message = str(refused)
        assert "“ADMIN” and “admin”" in message and "“Mia” and “mia”" in message
        assert "victor" not in message and "Rename" in message
        # Nothing changed: the accounts are all there, and the index is not.
        assert User.objects.count() == 5
        User.objects.create_user("VICTOR", "v2@example.test", PASSWORD)
        # A raw delete: the ORM's cascade would also look in tables of later migrations (the
        # access tokens'), which do not exist at this point of the migration history.
        clashing = User.objects.filter(username__in=["ADMIN", "Mia", "VICTOR"])
        clashing._raw_delete(clashing.db)
    finally:
        _migrate_to_the_end()
    with pytest.raises(IntegrityError):
        User.objects.create_user("MIA", "mia2@example.test", PASSWORD)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_accounts_and_adds_the_index_without_a_clash():
    try:
        assert _clash_migration(["admin", "Mia", "victor"]) is None
        assert set(User.objects.values_list("username", flat=True)) == {"admin", "Mia", "victor"}
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.create_user("mia", "mia2@example.test", PASSWORD)
        with pytest.raises(IntegrityError), transaction.atomic():
            User.objects.filter(username="victor").update(username="ADMIN")
    finally:
        _migrate_to_the_end()


# --- defect 8: the join page confirms no username, and is rate-limited ---------------------


@pytest.fixture
def link(make_user, make_team, invite):
    owner = make_user("owner")
    return invite(owner, make_team("Blue", {owner: OWNER}), "new@example.test", VIEWER)


def _answer(response, username):
    """The join page's answer, without what differs anyway: the name typed, the free name
    suggested and the CSRF tokens."""
    text = response.content.decode().replace(username, "NAME")
    text = re.sub(r"“NAME-\d{4}”", "SUGGESTION", text)
    return re.sub(r"[A-Za-z0-9]{64}", "CSRF", text)


def test_the_join_page_answers_the_same_for_a_taken_and_a_free_unavailable_name(link, make_user):
    make_user("alice")
    taken, reserved = join(link, "alice"), join(link, "support")
    assert taken.status_code == reserved.status_code == 200
    assert _answer(taken, "alice") == _answer(reserved, "support")
    page = taken.content.decode()
    assert "already exists" not in page and "taken" not in page
    [suggestion] = re.findall(r"“(alice-\d{4})”", page)
    assert not User.objects.filter(username__iexact=suggestion).exists()
    assert join(link, suggestion).status_code == 302  # the suggestion works


def test_joining_is_limited_per_link(link, make_user, make_team, invite):
    for _ in range(10):
        assert join(link, "bad name").status_code == 200
    limited = join(link, "newbie")
    assert limited.status_code == 429
    assert "Too many tries" in limited.content.decode()
    assert not User.objects.filter(username="newbie").exists()
    assert Client().get(link).status_code == 200  # the page still shows
    # Another link, from the same address, is not held back by this one's tries.
    owner = make_user("owner2")
    other = invite(owner, make_team("Green", {owner: OWNER}), "other@example.test", VIEWER)
    assert join(other, "newbie").status_code == 302


def test_joining_is_limited_per_client_address_behind_the_proxy(
    settings, link, make_user, make_team, invite
):
    settings.TRUSTED_PROXY_COUNT = 1
    owner = make_user("owner2")
    team = make_team("Green", {owner: OWNER})
    links = [invite(owner, team, f"n{i}@example.test", VIEWER) for i in range(4)]
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    for n in range(30):  # under each link's limit, over the address's
        sent = join(links[n % 4], "bad name", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
        assert sent.status_code == 200
    assert join(link, "newbie", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    # Another client behind the same proxy is not held back.
    assert join(link, "newbie", HTTP_X_FORWARDED_FOR="198.51.100.4", **proxy).status_code == 302


ODD_USERNAMES = st.one_of(
    st.text(max_size=160),
    st.sampled_from(
        [
            "ADMIN",
            "Admin",
            " admin ",
            "\uff41\uff44\uff4d\uff49\uff4e",
            "\u0430dmin",
            "a@b",
            "@",
            "é",
            "\t",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9._+-]{1,20}@?[A-Za-z]{0,5}", fullmatch=True),
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(username=ODD_USERNAMES)
def test_the_join_form_accepts_only_plain_names_without_at(username):
    form = JoinForm({"username": username, "password1": PASSWORD, "password2": PASSWORD})
    if form.is_valid():
        name = form.cleaned_data["username"]
        assert re.fullmatch(r"[A-Za-z0-9._+-]{1,150}", name)
    else:
        assert form.errors["username"]


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(username=ODD_USERNAMES, password1=st.text(max_size=30), password2=st.text(max_size=30))
def test_the_join_page_answers_any_fields_without_an_error(
    settings, link, make_user, username, password1, password2
):
    settings.ACCOUNT_RATE_LIMITS = {"login": False, "login_failed": False}  # no join limit
    if not User.objects.filter(username="admin").exists():
        make_user("admin")
    data = {"username": username, "password1": password1, "password2": password2}
    response = Client().post(link, data)
    assert response.status_code in (200, 302)
    assert User.objects.filter(username__iexact="admin").count() == 1
    if response.status_code == 302:  # joined: a plain name, and the link is spent
        [joined] = User.objects.exclude(username__in=["admin", "owner"])
        assert re.fullmatch(r"[A-Za-z0-9._+-]{1,150}", joined.username)
        joined.delete()
        Invitation.objects.update(status=Invitation.Status.PENDING)


# --- the audit's actor filter compares as log-in compares ----------------------------------


def test_filtering_the_audit_by_actor_finds_the_account_log_in_finds(make_user):
    root = make_user("root", is_superuser=True)
    impostor = User.objects.create_user("ADMIN", "i@example.test", PASSWORD)
    audit.record(action=Action.LOGGED_IN, outcome=Outcome.SUCCESS, actor=impostor)
    impostor.username = "mallory"  # caught, renamed; their events keep the name they had
    impostor.save()
    admin = make_user("admin")
    audit.record(action=Action.LOGGED_IN, outcome=Outcome.SUCCESS, actor=admin)
    gone = make_user("ghost")
    audit.record(action=Action.LOGGED_IN, outcome=Outcome.SUCCESS, actor=gone)
    gone_pk = gone.pk
    gone.delete()

    def actors(name):
        events = selectors.filtered_audit_events(root, AuditFilters(actor=name))
        return sorted(events.values_list("actor_id", flat=True))

    assert actors("admin") == actors("ADMIN") == [admin.pk]
    assert actors("Mallory") == [impostor.pk]
    assert actors("GHOST") == [gone_pk]  # no account: the name recorded, any case
