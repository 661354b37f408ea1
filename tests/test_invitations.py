"""Team invitations: the owner's answer says nothing about accounts, the invitee alone answers,
owners revoke, every step is audited, and members' emails are for owners."""

import json
import re

import pytest

from tests.test_teams import HX, as_user, events, flashed, roles, url
from threads_app import audit
from threads_app.models import AuditEvent, Invitation, Membership
from threads_app.services import teams as team_services
from threads_app.services.refusals import NotAllowed, Refused

pytestmark = pytest.mark.django_db

OWNER, MEMBER, VIEWER = Membership.Role.OWNER, Membership.Role.MEMBER, Membership.Role.VIEWER
Status = Invitation.Status
Action = AuditEvent.Action


@pytest.fixture
def carol(make_user):
    return make_user("carol")


@pytest.fixture
def team(make_team, user, carol):
    """Blue: alice owns it, carol is a member; bob (other_user) is outside."""
    return make_team("Blue", {user: OWNER, carol: MEMBER})


@pytest.fixture
def invitation(team, user, other_user):
    """alice invited bob (by username) as a viewer."""
    return team_services.invite_member(team, actor=user, identifier="bob", role=VIEWER)


def invite(client, team, identifier, role=VIEWER, **headers):
    return client.post(
        url("team_invite", team.pk), {"identifier": identifier, "role": role}, **headers
    )


# --- the owner's answer is the same whether or not an account exists ----------------------


def _without_variables(response, identifier):
    """The response as text (its HX-Trigger toasts included) without what differs between
    two invitations anyway: the identifier, CSRF tokens, the invitation's id and its time."""
    toasts = json.loads(response.get("HX-Trigger", '{"messages": []}'))["messages"]
    text = response.content.decode() + json.dumps(toasts, ensure_ascii=False)
    text = text.replace(identifier, "IDENTIFIER")
    text = re.sub(r"[A-Za-z0-9]{64}", "CSRF", text)
    text = re.sub(r"invitation(s/|-)\d+", r"invitation\1N", text)
    return re.sub(r"<time[^>]*>[^<]*</time>", "<time/>", text)


def _answers(client, team, identifier, headers):
    """What inviting answers (the page it redirects to, on the plain path), and the audit
    row it leaves; the invitation is then dropped so the next one starts the same."""
    response = invite(client, team, identifier, **headers)
    answer = [response.status_code, response.get("Location"), response.get("HX-Redirect")]
    if not headers:
        answer += flashed(response)
        response = client.get(response["Location"])
    answer.append(_without_variables(response, identifier))
    [event] = events(Action.INVITATION_SENT)[-1:]
    row = {k: v for k, v in event.details.items() if k not in ("invitation", "identifier")}
    answer.append((event.actor_id, event.owner_id, event.team_id, row))
    Invitation.objects.all().delete()
    return [str(part).replace(identifier, "IDENTIFIER") for part in answer]


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
@pytest.mark.parametrize(
    ("existing", "unknown"),
    [("bob", "nobody"), ("bob@example.test", "nobody@example.test")],
    ids=["username", "email"],
)
def test_inviting_answers_the_same_whether_or_not_the_account_exists(
    user_client, team, other_user, headers, existing, unknown
):
    known_answer = _answers(user_client, team, existing, headers)
    unknown_answer = _answers(user_client, team, unknown, headers)

    assert known_answer == unknown_answer
    assert "Invitation to Blue sent to “IDENTIFIER” as viewer." in known_answer[-2]
    assert "bob" not in roles(team)


def test_an_invitation_names_the_identifier_typed_and_no_user(user_client, user, team, other_user):
    response = invite(user_client, team, "  BOB@Example.TEST ", role=MEMBER)

    assert response.status_code == 302
    assert response["Location"] == url("team_detail", team.pk)
    assert flashed(response) == ["Invitation to Blue sent to “bob@example.test” as member."]
    invitation = Invitation.objects.get()
    assert (invitation.identifier, invitation.role, invitation.status) == (
        "bob@example.test",
        MEMBER,
        Status.PENDING,
    )
    assert (invitation.invited_by, invitation.responded_at) == (user, None)
    [event] = events(Action.INVITATION_SENT)
    assert (event.actor_id, event.team_id, event.team_name) == (user.pk, team.pk, "Blue")
    assert event.details == {
        "invitation": invitation.pk,
        "identifier": "bob@example.test",
        "role": MEMBER,
    }
    assert str(other_user.pk) not in json.dumps(event.details)
    assert "bob" not in roles(team)


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
@pytest.mark.parametrize(
    ("identifier", "error"),
    [
        ("carol", "carol is already a member of Blue (as member)."),
        ("CAROL@example.test", "carol is already a member of Blue (as member)."),
        ("bob", "“bob” already has a pending invitation to Blue."),
    ],
)
def test_inviting_a_member_or_inviting_twice_is_refused_on_the_field(
    user_client, team, invitation, headers, identifier, error
):
    response = invite(user_client, team, identifier, **headers)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert f'value="{identifier}"'.encode() in response.content
    assert (b"<html" in response.content) == (not headers)
    assert Invitation.objects.count() == 1
    assert len(events(Action.INVITATION_SENT)) == 1


