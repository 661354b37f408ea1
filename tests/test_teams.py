"""Teams: pages, membership management, the last-owner rule, team deletion and its audit."""

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import TEST_KEY
from threads_app import audit, selectors
from threads_app.models import ApiKey, AuditEvent, Membership, Team, TrackedThread
from threads_app.services import teams as team_services
from threads_app.services.refusals import NotAllowed, Refused

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
OWNER, MEMBER, VIEWER = Membership.Role.OWNER, Membership.Role.MEMBER, Membership.Role.VIEWER


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def dave(make_user):
    return make_user("dave")


@pytest.fixture
def team(make_team, user, carol, dave):
    """Blue: alice owns it, carol is a member, dave a viewer; bob (other_user) is outside."""
    return make_team("Blue", {user: OWNER, carol: MEMBER, dave: VIEWER})


def membership(team, member):
    return Membership.objects.get(team=team, user=member)


def url(name, *args):
    return reverse(f"threads_app:{name}", args=args)


def as_user(client, user):
    client.force_login(user)
    return client


def flashed(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def toasts(response):
    return [t["message"] for t in json.loads(response["HX-Trigger"])["messages"]]


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def roles(team):
    return dict(team.memberships.values_list("user__username", "role"))


# --- my teams and creating one ------------------------------------------------------------


def test_team_list_shows_my_teams_with_role_member_and_live_key_counts(
    user_client, user, team, make_team, make_key, other_user
):
    make_team("Red", {user: VIEWER, other_user: OWNER})
    make_team("Green", {other_user: OWNER})
    make_key(team=team, label="live one")
    revoked = make_key(team=team, label="old one", secret="sk-test-revoked-000000000000")
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    response = user_client.get(url("team_list"))

    assert response.status_code == 200
    assert response.context["nav"] == "teams"
    rows = {
        t.name: (t.my_role, t.member_count, t.live_key_count) for t in response.context["teams"]
    }
    assert rows == {"Blue": (OWNER, 3, 1), "Red": (VIEWER, 2, 0)}
    assert b"<html" in response.content
    assert b"Green" not in response.content
    assert url("team_create").encode() in response.content


def test_team_list_htmx_gets_the_rows_partial(user_client, team):
    response = user_client.get(url("team_list"), **HX)

    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b'id="teams"' in response.content
    assert url("team_detail", team.pk).encode() in response.content


def test_team_list_without_teams_says_how_to_get_one(user_client):
    response = user_client.get(url("team_list"))

    assert b"You are not in any team yet" in response.content


def test_create_team_page_and_the_creator_becomes_owner(user_client, user):
    assert user_client.get(url("team_create")).status_code == 200

    response = user_client.post(url("team_create"), {"name": "  Platform  "})

    team = Team.objects.get(name="Platform")
    assert response.status_code == 302
    assert response["Location"] == url("team_detail", team.pk)
    assert roles(team) == {"alice": OWNER}
    [event] = events(AuditEvent.Action.TEAM_CREATED)
    assert (event.team_id, event.team_name, event.actor_id) == (team.pk, "Platform", user.pk)
    assert event.outcome == AuditEvent.Outcome.SUCCESS
    assert event.details == {"name": "Platform"}


def test_create_team_on_the_htmx_path_navigates_to_the_new_team(user_client):
    response = user_client.post(url("team_create"), {"name": "Platform"}, **HX)

    assert response.status_code == 200
    assert response["HX-Redirect"] == url("team_detail", Team.objects.get(name="Platform").pk)


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_create_team_with_a_taken_name_is_refused_and_keeps_the_input(user_client, team, headers):
    response = user_client.post(url("team_create"), {"name": "BLUE"}, **headers)

    assert response.status_code == 200
    assert "A team named “Blue” already exists." in response.content.decode()
    assert b'value="BLUE"' in response.content
    assert (b"<html" in response.content) == (not headers)
    assert Team.objects.count() == 1
    assert not events(AuditEvent.Action.TEAM_CREATED)


def test_create_team_needs_a_name(user_client):
    response = user_client.post(url("team_create"), {"name": "   "})

    assert response.status_code == 200
    assert b"This field is required." in response.content
    assert not Team.objects.exists()


# --- the team page ------------------------------------------------------------------------


def test_team_page_shows_members_and_keys_but_never_a_secret(client, team, dave, make_key, carol):
    key = make_key(team=team, label="shared prod")
    TrackedThread.objects.create(thread_id="thread_one", api_key=key)
    TrackedThread.objects.create(thread_id="thread_two", api_key=key)
    # A deleted thread is no longer tracked: the team page counts as the keys page does.
    TrackedThread.objects.create(thread_id="thread_old", api_key=key, state="deleted")

    response = as_user(client, dave).get(url("team_detail", team.pk))

    page = response.content.decode()
    assert response.status_code == 200
    for text in ("alice", "carol", "dave", "Owner", "Viewer", "shared prod"):
        assert text in page
    assert "@example.test" not in page  # members' emails are for owners
    assert key.hint in page
    assert [k.tracked_count for k in response.context["keys"]] == [2]
    keys_page = as_user(client, dave).get(url("key_list"))
    assert [k.tracked_count for g in keys_page.context["groups"] for k in g.keys] == [2]
    assert TEST_KEY not in page
    assert key.secret_encrypted not in page
    assert url("key_list") in page
    # A viewer sees no management controls, and no invitations.
    assert "Invite someone" not in page
    assert "Pending invitations" not in page
    assert url("team_member_role", team.pk, membership(team, carol).pk) not in page
    assert url("team_delete", team.pk) not in page
    assert url("team_member_remove", team.pk, membership(team, carol).pk) not in page
    # …but may leave.
    assert url("team_member_remove", team.pk, membership(team, dave).pk) in page


def test_owner_sees_management_controls(user_client, team, carol):
    page = user_client.get(url("team_detail", team.pk)).content.decode()

    assert "Invite someone" in page
    assert url("team_invite", team.pk) in page
    assert "carol@example.test" in page
    assert url("team_member_role", team.pk, membership(team, carol).pk) in page
    assert url("team_member_remove", team.pk, membership(team, carol).pk) in page
    assert 'hx-target="#dialog"' in page  # removing someone is confirmed in the dialog
    assert url("team_delete", team.pk) in page


def test_team_page_htmx_gets_the_members_partial(user_client, team, make_key):
    make_key(team=team, label="shared prod")

    response = user_client.get(url("team_detail", team.pk), **HX)

    assert response.status_code == 200
    assert response.content.lstrip().startswith(b'<section id="members"')
    assert b"<html" not in response.content
    assert b"carol" in response.content
    assert b"shared prod" not in response.content


# --- who gets what: 404 outside the team, 403 inside without the role ----------------------

ROUTES = {  # url name -> (allowed methods, needs a membership pk)
    "team_detail": ({"GET"}, False),
    "team_delete": ({"GET", "POST"}, False),
    "team_invite": ({"POST"}, False),
    "team_member_role": ({"POST"}, True),
    "team_member_remove": ({"GET", "POST"}, True),
}
CELLS = [
    (name, method, headers) for name in ROUTES for method in ("GET", "POST") for headers in ({}, HX)
]


def route_url(name, team, target):
    return url(name, team.pk, target.pk) if ROUTES[name][1] else url(name, team.pk)


def send(client, method, path, headers):
    data = {"identifier": "bob", "role": OWNER}
    if method == "GET":
        return client.get(path, **headers)
    return client.post(path, data, **headers)


@pytest.mark.parametrize(("name", "method", "headers"), CELLS)
def test_outsiders_get_404_for_every_team_url(
    client, team, other_user, carol, name, method, headers
):
    allowed = method in ROUTES[name][0]
    path = route_url(name, team, membership(team, carol))

    response = send(as_user(client, other_user), method, path, headers)

    # Methods a URL never accepts are 405 for everyone: it says nothing about the team.
    assert response.status_code == (404 if allowed else 405)
    assert roles(team) == {"alice": OWNER, "carol": MEMBER, "dave": VIEWER}
    assert Team.objects.filter(pk=team.pk).exists()


@pytest.mark.parametrize("name", list(ROUTES))
def test_anonymous_visitors_are_sent_to_log_in(client, team, carol, name):
    response = client.get(route_url(name, team, membership(team, carol)))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_a_team_that_does_not_exist_is_404(user_client):
    assert user_client.get(url("team_detail", 999_999)).status_code == 404


def test_a_membership_of_another_team_is_404_even_for_an_owner(
    user_client, team, make_team, other_user, make_user
):
    red = make_team("Red", {other_user: OWNER, make_user("erin"): MEMBER})
    foreign = Membership.objects.get(team=red, user__username="erin")

    role = user_client.post(url("team_member_role", team.pk, foreign.pk), {"role": OWNER})
    remove = user_client.post(url("team_member_remove", team.pk, foreign.pk))

    assert (role.status_code, remove.status_code) == (404, 404)
    assert roles(red) == {"bob": OWNER, "erin": MEMBER}


@pytest.mark.parametrize("role", [MEMBER, VIEWER])
@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("team_invite", "POST"),
        ("team_member_role", "POST"),
        ("team_member_remove", "GET"),
        ("team_member_remove", "POST"),
        ("team_delete", "GET"),
        ("team_delete", "POST"),
    ],
)
def test_members_and_viewers_may_not_manage_the_team(
    client, make_team, user, carol, dave, other_user, role, headers, name, method
):
    team = make_team("Blue", {user: OWNER, carol: role, dave: VIEWER})
    path = route_url(name, team, membership(team, dave))

    response = send(as_user(client, carol), method, path, headers)

    assert response.status_code == 403
    assert roles(team) == {"alice": OWNER, "carol": role, "dave": VIEWER}
    assert Team.objects.filter(pk=team.pk).exists()
    assert not AuditEvent.objects.exists()


