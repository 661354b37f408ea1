"""Issue 16: every view answers through `threads_app/views/htmx.py` (`render_page`, `go_to`),
the invitation link and the demo's emails page included, so the page/partial switch and the
htmx redirect live in one place."""

import ast
import re
from pathlib import Path

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from threads_app.models import Membership

VIEWS = Path(__file__).resolve().parent.parent / "threads_app" / "views"
# What answers a request, besides the helpers: none of it may be used by a view module.
ANSWERING = {"render", "redirect", "render_to_response", "TemplateResponse"}
ANSWERING_RESPONSES = {"HttpResponseRedirect", "HttpResponsePermanentRedirect"}


@pytest.mark.parametrize(
    "module", sorted(p.name for p in VIEWS.glob("*.py") if p.name not in {"htmx.py"})
)
def test_a_view_module_answers_only_through_the_helpers(module):
    tree = ast.parse((VIEWS / module).read_text())
    imported = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    used = sorted(
        f"{origin}.{name}"
        for origin, name in imported
        if (origin == "django.shortcuts" and name in ANSWERING)
        or (origin == "django.template.response" and name in ANSWERING)
        or (origin == "django.http" and name in ANSWERING_RESPONSES)
    )
    assert not used, f"{module} answers by itself: {used}"


@pytest.mark.django_db
def test_joining_through_the_link_on_the_htmx_path_is_a_full_page_load(
    user_client, make_team, user, django_capture_on_commit_callbacks
):
    """`go_to`: a plain POST redirects, an htmx one gets HX-Redirect to the team's page."""
    team = make_team("Blue", {user: Membership.Role.OWNER})
    with django_capture_on_commit_callbacks(execute=True):
        user_client.post(
            reverse("threads_app:team_invite", args=[team.pk]),
            {"identifier": "new@example.test", "role": "viewer"},
        )
    [link] = re.findall(r"http://testserver(/invitations/link/[^/\s]+/)", mail.outbox[-1].body)
    password = "a-long-enough-password-1"
    joined = Client().post(
        link,
        {"username": "newbie", "password1": password, "password2": password},
        HTTP_HX_REQUEST="true",
    )
    assert joined.status_code == 200
    assert joined["HX-Redirect"] == reverse("threads_app:team_detail", args=[team.pk])


@pytest.mark.django_db
def test_a_dead_link_is_the_page_with_its_404(client):
    response = client.get(reverse("threads_app:invitation_link", args=["not-a-real-token"]))
    assert response.status_code == 404
    assert "no longer works" in response.content.decode()
    assert 'class="topbar"' in response.content.decode()
