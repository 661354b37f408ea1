"""Issue 16: pages offer "New thread" and "Import" only to whoever has a key to use them with
(`selectors.usable_keys`: their own, or a team's where they are more than a viewer); a viewer
is told what they can do instead, and how to do more."""

import re

import pytest
from django.urls import reverse

from threads_app.models import Membership

pytestmark = pytest.mark.django_db

CREATE, IMPORT = reverse("threads_app:thread_create"), reverse("threads_app:thread_import")
ADD_KEY = reverse("threads_app:key_create")
PAGES = [reverse("threads_app:overview"), reverse("threads_app:thread_list")]
NOTICE = "The keys you see are for reading only"


def page_of(client, path):
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def team_key(make_team, make_key, other_user):
    team = make_team("Blue", {other_user: Membership.Role.OWNER})
    make_key(team=team, label="Blue's key")
    return team


@pytest.mark.parametrize("path", PAGES)
def test_a_viewer_is_offered_no_way_to_add_threads_and_told_why(user_client, user, team_key, path):
    Membership.objects.create(team=team_key, user=user, role=Membership.Role.VIEWER)
    page = page_of(user_client, path)
    assert f'href="{CREATE}"' not in page
    assert f'href="{IMPORT}"' not in page  # nor in the top bar
    assert NOTICE in page
    assert f'href="{ADD_KEY}"' in page  # the way to do more


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [Membership.Role.MEMBER, Membership.Role.OWNER])
def test_a_member_or_owner_is_offered_both(user_client, user, team_key, path, role):
    Membership.objects.create(team=team_key, user=user, role=role)
    page = page_of(user_client, path)
    assert f'href="{CREATE}"' in page
    assert f'href="{IMPORT}"' in page
    assert NOTICE not in page


def test_a_viewer_with_a_key_of_their_own_is_offered_both(user_client, user, team_key, api_key):
    Membership.objects.create(team=team_key, user=user, role=Membership.Role.VIEWER)
    for path in PAGES:
        page = page_of(user_client, path)
        assert f'href="{CREATE}"' in page and f'href="{IMPORT}"' in page
        assert NOTICE not in page


def test_a_revoked_key_alone_offers_nothing_to_add_with(user_client, api_key):
    api_key.revoked_at = api_key.created_at
    api_key.save(update_fields=["revoked_at"])
    page = page_of(user_client, reverse("threads_app:thread_list"))
    assert f'href="{CREATE}"' not in page
    assert NOTICE in page


@pytest.mark.parametrize("path", PAGES)
def test_someone_without_any_key_is_sent_to_add_one(user_client, path):
    page = page_of(user_client, path)
    assert f'href="{CREATE}"' not in page
    assert f'href="{IMPORT}"' not in page
    assert re.search(
        rf'<a class="button primary" href="{ADD_KEY}">Add (your first|an) API key', page
    )
    assert NOTICE not in page  # nothing to read either: the page says what to do


def test_a_viewer_made_member_is_offered_both_on_the_next_page(user_client, user, team_key):
    membership = Membership.objects.create(team=team_key, user=user, role=Membership.Role.VIEWER)
    assert f'href="{CREATE}"' not in page_of(user_client, PAGES[0])
    membership.role = Membership.Role.MEMBER
    membership.save(update_fields=["role"])
    assert f'href="{CREATE}"' in page_of(user_client, PAGES[0])


def test_other_pages_ask_once_and_only_when_they_show_the_links(
    user_client, user, team_key, django_assert_num_queries
):
    """The context processor's read is lazy: a page without the top bar (the log-in page)
    does not make it."""
    Membership.objects.create(team=team_key, user=user, role=Membership.Role.VIEWER)
    page = page_of(user_client, reverse("threads_app:team_list"))
    assert f'href="{IMPORT}"' not in page
    user_client.logout()
    with django_assert_num_queries(0):
        user_client.get(reverse("account_login"))