def test_services_enforce_the_owner_rule_on_their_own(team, carol, dave, other_user):
    with pytest.raises(PermissionDenied):
        team_services.invite_member(team, actor=carol, identifier="bob", role=VIEWER)
    with pytest.raises(PermissionDenied):
        team_services.add_member(team, actor=carol, user=other_user, role=VIEWER)
    with pytest.raises(PermissionDenied):
        team_services.change_role(membership(team, dave), actor=carol, role=OWNER)
    with pytest.raises(PermissionDenied):
        team_services.remove_member(membership(team, dave), actor=carol)
    with pytest.raises(PermissionDenied):
        team_services.delete_team(team, actor=carol)
    assert roles(team) == {"alice": OWNER, "carol": MEMBER, "dave": VIEWER}


def test_service_refusals_are_one_family_and_name_their_field(user, team, carol, make_key):
    """A view catches `Refused` alone; the form shows it on the field it names."""
    with pytest.raises(NotAllowed):
        team_services.delete_team(team, actor=carol)
    with pytest.raises(Refused, match="already exists") as taken:
        team_services.create_team(actor=user, name="blue")
    assert taken.value.field == "name"
    with pytest.raises(Refused, match="already a member") as member:
        team_services.invite_member(team, actor=user, identifier="carol", role=MEMBER)
    assert member.value.field == "identifier"
    with pytest.raises(Refused, match="is not a role") as bad_role:
        team_services.invite_member(team, actor=user, identifier="bob", role="admin")
    assert bad_role.value.field == "role"
    make_key(team=team)
    with pytest.raises(Refused, match="cannot be deleted yet") as blocked:
        team_services.delete_team(team, actor=user)
    assert blocked.value.field is None


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_team_pages_with_a_partial_vary_on_hx_request(user_client, team, headers):
    """A cache must never serve a page's partial for the page itself."""
    for path in (url("team_list"), url("team_create"), url("team_detail", team.pk)):
        assert "HX-Request" in user_client.get(path, **headers)["Vary"], path
    refused = user_client.post(url("team_invite", team.pk), {"identifier": "", "role": MEMBER})
    assert "HX-Request" in refused["Vary"]


