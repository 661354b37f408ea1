"""Issue 12, invitations by email: the owner invites an address, the email holds a link that
works once and expires; someone new chooses a username and password there and joins with the
invited role; someone with an account logs in and accepts. Every step is audited."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from threads_app.models import AuditEvent, Invitation, Membership
from threads_app.services import teams as team_services
from threads_app.services.refusals import Refused

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action
PASSWORD = "a-long-enough-password"


def url(name, *args):
    return reverse(f"threads_app:{name}", args=args)


@pytest.fixture
def team(make_team, user):
    return make_team("Blue", {user: Membership.Role.OWNER})


@pytest.fixture
def emailed(user_client, team, django_capture_on_commit_callbacks):
    """alice invites new@example.test as a member through the team page; returns the link's
    path (from the email, as the invitee would follow it)."""

    def invite(address="New@Example.test", role="member"):
        with django_capture_on_commit_callbacks(execute=True):
            response = user_client.post(
                url("team_invite", team.pk), {"identifier": address, "role": role}
            )
        assert response.status_code == 302
        [link] = re.findall(r"http://testserver(/invitations/link/[^/\s]+/)", mail.outbox[-1].body)
        return link

    return invite


def test_the_email_holds_a_link_and_the_token_is_kept_nowhere_else(emailed, team):
    link = emailed()
    [message] = mail.outbox
    assert message.to == ["new@example.test"]
    assert "Blue" in message.subject and "as member" in message.body and "alice" in message.body
    token = link.split("/")[-2]
    invitation = Invitation.objects.get()
    assert invitation.token_hash and token not in invitation.token_hash
    assert invitation.expires_at - timezone.now() > timedelta(days=6, hours=23)
    for event in AuditEvent.objects.all():
        assert token not in str(event.details)
    [sent] = AuditEvent.objects.filter(action=Action.INVITATION_SENT)
    assert sent.details["identifier"] == "new@example.test"


def test_a_username_invitation_sends_no_email(user_client, team, other_user):
    user_client.post(url("team_invite", team.pk), {"identifier": "bob", "role": "viewer"})
    assert not mail.outbox
    assert Invitation.objects.get().token_hash == ""


def test_someone_new_chooses_a_password_and_joins_with_the_role(emailed, team):
    link = emailed(role="viewer")
    client = Client()
    page = client.get(link)
    assert page.status_code == 200
    assert "Create your account" in page.content.decode()

    response = client.post(
        link, {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response["Location"] == url("team_detail", team.pk)
    newbie = get_user_model().objects.get(username="newbie")
    assert newbie.email == "new@example.test" and newbie.check_password(PASSWORD)
    assert team.memberships.get(user=newbie).role == "viewer"
    assert client.get(url("team_detail", team.pk)).status_code == 200  # logged in
    [accepted] = AuditEvent.objects.filter(action=Action.INVITATION_ACCEPTED)
    assert (accepted.actor_id, accepted.details["new_account"]) == (newbie.pk, True)
    assert AuditEvent.objects.filter(action=Action.LOGGED_IN, actor_id=newbie.pk).exists()
    assert PASSWORD not in str([e.details for e in AuditEvent.objects.all()])

    # Single use: the link is gone, for anyone.
    again = Client().get(link)
    assert again.status_code == 404
    assert "no longer works" in again.content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "alice", "password1": PASSWORD, "password2": PASSWORD}, "not available"),
        ({"username": "newbie", "password1": "12345678", "password2": "12345678"}, "too common"),
        ({"username": "newbie", "password1": PASSWORD, "password2": "other"}, "differ"),
        ({"username": "bad name!", "password1": PASSWORD, "password2": PASSWORD}, "Use only"),
    ],
)
def test_a_bad_account_is_refused_and_the_link_still_works(emailed, team, data, message):
    link = emailed()
    client = Client()
    response = client.post(link, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()
    assert team.memberships.count() == 1
    assert Invitation.objects.get().status == Invitation.Status.PENDING
    assert client.get(link).status_code == 200


def test_someone_with_an_account_logs_in_then_accepts(emailed, team):
    existing = get_user_model().objects.create_user("nina", "NEW@example.test", "pw-nina")
    link = emailed()
    anonymous = Client().get(link).content.decode()
    assert "An account has this email already" in anonymous
    assert f"/accounts/login/?next={link}" in anonymous
    assert 'name="password1"' not in anonymous

    client = Client()
    logged_in = client.post(
        f"{reverse('account_login')}?next={link}", {"login": "nina", "password": "pw-nina"}
    )
    assert logged_in["Location"] == link
    page = client.get(link).content.decode()
    invitation = Invitation.objects.get()
    assert url("invitation_accept", invitation.pk) in page
    client.post(url("invitation_accept", invitation.pk))
    assert team.memberships.get(user=existing).role == "member"
    assert client.get(link).status_code == 404


def test_someone_else_logged_in_is_told_the_invitation_is_not_theirs(emailed, other_user):
    link = emailed()
    client = Client()
    client.force_login(other_user)
    page = client.get(link).content.decode()
    assert "whose email is not new@example.test" in page
    invitation = Invitation.objects.get()
    assert url("invitation_accept", invitation.pk) not in page
    assert client.post(url("invitation_accept", invitation.pk)).status_code == 404


def test_an_expired_invitation_is_nobodys_and_a_new_one_replaces_it(
    emailed, team, user, django_capture_on_commit_callbacks
):
    link = emailed()
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get(link).status_code == 404
    existing = get_user_model().objects.create_user("nina", "new@example.test", "pw-nina")
    assert not team_services.selectors.my_pending_invitations(existing).exists()

    new_link = emailed()  # the same address again
    old, new = Invitation.objects.order_by("id")
    assert old.status == Invitation.Status.REVOKED
    [revoked] = AuditEvent.objects.filter(action=Action.INVITATION_REVOKED)
    assert revoked.details["expired"] is True
    assert Client().get(new_link).status_code == 200 and new.status == Invitation.Status.PENDING


def test_a_revoked_invitation_s_link_no_longer_works(emailed, team, user):
    link = emailed()
    team_services.revoke_invitation(Invitation.objects.get(), actor=user)
    assert Client().get(link).status_code == 404
    assert Client().post(link, {"username": "x", "password1": PASSWORD}).status_code == 404


def test_a_made_up_link_is_a_404_page(client):
    response = client.get(url("invitation_link", "not-a-real-token"))
    assert response.status_code == 404
    assert "no longer works" in response.content.decode()


def test_a_malformed_address_is_refused(team, user):
    with pytest.raises(Refused, match="is not an email address"):
        team_services.invite_member(team, actor=user, identifier="someone@", role="member")
    assert not Invitation.objects.exists()


def test_known_and_unknown_addresses_both_get_an_email(emailed, make_user):
    make_user("kim")  # kim@example.test has an account
    emailed("kim@example.test")
    emailed("nobody@example.test")
    assert [m.to for m in mail.outbox] == [["kim@example.test"], ["nobody@example.test"]]