def test_a_closed_invitation_can_be_sent_again(user, team, invitation):
    team_services.revoke_invitation(invitation, actor=user)

    again = team_services.invite_member(team, actor=user, identifier="bob", role=MEMBER)

    assert again.pk != invitation.pk
    assert list(Invitation.objects.values_list("status", flat=True).order_by("id")) == [
        Status.REVOKED,
        Status.PENDING,
    ]


def test_invite_services_refuse_what_the_form_would(user, team, carol):
    with pytest.raises(NotAllowed):
        team_services.invite_member(team, actor=carol, identifier="bob", role=VIEWER)
    with pytest.raises(Refused, match="is not a role") as bad_role:
        team_services.invite_member(team, actor=user, identifier="bob", role="admin")
    assert bad_role.value.field == "role"
    with pytest.raises(Refused, match="Enter a username") as blank:
        team_services.invite_member(team, actor=user, identifier="   ", role=VIEWER)
    assert blank.value.field == "identifier"
    assert not Invitation.objects.exists()
    assert not AuditEvent.objects.exists()


# --- the owner sees pending invitations and revokes them ----------------------------------


def test_owners_see_pending_invitations_and_others_do_not(
    client, user_client, team, invitation, carol
):
    page = user_client.get(url("team_detail", team.pk)).content.decode()
    assert "Pending invitations" in page
    assert url("team_invitation_revoke", team.pk, invitation.pk) in page

    member_page = as_user(client, carol).get(url("team_detail", team.pk)).content.decode()
    assert "Pending invitations" not in member_page
    assert url("team_invitation_revoke", team.pk, invitation.pk) not in member_page


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_owner_revokes_an_invitation(user_client, user, team, invitation, headers):
    path = url("team_invitation_revoke", team.pk, invitation.pk)

    response = user_client.post(path, **headers)

    if headers:
        assert response.status_code == 200
        assert response.content.lstrip().startswith(b'<section id="members"')
        assert path.encode() not in response.content
    else:
        assert response["Location"] == url("team_detail", team.pk)
        assert flashed(response) == ["The invitation of “bob” was revoked."]
    invitation.refresh_from_db()
    assert invitation.status == Status.REVOKED
    assert invitation.responded_at is not None
    [event] = events(Action.INVITATION_REVOKED)
    assert (event.actor_id, event.team_id) == (user.pk, team.pk)
    assert event.details == {"invitation": invitation.pk, "identifier": "bob", "role": VIEWER}


def test_members_may_not_revoke(client, team, invitation, carol):
    response = as_user(client, carol).post(url("team_invitation_revoke", team.pk, invitation.pk))

    assert response.status_code == 403
    with pytest.raises(NotAllowed):
        team_services.revoke_invitation(invitation, actor=carol)
    invitation.refresh_from_db()
    assert invitation.status == Status.PENDING


def test_revoking_twice_says_it_is_closed(user_client, user, team, invitation):
    path = url("team_invitation_revoke", team.pk, invitation.pk)
    user_client.post(path)

    response = user_client.post(path)

    assert flashed(response)[-1] == "This invitation cannot be revoked: it was revoked already."
    assert len(events(Action.INVITATION_REVOKED)) == 1


# --- the invitee sees, accepts or declines ------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "sees"),
    [("bob", True), ("BOB@EXAMPLE.test", True), ("Bob", True), ("bo", False)],
)
def test_the_invitee_is_found_by_username_or_email_in_any_case_as_log_in_finds_them(
    client, user, team, other_user, identifier, sees
):
    team_services.invite_member(team, actor=user, identifier=identifier, role=MEMBER)
    as_user(client, other_user)

    home = client.get(url("thread_list")).content.decode()
    listed = client.get(url("invitation_list")).content.decode()

    assert ("You have 1 pending team invitation." in home) == sees
    assert (url("invitation_list") in home) == sees
    assert ("Blue" in listed) == sees


def test_the_invitations_page_lists_pending_ones_with_accept_and_decline(
    client, team, invitation, other_user
):
    page = as_user(client, other_user).get(url("invitation_list")).content.decode()

    assert "Blue" in page
    assert "Viewer" in page
    assert "alice" in page  # who invited
    assert f'action="{url("invitation_accept", invitation.pk)}"' in page
    assert f'action="{url("invitation_decline", invitation.pk)}"' in page
    assert page.count('name="csrfmiddlewaretoken"') == 3  # and logging out


