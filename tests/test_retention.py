"""Retention policies: the page and its preview, who may set one, the audit of its changes,
and `manage.py enforce_retention` deleting through the audited bulk-delete pipeline.

The enforcement tests commit (`transaction=True`): a bulk job's threads have connections of
their own. Most run the job's task as it is queued (`immediate_tasks`); the command's wait is
tested with a real `db_worker`, and without one.
"""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.conftest import OTHER_TEST_KEY
from tests.threads_helpers import HX, body, is_partial, url
from threads_app import audit, selectors
from threads_app.models import (
    AuditEvent,
    BulkDeleteJob,
    Membership,
    RetentionPolicy,
    TrackedThread,
)
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.services.retention import PreviewFirst, set_retention_policy
from threads_app.tasks import enforce_retention_task

Action = AuditEvent.Action
Role = Membership.Role
State = TrackedThread.State
committed = pytest.mark.django_db(transaction=True)


@pytest.fixture
def inline(immediate_tasks):
    """Bulk-delete jobs run as they are queued, inside the command."""


@pytest.fixture
def aged(make_thread):
    """A tracked thread created `days` ago upstream (or, with `known=False`, of unknown
    creation and tracked `days` ago)."""

    def make(api_key, days, *, label="", known=True, state=State.ACTIVE):
        thread = make_thread(api_key, label=label)
        when = timezone.now() - timedelta(days=days)
        fields = {"upstream_created_at": when} if known else {"upstream_created_at": None}
        TrackedThread.objects.filter(pk=thread.pk).update(
            tracked_at=when if not known else timezone.now(), state=state, **fields
        )
        thread.refresh_from_db()
        return thread

    return make


def enable(api_key, actor, days=30):
    return set_retention_policy(
        api_key, actor=actor, max_age_days=days, enabled=True, previewed_days=days
    )


def policy_events():
    return list(AuditEvent.objects.filter(action__startswith="retention.").order_by("sequence"))


# --- the preview --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_preview_counts_every_old_thread_and_lists_the_oldest_50(
    user_client, user, api_key, make_key, aged
):
    old = [aged(api_key, 100 + n, label=f"Old {n}") for n in range(60)]
    untracked_since = aged(api_key, 95, label="Unknown creation", known=False)
    for days in (1, 10, 89):
        aged(api_key, days, label=f"Young {days}")
    aged(api_key, 200, label="Deleted", state=State.DELETED)
    aged(api_key, 200, label="Being deleted", state=State.DELETING)
    gone = aged(api_key, 150, label="Gone upstream", state=State.GONE)
    aged(make_key(owner=user, label="other key", secret=OTHER_TEST_KEY), 300, label="Other key's")

    preview = selectors.retention_preview(api_key, max_age_days=90)
    going = [*old, untracked_since, gone]
    assert preview.count == len(going) == 62
    oldest_first = sorted(going, key=lambda t: t.upstream_created_at or t.tracked_at)
    assert [t.pk for t in preview.first] == [t.pk for t in oldest_first[:50]]
    assert preview.more == 12

    text = body(user_client.get(url("key_retention", api_key.pk)))  # no policy yet: 90 days
    assert "Preview: older than 90 days" in text
    assert "62 threads would be deleted now" in text
    assert text.count('<code class="id">') == 50
    assert "… and 12 more." in text
    assert 'name="previewed_days" value="90"' in text
    assert "Young" not in text and "Other key" not in text and "Being deleted" not in text


@pytest.mark.django_db
def test_preview_shows_the_days_entered_and_saves_nothing(user_client, api_key, aged):
    aged(api_key, 100, label="Ancient")
    aged(api_key, 10, label="Recent")

    response = user_client.post(
        url("key_retention", api_key.pk), {"max_age_days": "5", "action": "preview"}
    )

    text = body(response)
    assert response.status_code == 200
    assert "2 threads would be deleted now" in text and "Recent" in text
    assert 'name="previewed_days" value="5"' in text
    assert not RetentionPolicy.objects.exists() and policy_events() == []