# --- owners manage members ----------------------------------------------------------------


def test_add_member_service_adds_at_once_for_the_demo_and_the_shell(user, team, other_user):
    membership = team_services.add_member(team, actor=user, user=other_user, role=VIEWER)

    assert (membership.user, membership.role) == (other_user, VIEWER)
    [event] = events(AuditEvent.Action.MEMBER_ADDED)
    assert (event.team_id, event.actor_id) == (team.pk, user.pk)
    assert event.details == {"username": "bob", "role": VIEWER}
    with pytest.raises(Refused, match="bob is already a member of Blue"):
        team_services.add_member(team, actor=user, user=other_user, role=MEMBER)
    with pytest.raises(Refused, match="is not a role"):
        team_services.add_member(team, actor=user, user=other_user, role="admin")
    assert roles(team)["bob"] == VIEWER


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_owner_changes_a_role(user_client, user, team, dave, headers):
    response = user_client.post(
        url("team_member_role", team.pk, membership(team, dave).pk), {"role": MEMBER}, **headers
    )

    message = "dave's role in Blue is now member."
    dave_pk = membership(team, dave).pk
    if headers:
        assert response.status_code == 200
        assert response.content.lstrip().startswith(b'<section id="members"')
        assert toasts(response) == [message]
        page = response.content.decode()
    else:
        assert response.status_code == 302
        assert response["Location"] == url("team_detail", team.pk) + f"?undo={dave_pk}:viewer"
        assert flashed(response) == [message]
        page = user_client.get(response["Location"]).content.decode()
    # The row offers the change back: a form sending the previous role.
    undo = re.search(r'<form class="undo".*?</form>', page, re.S).group(0)
    assert '<input type="hidden" name="role" value="viewer">' in undo and "Undo" in undo
    assert url("team_member_role", team.pk, dave_pk) in undo
    assert roles(team)["dave"] == MEMBER
    user_client.post(url("team_member_role", team.pk, dave_pk), {"role": VIEWER}, **headers)
    assert roles(team)["dave"] == VIEWER
    event, undone = events(AuditEvent.Action.MEMBER_ROLE_CHANGED)
    assert (event.team_id, event.actor_id) == (team.pk, user.pk)
    assert event.details == {"username": "dave", "old_role": VIEWER, "new_role": MEMBER}
    assert undone.details == {"username": "dave", "old_role": MEMBER, "new_role": VIEWER}


