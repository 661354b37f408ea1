"""Issue 16: a team's "Owners must use two-factor authentication" can be set only by an owner
who uses it (the page disables the box, the service refuses a POST sent past it), and turning
it on first lists the owners it will send to turn it on, and asks for a confirmation."""

import pytest
from django.urls import reverse

from tests.test_accounts import turn_on_totp
from threads_app.models import AuditEvent, Team
from threads_app.services import teams as team_services
from threads_app.services.refusals import Refused

pytestmark = pytest.mark.django_db

FIRST = "Set up two-factor for your account first"


def url(name, *args):
    return reverse(f"threads_app:{name}", args=args)


@pytest.fixture
def team(make_team, user, other_user, make_user):
    """alice and bob own Blue, carol is a member."""
    return make_team("Blue", {user: "owner", other_user: "owner", make_user("carol"): "member"})


def rule_events():
    return AuditEvent.objects.filter(action=AuditEvent.Action.TEAM_TWO_FACTOR_RULE)


class TestWithoutTwoFactor:
    def test_the_box_is_disabled_with_the_way_to_set_it_up(self, user_client, team):
        page = user_client.get(url("team_detail", team.pk)).content.decode()
        assert (
            '<input type="checkbox" name="required" id="id_required" disabled '
            'aria-describedby="two-factor-first">' in page
        )
        assert FIRST in page
        assert f'href="{reverse("mfa_index")}"' in page

    def test_a_post_past_the_page_is_refused_and_changes_nothing(self, user_client, team):
        response = user_client.post(
            url("team_two_factor_rule", team.pk), {"required": "on", "confirmed": "on"}
        )
        assert response["Location"] == url("team_detail", team.pk)
        page = user_client.get(response["Location"]).content.decode()
        assert FIRST in page
        team.refresh_from_db()
        assert not team.owners_need_two_factor
        assert not rule_events().exists()
        # Nothing sends alice to the two-factor set-up.
        assert user_client.get(url("thread_list")).status_code == 200

    def test_the_service_refuses_with_its_own_code(self, user, team):
        with pytest.raises(Refused) as refusal:
            team_services.set_owners_need_two_factor(team, actor=user, required=True)
        assert refusal.value.code == "two_factor_first"
        assert str(refusal.value).startswith(FIRST)
        assert not Team.objects.get(pk=team.pk).owners_need_two_factor

    def test_turning_the_rule_off_needs_no_two_factor(self, user, team):
        Team.objects.filter(pk=team.pk).update(owners_need_two_factor=True)
        team.refresh_from_db()
        changed = team_services.set_owners_need_two_factor(team, actor=user, required=False)
        assert changed
        assert not Team.objects.get(pk=team.pk).owners_need_two_factor


class TestWithTwoFactor:
    def test_saving_lists_the_owners_it_affects_and_asks_first(self, user_client, team):
        turn_on_totp(user_client)
        page = user_client.get(url("team_detail", team.pk)).content.decode()
        assert '<input type="checkbox" name="required" id="id_required">' in page
        assert FIRST not in page

        ask = user_client.post(url("team_two_factor_rule", team.pk), {"required": "on"})
        assert ask.status_code == 200
        text = ask.content.decode()
        assert "Require two-factor authentication of Blue's owners?" in text
        assert '<ul class="affected-owners">\n    <li>bob</li>\n  </ul>' in text  # not alice
        assert "carol" not in text  # a member: the rule is not hers
        assert '<input type="hidden" name="confirmed" value="on">' in text
        team.refresh_from_db()
        assert not team.owners_need_two_factor  # nothing changed yet
        assert not rule_events().exists()

        done = user_client.post(
            url("team_two_factor_rule", team.pk), {"required": "on", "confirmed": "on"}
        )
        assert done["Location"] == url("team_detail", team.pk)
        team.refresh_from_db()
        assert team.owners_need_two_factor
        assert rule_events().count() == 1

    def test_when_every_owner_has_it_the_confirmation_says_so(
        self, user_client, team, other_user, client
    ):
        turn_on_totp(user_client)
        client.force_login(other_user)
        turn_on_totp(client)
        ask = user_client.post(url("team_two_factor_rule", team.pk), {"required": "on"})
        text = ask.content.decode()
        assert "Every owner of Blue already uses it" in text
        assert "affected-owners" not in text

    def test_an_htmx_post_gets_the_confirmation_too(self, user_client, team):
        turn_on_totp(user_client)
        ask = user_client.post(
            url("team_two_factor_rule", team.pk), {"required": "on"}, HTTP_HX_REQUEST="true"
        )
        assert ask.status_code == 200
        assert "Require it" in ask.content.decode()
        assert not Team.objects.get(pk=team.pk).owners_need_two_factor

    def test_turning_it_off_asks_nothing(self, user_client, team):
        turn_on_totp(user_client)
        Team.objects.filter(pk=team.pk).update(owners_need_two_factor=True)
        off = user_client.post(url("team_two_factor_rule", team.pk), {})
        assert off["Location"] == url("team_detail", team.pk)
        assert not Team.objects.get(pk=team.pk).owners_need_two_factor