@pytest.mark.django_db
def test_the_preview_answers_htmx_with_the_policy_region(user_client, api_key, aged):
    aged(api_key, 100, label="Ancient")
    response = user_client.post(
        url("key_retention", api_key.pk), {"max_age_days": "30", "action": "preview"}, **HX
    )
    text = body(response)
    assert is_partial(text) and text.lstrip().startswith('<div id="retention">')
    assert "1 thread would be deleted now" in text
    assert "HX-Request" in response["Vary"]


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "3651", "ten", ""])
def test_days_out_of_bounds_are_a_form_error(user_client, api_key, days):
    response = user_client.post(
        url("key_retention", api_key.pk), {"max_age_days": days, "action": "enable"}
    )
    assert response.status_code == 200
    assert 'aria-invalid="true"' in body(response)
    assert not RetentionPolicy.objects.exists()


# --- enabling needs the preview -------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("previewed", [None, "90"], ids=["no preview", "another days' preview"])
def test_enabling_without_the_preview_of_those_days_is_refused(
    user_client, api_key, aged, previewed
):
    aged(api_key, 100, label="Ancient")
    data = {"max_age_days": "30", "action": "enable"}
    if previewed:
        data["previewed_days"] = previewed

    response = user_client.post(url("key_retention", api_key.pk), data)

    text = body(response)
    assert response.status_code == 200
    assert "Check the preview, then enable." in text
    assert "Preview: older than 30 days" in text and "1 thread would be deleted now" in text
    assert 'name="previewed_days" value="30"' in text  # enabling again now goes through
    assert not RetentionPolicy.objects.exists() and policy_events() == []

    response = user_client.post(url("key_retention", api_key.pk), {**data, "previewed_days": "30"})
    assert response.status_code == 302
    policy = RetentionPolicy.objects.get(api_key=api_key)
    assert (policy.max_age_days, policy.enabled) == (30, True)


@pytest.mark.django_db
def test_the_service_refuses_to_enable_without_the_preview(user, api_key):
    with pytest.raises(PreviewFirst):
        set_retention_policy(api_key, actor=user, max_age_days=30, enabled=True)
    policy = set_retention_policy(api_key, actor=user, max_age_days=30, enabled=False)
    assert policy.enabled is False  # saving it off needs no preview


@pytest.mark.django_db
def test_saving_without_enabling_needs_no_preview_and_the_page_says_it_is_off(user_client, api_key):
    response = user_client.post(
        url("key_retention", api_key.pk), {"max_age_days": "45", "action": "disable"}
    )
    assert response.status_code == 302
    text = body(user_client.get(response["Location"]))
    assert "Retention for “alice&#x27;s key” is saved (45 days) and off." in text
    assert "45 days, not enforced" in text


@pytest.mark.django_db
def test_a_revoked_key_cannot_get_an_enabled_policy(user, api_key):
    api_key.revoked_at = timezone.now()
    api_key.save()
    with pytest.raises(Refused, match="revoked"):
        enable(api_key, user)


# --- who may set it -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.OWNER, 200), (Role.MEMBER, 403), (Role.VIEWER, 403), (None, 404), ("superuser", 200)],
)
def test_only_who_may_manage_a_team_key_may_see_or_set_its_policy(
    client, user, make_user, make_team, make_key, role, status
):
    team = make_team("Blue", {user: Role.OWNER})
    key = make_key(team=team, label="Blue key", created_by=user)
    actor = make_user("actor", is_superuser=role == "superuser")
    if role in Role.values:
        Membership.objects.create(team=team, user=actor, role=role)
    client.force_login(actor)

    assert client.get(url("key_retention", key.pk)).status_code == status
    response = client.post(
        url("key_retention", key.pk), {"max_age_days": "30", "action": "disable"}
    )
    assert response.status_code == (302 if status == 200 else status)
    assert RetentionPolicy.objects.filter(api_key=key).exists() == (status == 200)
    keys_page = body(client.get(url("key_list")))
    assert (url("key_retention", key.pk) in keys_page) == (status == 200)