def test_a_forged_undo_offers_nothing(user_client, team, dave):
    for query in ("undo=x:viewer", "undo=1:emperor", "undo=" + "9" * 40 + ":viewer", "undo=:"):
        page = user_client.get(url("team_detail", team.pk) + "?" + query).content.decode()
        assert '<form class="undo"' not in page


def test_setting_the_same_role_changes_nothing_and_audits_nothing(user_client, team, dave):
    response = user_client.post(
        url("team_member_role", team.pk, membership(team, dave).pk), {"role": VIEWER}
    )

    assert response.status_code == 302
    assert flashed(response) == []
    assert not events(AuditEvent.Action.MEMBER_ROLE_CHANGED)


def test_an_invalid_role_is_refused_with_a_message(user_client, team, dave):
    response = user_client.post(
        url("team_member_role", team.pk, membership(team, dave).pk), {"role": "god"}, **HX
    )

    assert toasts(response) == ["Choose a role: owner, member or viewer."]
    assert roles(team)["dave"] == VIEWER


def test_remove_shows_a_confirmation_page_first(user_client, team, carol):
    path = url("team_member_remove", team.pk, membership(team, carol).pk)

    response = user_client.get(path)

    assert response.status_code == 200
    assert "Remove carol from Blue?" in response.content.decode()
    assert f'action="{path}"'.encode() in response.content
    assert roles(team)["carol"] == MEMBER


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_owner_removes_a_member(user_client, user, team, carol, headers):
    path = url("team_member_remove", team.pk, membership(team, carol).pk)

    response = user_client.post(path, **headers)

    message = "carol was removed from Blue."
    if headers:
        assert response.status_code == 200
        assert response.content.lstrip().startswith(b'<section id="members"')
        assert b"carol" not in response.content
        assert toasts(response) == [message]
    else:
        assert response.status_code == 302
        assert response["Location"] == url("team_detail", team.pk)
        assert flashed(response) == [message]
    assert "carol" not in roles(team)
    [event] = events(AuditEvent.Action.MEMBER_REMOVED)
    assert (event.team_id, event.actor_id) == (team.pk, user.pk)
    assert event.details == {"username": "carol", "role": MEMBER, "left": False}


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_a_viewer_may_leave(client, team, dave, headers):
    path = url("team_member_remove", team.pk, membership(team, dave).pk)
    as_user(client, dave)
    assert "Leave Blue?" in client.get(path).content.decode()

    response = client.post(path, **headers)

    if headers:
        assert response["HX-Redirect"] == url("team_list")
    else:
        assert response["Location"] == url("team_list")
    assert flashed(response) == ["You left Blue."]
    assert "dave" not in roles(team)
    [event] = events(AuditEvent.Action.MEMBER_REMOVED)
    assert event.actor_id == dave.pk
    assert event.details == {"username": "dave", "role": VIEWER, "left": True}
    assert client.get(url("team_detail", team.pk)).status_code == 404


