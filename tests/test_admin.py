"""The Django admin: every model browsable by superusers, the audit log untouchable, no secret."""

import pytest
from django.urls import reverse

from tests.conftest import TEST_KEY
from threads_app import audit
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    RetentionPolicy,
    Team,
    TrackedThread,
)

pytestmark = pytest.mark.django_db

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome


def admin_url(model, view, *args):
    return reverse(f"admin:threads_app_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def root(make_user):
    return make_user("root", is_superuser=True, is_staff=True)


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def objects(user, api_key, make_team, make_thread):
    """One row of every model."""
    team = make_team("Ops", {user: Membership.Role.OWNER})
    thread = make_thread(api_key, label="admin thread")
    event = audit.record(
        action=Action.THREAD_DELETED,
        outcome=Outcome.SUCCESS,
        actor=user,
        api_key=api_key,
        thread_id=thread.thread_id,
        request_id="req_admin",
    )
    job = BulkDeleteJob.objects.create(created_by=user)
    BulkDeleteItem.objects.create(job=job, tracked_thread=thread, thread_id=thread.thread_id)
    return {
        Team: team,
        Membership: team.memberships.get(),
        ApiKey: api_key,
        TrackedThread: thread,
        AuditEvent: event,
        BulkDeleteJob: job,
        RetentionPolicy: RetentionPolicy.objects.create(api_key=api_key, max_age_days=30),
    }


MODELS = [Team, Membership, ApiKey, TrackedThread, AuditEvent, BulkDeleteJob, RetentionPolicy]
ids = [model.__name__ for model in MODELS]


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_superuser_opens_every_changelist_and_change_page(admin_client, objects, model):
    changelist = admin_client.get(admin_url(model, "changelist"))
    assert changelist.status_code == 200
    # The audit log also holds root's own making as a superuser (an access change).
    assert changelist.context["cl"].result_count == (2 if model is AuditEvent else 1)
    change = admin_client.get(admin_url(model, "change", objects[model].pk))
    assert change.status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=ids)
def test_nothing_is_added_or_deleted_through_the_admin(admin_client, objects, model):
    """Creating and removing go through the app's audited services."""
    assert admin_client.get(admin_url(model, "add")).status_code == 403
    obj = objects[model]
    assert admin_client.post(admin_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    changelist = admin_client.get(admin_url(model, "changelist"))
    assert "delete_selected" not in changelist.context["cl"].model_admin.get_actions(
        changelist.wsgi_request
    )
    assert model.objects.filter(pk=obj.pk).exists()


def test_non_superuser_is_kept_out(user_client, objects):
    response = user_client.get(admin_url(AuditEvent, "changelist"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


class TestAuditEventAdmin:
    def test_change_page_is_view_only(self, admin_client, objects):
        event = objects[AuditEvent]
        response = admin_client.get(admin_url(AuditEvent, "change", event.pk))
        content = response.content.decode()
        assert 'name="_save"' not in content
        for field in AuditEvent._meta.fields:
            assert f'name="{field.name}"' not in content
        assert "req_admin" in content
        assert event.hash in content

    def test_change_post_is_refused(self, admin_client, objects):
        event = objects[AuditEvent]
        response = admin_client.post(
            admin_url(AuditEvent, "change", event.pk),
            {"outcome": Outcome.FAILED, "thread_id": "thread_other", "_save": "Save"},
        )
        assert response.status_code == 403
        event.refresh_from_db()
        assert (event.outcome, event.thread_id) != (Outcome.FAILED, "thread_other")
        assert audit.verify_chain().ok

    def test_bulk_delete_action_is_refused(self, admin_client, objects):
        event = objects[AuditEvent]
        changelist = admin_url(AuditEvent, "changelist")
        page = admin_client.get(changelist).content.decode()
        assert 'value="delete_selected"' not in page
        admin_client.post(
            changelist, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
        )
        assert AuditEvent.objects.filter(pk=event.pk).exists()
        assert audit.verify_chain().ok

    def test_list_columns(self, admin_client, objects):
        content = admin_client.get(admin_url(AuditEvent, "changelist")).content.decode()
        for column in (
            "sequence",
            "created_at",
            "actor_username",
            "action",
            "outcome",
            "team_name",
            "thread_id",
            "http_status",
            "request_id",
        ):
            assert f"column-{column}" in content
        assert "req_admin" in content


class TestApiKeyAdmin:
    def test_secret_is_never_shown(self, admin_client, objects):
        key = objects[ApiKey]
        for response in (
            admin_client.get(admin_url(ApiKey, "changelist")),
            admin_client.get(admin_url(ApiKey, "change", key.pk)),
        ):
            assert response.status_code == 200
            for secret in (TEST_KEY, key.secret_encrypted, key.fingerprint):
                assert secret.encode() not in response.content
            assert key.hint.encode() in response.content
        form = admin_client.get(admin_url(ApiKey, "change", key.pk)).context["adminform"].form
        assert set(form.fields) == {"label", "failing"}

    def test_label_can_be_changed_but_not_the_secret(self, admin_client, objects):
        key = objects[ApiKey]
        before = (key.secret_encrypted, key.fingerprint, key.hint, key.owner_id)
        response = admin_client.post(
            admin_url(ApiKey, "change", key.pk),
            {
                "label": "renamed",
                "secret_encrypted": "forged",
                "fingerprint": "forged",
                "hint": "sk-…nope",
                "owner": "",
            },
        )
        assert response.status_code == 302
        key.refresh_from_db()
        assert key.label == "renamed"
        assert (key.secret_encrypted, key.fingerprint, key.hint, key.owner_id) == before