@pytest.mark.django_db
def test_a_personal_key_s_policy_is_its_owner_s_alone(client, user, other_user, api_key):
    client.force_login(other_user)
    assert client.get(url("key_retention", api_key.pk)).status_code == 404
    with pytest.raises(NotAllowed):
        set_retention_policy(api_key, actor=other_user, max_age_days=30, enabled=False)
    client.force_login(user)
    assert client.get(url("key_retention", api_key.pk)).status_code == 200


# --- the audit of policy changes ------------------------------------------------------------


@pytest.mark.django_db
def test_every_change_of_a_policy_is_audited_with_before_and_after(
    user, make_user, make_team, make_key
):
    carol = make_user("carol")
    team = make_team("Blue", {user: Role.OWNER, carol: Role.OWNER})
    key = make_key(team=team, label="Blue key", created_by=user)

    policy = set_retention_policy(key, actor=user, max_age_days=60, enabled=False)
    enable(key, user, days=60)
    enable(key, user, days=60)  # the same settings by the same setter: nothing to record
    enable(key, user, days=30)
    enable(key, carol, days=30)  # carol takes it over: its setter changes
    set_retention_policy(key, actor=carol, max_age_days=30, enabled=False)

    events = policy_events()
    off60 = {"max_age_days": 60, "enabled": False, "set_by": "alice"}
    on60 = {**off60, "enabled": True}
    on30 = {**on60, "max_age_days": 30}
    carol30 = {**on30, "set_by": "carol"}
    assert [(e.action, e.details["before"], e.details["after"]) for e in events] == [
        (Action.RETENTION_SET, None, off60),
        (Action.RETENTION_ENABLED, off60, on60),
        (Action.RETENTION_SET, on60, on30),
        (Action.RETENTION_SET, on30, carol30),
        (Action.RETENTION_DISABLED, carol30, {**carol30, "enabled": False}),
    ]
    assert [e.actor_username for e in events] == ["alice", "alice", "alice", "carol", "carol"]
    assert {(e.team_id, e.api_key_id, e.details["policy"]) for e in events} == {
        (team.pk, key.pk, policy.pk)
    }
    assert audit.verify_chain().ok
    policy.refresh_from_db()
    assert (policy.enabled, policy.set_by) == (False, carol)


@pytest.mark.django_db
def test_policy_events_appear_in_the_audit_log_filter(user_client, user, api_key):
    enable(api_key, user)
    text = body(user_client.get(url("audit_list")))
    assert "Retention policy enabled" in text


# --- enforcement ----------------------------------------------------------------------------


def run_command(*args):
    out = StringIO()
    call_command("enforce_retention", *args, stdout=out)
    return out.getvalue()


def deletes_sent(emulator):
    return sorted(
        path.rsplit("/", 1)[1] for method, path in emulator.request_log if method == "DELETE"
    )


@pytest.mark.django_db
def test_dry_run_prints_what_would_go_per_key_and_deletes_nothing(
    user, api_key, make_key, make_team, aged, emulator
):
    team = make_team("Blue", {user: Role.OWNER})
    team_key = make_key(team=team, label="Blue key", created_by=user)
    old = [aged(api_key, 40 + n) for n in range(3)]
    aged(api_key, 5)
    team_old = aged(team_key, 400)
    quiet_key = make_key(owner=user, label="Quiet", secret=OTHER_TEST_KEY)
    aged(quiet_key, 400)
    policies = [enable(api_key, user), enable(team_key, user, days=365)]
    set_retention_policy(quiet_key, actor=user, max_age_days=1, enabled=False)
    events = AuditEvent.objects.count()

    output = run_command("--dry-run")

    assert output.startswith("Dry run: nothing is deleted.\n")
    assert (
        f"Key “alice's key” ({api_key.hint}, personal, alice): policy #{policies[0].pk}, "
        "30 days, set by alice: 3 threads would go\n"
    ) in output
    assert "".join(f"  {t.thread_id}\n" for t in reversed(old)) in output  # oldest first
    assert f"policy #{policies[1].pk}, 365 days, set by alice: 1 thread would go\n" in output
    assert f"  {team_old.thread_id}\n" in output
    assert "Quiet" not in output  # its policy is off
    assert deletes_sent(emulator) == []
    assert AuditEvent.objects.count() == events
    assert not BulkDeleteJob.objects.exists()
    assert not TrackedThread.objects.exclude(state=State.ACTIVE).exists()
    assert not RetentionPolicy.objects.filter(last_run_at__isnull=False).exists()