def test_an_owner_may_demote_or_remove_another_owner(user_client, team, carol, dave):
    Membership.objects.filter(team=team, user=carol).update(role=OWNER)

    user_client.post(url("team_member_role", team.pk, membership(team, carol).pk), {"role": VIEWER})
    assert roles(team)["carol"] == VIEWER
    user_client.post(url("team_member_role", team.pk, membership(team, dave).pk), {"role": OWNER})
    user_client.post(url("team_member_remove", team.pk, membership(team, dave).pk))

    assert roles(team) == {"alice": OWNER, "carol": VIEWER}


def test_a_second_owner_lets_the_first_leave(user_client, user, team, carol):
    user_client.post(url("team_member_role", team.pk, membership(team, carol).pk), {"role": OWNER})

    response = user_client.post(url("team_member_remove", team.pk, membership(team, user).pk))

    assert response["Location"] == url("team_list")
    assert roles(team) == {"carol": OWNER, "dave": VIEWER}


# --- the last owner stays -----------------------------------------------------------------

LAST_OWNER = "the last owner of Blue, so"


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
@pytest.mark.parametrize(
    ("attempt", "message"),
    [
        ("leave", "You are the last owner of Blue, so cannot leave: "),
        ("demote", "You are the last owner of Blue, so cannot stop being an owner: "),
    ],
)
def test_the_last_owner_cannot_leave_or_be_demoted(
    user_client, user, team, headers, attempt, message
):
    own = membership(team, user)
    if attempt == "leave":
        response = user_client.post(url("team_member_remove", team.pk, own.pk), **headers)
    else:
        response = user_client.post(
            url("team_member_role", team.pk, own.pk), {"role": MEMBER}, **headers
        )

    expected = message + "make another member an owner first."
    if headers:
        assert response.status_code == 200
        assert toasts(response) == [expected]
    else:
        assert response["Location"] == url("team_detail", team.pk)
        assert flashed(response) == [expected]
    assert roles(team) == {"alice": OWNER, "carol": MEMBER, "dave": VIEWER}
    assert not AuditEvent.objects.exists()


def test_the_last_owner_cannot_be_removed_even_by_a_superuser(client, team, make_user, user):
    admin = make_user("root", is_superuser=True, is_staff=True)

    response = as_user(client, admin).post(
        url("team_member_remove", team.pk, membership(team, user).pk)
    )

    assert flashed(response) == [
        "alice is the last owner of Blue, so cannot be removed: make another member an owner first."
    ]
    assert roles(team)["alice"] == OWNER
    with pytest.raises(Refused, match=LAST_OWNER):
        team_services.change_role(membership(team, user), actor=admin, role=VIEWER)
    assert roles(team)["alice"] == OWNER


# --- removal cuts access at once ----------------------------------------------------------