def test_without_invitations_the_threads_list_has_no_notice(client, other_user):
    as_user(client, other_user)

    assert "pending team invitation" not in client.get(url("thread_list")).content.decode()
    assert "No pending invitations." in client.get(url("invitation_list")).content.decode()


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_the_invitee_accepts_and_joins_with_the_invited_role(
    client, team, invitation, other_user, headers
):
    response = as_user(client, other_user).post(url("invitation_accept", invitation.pk), **headers)

    target = url("team_detail", team.pk)
    if headers:
        assert response["HX-Redirect"] == target
    else:
        assert response["Location"] == target
    assert flashed(response) == ["You joined Blue as viewer."]
    assert roles(team)["bob"] == VIEWER
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED
    assert invitation.responded_at is not None
    [event] = events(Action.INVITATION_ACCEPTED)
    assert (event.actor_id, event.actor_username, event.team_id) == (other_user.pk, "bob", team.pk)
    assert event.details == {
        "invitation": invitation.pk,
        "identifier": "bob",
        "role": VIEWER,
        "already_member": False,
    }
    assert client.get(target).status_code == 200
    assert "pending team invitation" not in client.get(url("thread_list")).content.decode()
    assert audit.verify_chain().ok


def test_accepting_when_already_a_member_closes_the_invitation_and_says_so(
    client, user, team, invitation, other_user
):
    team_services.add_member(team, actor=user, user=other_user, role=MEMBER)

    response = as_user(client, other_user).post(url("invitation_accept", invitation.pk))

    assert response["Location"] == url("team_detail", team.pk)
    assert flashed(response) == ["You already are a member of Blue (as member)."]
    assert roles(team)["bob"] == MEMBER
    invitation.refresh_from_db()
    assert invitation.status == Status.ACCEPTED
    [event] = events(Action.INVITATION_ACCEPTED)
    assert event.details["already_member"] is True


@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_the_invitee_declines(client, team, invitation, other_user, headers):
    response = as_user(client, other_user).post(url("invitation_decline", invitation.pk), **headers)

    target = url("invitation_list")
    assert (response["HX-Redirect"] if headers else response["Location"]) == target
    assert flashed(response) == ["You declined the invitation to Blue."]
    assert "bob" not in roles(team)
    invitation.refresh_from_db()
    assert invitation.status == Status.DECLINED
    [event] = events(Action.INVITATION_DECLINED)
    assert (event.actor_id, event.team_id) == (other_user.pk, team.pk)
    assert event.details == {"invitation": invitation.pk, "identifier": "bob", "role": VIEWER}
    assert "No pending invitations." in client.get(target).content.decode()


@pytest.mark.parametrize("name", ["invitation_accept", "invitation_decline"])
@pytest.mark.parametrize("who", ["alice", "carol", "dave", "root"])
def test_only_the_invitee_may_answer_everyone_else_gets_404(
    client, make_user, team, invitation, user, carol, name, who
):
    others = {"alice": user, "carol": carol}
    actor = others.get(who) or make_user(who, is_superuser=who == "root", is_staff=who == "root")

    response = as_user(client, actor).post(url(name, invitation.pk))

    assert response.status_code == 404
    assert "Blue" not in as_user(client, actor).get(url("invitation_list")).content.decode()
    invitation.refresh_from_db()
    assert invitation.status == Status.PENDING
    assert roles(team) == {"alice": OWNER, "carol": MEMBER}
    with pytest.raises(NotAllowed):
        team_services.accept_invitation(invitation, actor=actor)
    with pytest.raises(NotAllowed):
        team_services.decline_invitation(invitation, actor=actor)


@pytest.mark.parametrize(
    ("close", "status"),
    [("revoke", "revoked"), ("decline", "declined"), ("accept", "accepted")],
)
def test_a_closed_invitation_cannot_be_accepted(
    client, user, team, invitation, other_user, close, status
):
    if close == "revoke":
        team_services.revoke_invitation(invitation, actor=user)
    elif close == "decline":
        team_services.decline_invitation(invitation, actor=other_user)
    else:
        team_services.accept_invitation(invitation, actor=other_user)
    memberships = roles(team)

    response = as_user(client, other_user).post(url("invitation_accept", invitation.pk))

    assert response["Location"] == url("invitation_list")
    assert flashed(response) == [f"This invitation cannot be accepted: it was {status} already."]
    assert roles(team) == memberships
    invitation.refresh_from_db()
    assert invitation.status == status
    assert len(events(Action.INVITATION_ACCEPTED)) == (close == "accept")


# --- members' emails are for owners -------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "sees_emails"),
    [("owner", True), ("superuser", True), ("member", False), ("viewer", False)],
)
@pytest.mark.parametrize("headers", [{}, HX], ids=["full", "htmx"])
def test_members_emails_are_shown_to_owners_and_superusers_only(
    client, make_user, make_team, user, carol, who, sees_emails, headers
):
    vera = make_user("vera")
    team = make_team("Blue", {user: OWNER, carol: MEMBER, vera: VIEWER})
    actors = {
        "owner": user,
        "member": carol,
        "viewer": vera,
        "superuser": make_user("root", is_superuser=True, is_staff=True),
    }

    response = as_user(client, actors[who]).get(url("team_detail", team.pk), **headers)

    page = response.content.decode()
    assert response.status_code == 200
    assert "carol" in page and "vera" in page
    for email in ("alice@example.test", "carol@example.test", "vera@example.test"):
        assert (email in page) == sees_emails
    assert ('scope="col" class="hide-narrow">Email<' in page) == sees_emails