@pytest.mark.django_db
def test_without_enabled_policies_the_command_says_so(user, api_key):
    set_retention_policy(api_key, actor=user, max_age_days=10, enabled=False)
    assert "No retention policy is enabled." in run_command("--dry-run")


@committed
def test_enforcement_deletes_exactly_the_old_threads_through_the_audited_pipeline(
    inline, user, api_key, make_key, aged, emulator
):
    old = [aged(api_key, 31 + n, label=f"Old {n}") for n in range(4)]
    old.append(aged(api_key, 60, label="Tracked long ago", known=False))
    young = [aged(api_key, 29), aged(api_key, 1), aged(api_key, 20, known=False)]
    young.append(
        aged(make_key(owner=user, label="Other", secret=OTHER_TEST_KEY), 900)
    )  # another key's
    already = aged(api_key, 90, state=State.DELETED)
    policy = enable(api_key, user, days=30)

    output = run_command()

    old_ids = sorted(t.thread_id for t in old)
    assert deletes_sent(emulator) == old_ids
    assert "30 days, set by alice: 5 threads to delete, job #" in output
    job = BulkDeleteJob.objects.get()
    assert f"Job #{job.pk} finished: deleted: 5." in output
    assert (job.policy, job.created_by, job.state) == (policy, user, BulkDeleteJob.State.FINISHED)
    states = dict(TrackedThread.objects.values_list("thread_id", "state"))
    assert {states[t.thread_id] for t in old} == {State.DELETED}
    assert {states[t.thread_id] for t in young} == {State.ACTIVE}
    assert states[already.thread_id] == State.DELETED

    events = list(
        AuditEvent.objects.filter(
            action__in=[Action.THREAD_DELETE_INTENT, Action.THREAD_DELETED]
        ).order_by("sequence")
    )
    intents = {e.sequence: e for e in events if e.action == Action.THREAD_DELETE_INTENT}
    outcomes = [e for e in events if e.action == Action.THREAD_DELETED]
    assert sorted(e.thread_id for e in intents.values()) == old_ids
    assert sorted(intents[e.details["intent"]].thread_id for e in outcomes) == old_ids
    for event in events:
        assert event.actor_username == "alice"
        assert (event.details["policy"], event.details["set_by"]) == (policy.pk, "alice")
    assert {e.outcome for e in outcomes} == {AuditEvent.Outcome.SUCCESS}
    assert audit.verify_chain().ok

    policy.refresh_from_db()
    assert policy.last_run_at is not None
    assert policy.last_result == f"5 threads to delete: bulk-delete job #{job.pk}."
    assert run_command().endswith("30 days, set by alice: 0 threads to delete\n")  # all gone