def test_a_removed_member_loses_the_team_and_its_threads_on_the_next_request(
    client, team, carol, make_key, make_thread, user
):
    thread = make_thread(make_key(team=team, created_by=user), label="team thread")
    as_user(client, carol)
    assert client.get(url("thread_detail", thread.pk)).status_code == 200
    assert client.get(url("team_detail", team.pk)).status_code == 200

    owner = as_user(Client(), user)
    owner.post(url("team_member_remove", team.pk, membership(team, carol).pk))

    assert client.get(url("thread_detail", thread.pk)).status_code == 404
    assert client.get(url("thread_detail", thread.pk), **HX).status_code == 404
    assert client.get(url("team_detail", team.pk)).status_code == 404
    assert not selectors.visible_threads(carol).filter(pk=thread.pk).exists()
    assert not selectors.usable_keys(carol).exists()


# --- deleting a team ----------------------------------------------------------------------


def test_delete_shows_a_confirmation_page_first(user_client, team):
    response = user_client.get(url("team_delete", team.pk))

    assert response.status_code == 200
    assert "Delete Blue?" in response.content.decode()
    assert Team.objects.filter(pk=team.pk).exists()


def test_delete_is_refused_while_the_team_has_a_live_key_then_allowed_once_revoked(
    user_client, user, team, make_key
):
    key = make_key(team=team)

    refused = user_client.post(url("team_delete", team.pk))

    assert refused["Location"] == url("team_detail", team.pk)
    assert flashed(refused) == [
        "Blue cannot be deleted yet: first revoke its 1 live key on the Keys page."
    ]
    assert Team.objects.filter(pk=team.pk).exists()
    assert not events(AuditEvent.Action.TEAM_DELETED)

    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    deleted = user_client.post(url("team_delete", team.pk))

    assert deleted["Location"] == url("team_list")
    assert flashed(deleted)[-1] == "Team “Blue” was deleted."
    assert not Team.objects.filter(pk=team.pk).exists()
    assert not ApiKey.objects.filter(pk=key.pk).exists()
    assert not Membership.objects.filter(team_id=team.pk).exists()
    [event] = events(AuditEvent.Action.TEAM_DELETED)
    assert (event.team_id, event.team_name, event.actor_id) == (team.pk, "Blue", user.pk)
    assert event.details == {"name": "Blue", "revoked_keys_deleted": 1}
    assert audit.verify_chain().ok


def test_delete_on_the_htmx_path_navigates_to_the_team_list(user_client, team):
    response = user_client.post(url("team_delete", team.pk), **HX)

    assert response["HX-Redirect"] == url("team_list")
    assert not Team.objects.filter(pk=team.pk).exists()


def test_delete_is_refused_while_threads_still_use_the_team_keys(user_client, team, make_key):
    live = make_key(team=team)
    revoked = make_key(team=team, secret="sk-test-revoked-000000000000")
    TrackedThread.objects.create(thread_id="thread_a", api_key=live)
    TrackedThread.objects.create(thread_id="thread_b", api_key=live)
    TrackedThread.objects.create(thread_id="thread_c", api_key=revoked)
    ApiKey.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    response = user_client.post(url("team_delete", team.pk))

    assert flashed(response) == [
        "Blue cannot be deleted yet: first untrack or delete the 2 tracked threads under its "
        "keys, then revoke its 1 live key on the Keys page, then ask an administrator to "
        "remove the 1 tracked thread left under its revoked keys."
    ]
    assert Team.objects.filter(pk=team.pk).exists()
    assert ApiKey.objects.filter(team=team).count() == 2


def test_delete_with_only_revoked_key_threads_left_names_the_way_out(user_client, team, make_key):
    key = make_key(team=team)
    TrackedThread.objects.create(thread_id="thread_c", api_key=key)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    response = user_client.post(url("team_delete", team.pk))

    assert flashed(response) == [
        "Blue cannot be deleted yet: first ask an administrator to remove the 1 tracked "
        "thread left under its revoked keys."
    ]
    assert Team.objects.filter(pk=team.pk).exists()