@committed
def test_a_policy_whose_setter_left_the_team_is_not_enforced(
    inline, client, user, make_user, make_team, make_key, aged, emulator
):
    carol = make_user("carol")
    team = make_team("Blue", {user: Role.OWNER, carol: Role.OWNER})
    key = make_key(team=team, label="Blue key", created_by=user)
    old = aged(key, 100)
    policy = enable(key, user, days=30)
    Membership.objects.filter(team=team, user=user).delete()

    output = run_command()

    assert "set by alice: NOT ENFORCED: alice, who set it, may no longer manage" in output
    assert deletes_sent(emulator) == []
    assert not BulkDeleteJob.objects.exists()
    policy.refresh_from_db()
    assert policy.last_result.startswith("Not enforced: alice, who set it")
    client.force_login(carol)
    text = body(client.get(url("key_retention", key.pk)))
    assert "This policy is not enforced: alice, who set it, may no longer manage" in text

    enable(key, carol, days=30)  # a remaining owner saves it again: it is hers now
    assert "set by carol: 1 thread to delete" in run_command()
    assert deletes_sent(emulator) == [old.thread_id]
    assert AuditEvent.objects.filter(action=Action.THREAD_DELETED).get().details["set_by"] == (
        "carol"
    )


@committed
def test_a_setter_demoted_to_member_no_longer_enforces_it(
    inline, user, make_user, make_team, make_key, aged, emulator
):
    team = make_team("Blue", {user: Role.OWNER})
    key = make_key(team=team, label="Blue key", created_by=user)
    aged(key, 100)
    enable(key, user, days=30)
    Membership.objects.filter(team=team, user=user).update(role=Role.MEMBER)

    assert "NOT ENFORCED" in run_command()
    assert deletes_sent(emulator) == []


@committed
def test_the_task_enforces_and_reports_in_numbers(inline, user, api_key, aged, emulator):
    aged(api_key, 100)
    aged(api_key, 200)
    enable(api_key, user, days=30)
    assert enforce_retention_task.call() == {
        "policies": 1,
        "not_enforced": 0,
        "threads": 2,
        "jobs": 1,
    }
    assert len(deletes_sent(emulator)) == 2


@pytest.mark.django_db
def test_enqueue_queues_the_task_instead_of_enforcing(user, api_key, aged, emulator):
    aged(api_key, 100)
    enable(api_key, user, days=30)

    output = run_command("--enqueue")

    queued = DBTaskResult.objects.get()
    assert queued.task_path == "threads_app.tasks.enforce_retention_task"
    assert queued.status == TaskResultStatus.READY
    assert f"Queued: task {queued.pk}" in output
    assert deletes_sent(emulator) == [] and not BulkDeleteJob.objects.exists()


@committed
def test_the_command_waits_for_the_worker_to_run_the_jobs(
    start_worker, user, api_key, aged, emulator
):
    emulator.set_latency(0.2)  # the job is still running when the command starts waiting
    old = [aged(api_key, 100 + n) for n in range(3)]
    enable(api_key, user, days=30)
    start_worker()

    output = run_command()

    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FINISHED
    assert output.endswith(f"Job #{job.pk} finished: deleted: 3.\n")
    assert deletes_sent(emulator) == sorted(t.thread_id for t in old)


@committed
def test_no_wait_returns_once_the_jobs_are_queued(user, api_key, aged, emulator):
    aged(api_key, 100)
    enable(api_key, user, days=30)

    output = run_command("--no-wait")  # no worker runs: the job waits in the queue

    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.QUEUED
    assert DBTaskResult.objects.get().status == TaskResultStatus.READY
    assert f"1 thread to delete, job #{job.pk}" in output and "finished" not in output
    assert deletes_sent(emulator) == []


@committed
def test_without_a_worker_the_wait_ends_in_an_error_naming_the_jobs(user, api_key, aged, emulator):
    aged(api_key, 100)
    enable(api_key, user, days=30)

    with pytest.raises(CommandError) as refused:
        run_command("--wait-seconds", "0.2")

    job = BulkDeleteJob.objects.get()
    assert f"Still running after the wait: job #{job.pk}." in str(refused.value)
    assert "is a worker (manage.py db_worker) running?" in str(refused.value)
    assert job.state == BulkDeleteJob.State.QUEUED  # it goes on once a worker runs
