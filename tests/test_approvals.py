"""Two-person approval of large deletions (services.approvals): the team's rule, the job that
waits, who may approve or refuse it, expiry, the audit trail, the email, the pages and the
API.

The upstream is the emulator over real HTTP; jobs run in-process (`run_bulk_delete`, as the
worker's task does); the browser flow with a real worker is tests/browser/test_approvals.py.
"""

import json
import time
from datetime import timedelta
from functools import partial

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from tests.api_helpers import ApiClient, make_token, problem_type
from tests.conftest import TEST_KEY, authenticated_at
from tests.threads_helpers import body, url
from threads_app import selectors, tasks
from threads_app.forms.teams import ApprovalRuleForm
from threads_app.models import (
    AuditEvent,
    BulkDeleteJob,
    JobApproval,
    Membership,
    RetentionPolicy,
    TrackedThread,
    WebhookDelivery,
    WebhookEndpoint,
)
from threads_app.selectors import ThreadFilters
from threads_app.services import approvals, bulk, jobs, teams, webhooks
from threads_app.services.refusals import NotAllowed, Refused

Role = Membership.Role
State = BulkDeleteJob.State
Action = AuditEvent.Action
committed = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(make_user, make_team, make_key, make_thread, django_user_model):
    """Teams Red (owners alice and bob, member dave) and Blue (owners alice and carol), each
    with the rule "more than 2 threads" and 3 "purge" threads under its key; alice's own key
    with one "purge" thread; and root, a superuser."""
    alice, bob, carol, dave = (make_user(n) for n in ("alice", "bob", "carol", "dave"))
    for person in (alice, bob, carol, dave):
        person.email = f"{person.username}@example.com"
        person.save()
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-1234")
    red = make_team("Red", {alice: Role.OWNER, bob: Role.OWNER, dave: Role.MEMBER})
    blue = make_team("Blue", {alice: Role.OWNER, carol: Role.OWNER})
    keys = {
        "red": make_key(team=red, created_by=alice, label="RedKey"),
        "blue": make_key(team=blue, created_by=alice, label="BlueKey"),
        "own": make_key(owner=alice, label="Own"),
    }
    threads = {
        "red": [make_thread(keys["red"], label=f"purge red {n}") for n in range(3)],
        "blue": [make_thread(keys["blue"], label=f"purge blue {n}") for n in range(3)],
        "own": [make_thread(keys["own"], label="purge own")],
    }
    for team in (red, blue):
        team.approval_threshold = 2
        team.save()
    return {
        "alice": alice,
        "bob": bob,
        "carol": carol,
        "dave": dave,
        "root": root,
        "red": red,
        "blue": blue,
        "keys": keys,
        "threads": threads,
    }


def request_deletion(user, *, q="purge", team=None):
    """Select the threads matching `q` (of `team`) and ask to delete them all."""
    filters = ThreadFilters(q=q, team_id=team.pk if team else None)
    selection = jobs.create_selection(user=user, filters=filters)
    return jobs.start_selection_job(user=user, selection=selection, typed_count=selection.count)


def refusal_code(call):
    with pytest.raises(Refused) as refused:
        call()
    return refused.value.code


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


# --- The rule ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rule_is_off_by_default(user, make_team, make_key, make_thread):
    team = make_team("Plain", {user: Role.OWNER})
    assert team.approval_threshold is None
    key = make_key(team=team, created_by=user)
    [make_thread(key, label="many") for _ in range(5)]
    job = request_deletion(user, q="many")
    assert job.state == State.QUEUED and not job.approvals.exists()


@pytest.mark.django_db
def test_a_deletion_of_at_most_n_threads_runs_at_once(
    world, emulator, django_capture_on_commit_callbacks
):
    world["red"].approval_threshold = 3
    world["red"].save()
    with django_capture_on_commit_callbacks(execute=True):
        job = request_deletion(world["alice"], q="purge red")
    job.refresh_from_db()
    assert (job.state, job.approval_expires_at) == (State.QUEUED, None)
    assert job.task_id  # queued for the worker
    assert not events(Action.JOB_APPROVAL_REQUESTED) and not mail.outbox


@pytest.mark.django_db
def test_more_than_n_threads_wait_for_approval_and_are_not_queued(
    world, django_capture_on_commit_callbacks
):
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        job = request_deletion(world["alice"], q="purge red")
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL and job.task_id == ""
    assert before + timedelta(hours=72) <= job.approval_expires_at
    assert job.approval_expires_at <= timezone.now() + timedelta(hours=72)
    [approval] = job.approvals.all()
    assert (approval.team, approval.threads, approval.threshold) == (world["red"], 3, 2)
    assert approval.decision == JobApproval.Decision.WAITING
    [requested] = events(Action.JOB_APPROVAL_REQUESTED)
    assert requested.details == {"job": job.pk, "threads": 3, "threshold": 2}
    assert (requested.team_id, requested.actor_username) == (world["red"].pk, "alice")
    # Owners who may approve are emailed (bob; not alice, who asked), with nothing secret.
    [email] = mail.outbox
    assert email.to == ["bob@example.com"]
    assert f"job #{job.pk}" in email.subject
    assert "3 threads of the team “Red”" in email.body and f"/jobs/{job.pk}/" in email.body
    assert TEST_KEY not in email.body and world["keys"]["red"].hint not in email.body
    # The selection counts as being deleted: it is not started twice.
    assert (
        refusal_code(
            lambda: jobs.start_selection_job(
                user=world["alice"], selection=job.selection, typed_count=3
            )
        )
        == "deletion_underway"
    )


@pytest.mark.django_db
def test_each_team_s_endpoints_are_told_the_job_needs_approval(world):
    hooks = {
        name: webhooks.create_endpoint(
            actor=world["alice"],
            url=f"https://127.0.0.1:9/{name}",
            events=[WebhookEndpoint.Event.JOB_NEEDS_APPROVAL],
            team=world[name],
            description=f"{name} approvals",
        )[0]
        for name in ("red", "blue")
    }
    job = request_deletion(world["alice"], q="purge")  # 3 red, 3 blue, 1 of alice's own key
    for name in ("red", "blue"):
        [delivery] = WebhookDelivery.objects.filter(endpoint=hooks[name])
        payload = json.loads(delivery.body)
        assert payload["type"] == "job.needs_approval"
        assert payload["data"] == {
            "job_id": job.pk,
            "kind": "delete",
            "team_id": world[name].pk,
            "threads": 3,
            "threshold": 2,
            "created_by": "alice",
            "expires_at": job.approval_expires_at.isoformat(),
        }
    # A job that needs no approval tells nobody so.
    world["red"].approval_threshold = None
    world["red"].save()
    request_deletion(world["alice"], q="purge red")
    assert WebhookDelivery.objects.filter(endpoint=hooks["red"]).count() == 1


@pytest.mark.django_db
def test_ticked_rows_over_the_rule_wait_too(world):
    red = world["threads"]["red"]
    job = bulk.start_bulk_delete(actor=world["alice"], thread_ids=[t.pk for t in red])
    assert job.state == State.AWAITING_APPROVAL and job.total == 3
    assert list(job.approvals.values_list("team__name", "threads")) == [("Red", 3)]
    two = bulk.start_bulk_delete(actor=world["alice"], thread_ids=[t.pk for t in red[:2]])
    assert two.state == State.QUEUED and not two.approvals.exists()


@pytest.mark.django_db
def test_threads_of_teams_without_the_rule_need_no_approval(world):
    world["red"].approval_threshold = None
    world["red"].save()
    job = request_deletion(world["alice"], q="purge")  # 3 red, 3 blue, 1 own
    assert job.state == State.AWAITING_APPROVAL
    assert list(job.approvals.values_list("team__name", flat=True)) == ["Blue"]


@pytest.mark.django_db
def test_retention_policy_jobs_are_exempt(world):
    policy = RetentionPolicy.objects.create(
        api_key=world["keys"]["red"], max_age_days=1, enabled=True, set_by=world["alice"]
    )
    job = jobs.start_policy_job(
        policy, bound_pk=selectors.highest_thread_pk(), as_of=timezone.now(), origin=None
    )
    assert job.state == State.QUEUED and not job.approvals.exists()


# --- Who may approve ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_requester_cannot_approve_or_refuse_their_own_job(world):
    job = request_deletion(world["alice"], q="purge red")
    for decide in (approvals.approve_job, approvals.refuse_job):
        with pytest.raises(NotAllowed) as refused:
            decide(user=world["alice"], job=job)
        assert refused.value.code == "self_approval"
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL
    assert not events(Action.JOB_APPROVED) and not events(Action.JOB_APPROVAL_REFUSED)


@pytest.mark.django_db
def test_a_superuser_cannot_approve_their_own_job_but_may_approve_others(world):
    own = request_deletion(world["root"], q="purge red")
    assert own.state == State.AWAITING_APPROVAL
    with pytest.raises(NotAllowed) as refused:
        approvals.approve_job(user=world["root"], job=own)
    assert refused.value.code == "self_approval"
    assert selectors.jobs_awaiting_approval(world["root"]).filter(pk=own.pk).count() == 0

    others = request_deletion(world["alice"], q="purge blue")
    assert approvals.approve_job(user=world["root"], job=others).state == State.QUEUED


@pytest.mark.django_db
def test_a_non_owner_cannot_approve(world):
    job = request_deletion(world["alice"], q="purge red")
    # dave is a member of Red, carol owns Blue only: neither may approve; dave does not even
    # see the job.
    for person in ("dave", "carol"):
        with pytest.raises(NotAllowed) as refused:
            approvals.approve_job(user=world[person], job=job)
        assert refused.value.code == "not_owner"
    assert not selectors.visible_jobs(world["dave"]).filter(pk=job.pk).exists()
    assert not selectors.jobs_awaiting_approval(world["carol"]).exists()
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL


@pytest.mark.django_db
def test_an_owner_who_lost_the_role_can_no_longer_approve(world):
    job = request_deletion(world["alice"], q="purge red")
    Membership.objects.filter(team=world["red"], user=world["bob"]).update(role=Role.MEMBER)
    with pytest.raises(NotAllowed) as refused:
        approvals.approve_job(user=world["bob"], job=job)
    assert refused.value.code == "not_owner"


@pytest.mark.django_db
def test_every_team_involved_needs_its_own_owner_s_approval(
    world, emulator, django_capture_on_commit_callbacks
):
    job = request_deletion(world["alice"], q="purge")  # 3 red, 3 blue, 1 of alice's own key
    assert sorted(job.approvals.values_list("team__name", "threads")) == [
        ("Blue", 3),
        ("Red", 3),
    ]
    # Each owner sees it waiting for them (it is narrowed to no team: they see it anyway).
    assert job.team is None
    for person in ("bob", "carol"):
        assert list(selectors.jobs_awaiting_approval(world[person])) == [job]
    approved = approvals.approve_job(user=world["bob"], job=job)
    assert approved.state == State.AWAITING_APPROVAL and approved.task_id == ""
    assert list(selectors.jobs_awaiting_approval(world["bob"])) == []
    with pytest.raises(NotAllowed):  # bob has nothing left to approve here
        approvals.approve_job(user=world["bob"], job=job)
    with django_capture_on_commit_callbacks(execute=True):
        approved = approvals.approve_job(user=world["carol"], job=job)
    approved.refresh_from_db()
    assert approved.state == State.QUEUED and approved.task_id
    assert [(e.team_name, e.actor_username, e.details) for e in events(Action.JOB_APPROVED)] == [
        ("Red", "bob", {"job": job.pk, "threads": 3}),
        ("Blue", "carol", {"job": job.pk, "threads": 3}),
    ]
    assert (
        refusal_code(lambda: approvals.approve_job(user=world["carol"], job=job))
        == "job_not_awaiting_approval"
    )

    bulk.run_bulk_delete(job.pk)  # as the worker's task does: every thread deleted once
    job.refresh_from_db()
    assert (job.state, job.total, job.done) == (State.FINISHED, 7, 7)
    assert not TrackedThread.objects.filter(label__startswith="purge").exclude(
        state=TrackedThread.State.DELETED
    )


@pytest.mark.django_db
def test_an_owner_of_several_teams_approves_for_each(world, make_user):
    both = make_user("erin")
    for team in (world["red"], world["blue"]):
        Membership.objects.create(team=team, user=both, role=Role.OWNER)
    job = request_deletion(world["alice"], q="purge")
    assert approvals.approve_job(user=both, job=job).state == State.QUEUED
    assert set(job.approvals.values_list("decided_by__username", flat=True)) == {"erin"}


@pytest.mark.django_db
def test_a_refused_job_never_runs(world, emulator):
    job = request_deletion(world["alice"], q="purge red")
    refused = approvals.refuse_job(user=world["bob"], job=job, reason="  Not this quarter. ")
    assert (refused.state, refused.task_id) == (State.CANCELLED, "")
    assert refused.finished_at is not None
    [approval] = refused.approvals.all()
    assert (approval.decision, approval.decided_by, approval.reason) == (
        "refused",
        world["bob"],
        "Not this quarter.",
    )
    [event] = events(Action.JOB_APPROVAL_REFUSED)
    assert event.details == {"job": job.pk, "threads": 3, "reason": "Not this quarter."}
    assert (
        refusal_code(lambda: approvals.approve_job(user=world["bob"], job=job))
        == "job_not_awaiting_approval"
    )
    bulk.run_bulk_delete(job.pk)  # even a run of it deletes nothing
    assert [m for m, _ in emulator.request_log if m == "DELETE"] == []
    assert not TrackedThread.objects.filter(state=TrackedThread.State.DELETED).exists()


@pytest.mark.django_db
def test_a_refusal_s_reason_is_bounded(world):
    job = request_deletion(world["alice"], q="purge red")
    long = "x" * (approvals.MAX_REASON + 1)
    code = refusal_code(lambda: approvals.refuse_job(user=world["bob"], job=job, reason=long))
    assert code == "reason_too_long"
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL


@pytest.mark.django_db
def test_the_requester_may_withdraw_a_waiting_job(world):
    job = request_deletion(world["alice"], q="purge red")
    assert jobs.cancel_job(user=world["alice"], job=job).state == State.CANCELLED
    assert (
        refusal_code(lambda: approvals.approve_job(user=world["bob"], job=job))
        == "job_not_awaiting_approval"
    )


# --- Expiry ------------------------------------------------------------------------------------


def _overdue(job):
    BulkDeleteJob.objects.filter(pk=job.pk).update(
        approval_expires_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.django_db
def test_the_sweep_expires_a_request_not_approved_within_72_hours(world):
    job = request_deletion(world["alice"], q="purge")
    approvals.approve_job(user=world["bob"], job=job)  # Red approved, Blue still waiting
    later = request_deletion(world["alice"], q="purge own")  # no rule: queued
    BulkDeleteJob.objects.filter(pk=job.pk).update(
        approval_expires_at=timezone.now() + timedelta(minutes=1)
    )
    tasks.sweep()
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL  # not yet

    _overdue(job)
    tasks.sweep()
    tasks.sweep()  # once only
    job.refresh_from_db()
    assert (job.state, job.task_id) == (State.EXPIRED, "")
    assert job.finished_at is not None
    [expired] = events(Action.JOB_APPROVAL_EXPIRED)  # Blue's: Red's was given
    assert (expired.team_name, expired.actor_id) == ("Blue", None)
    assert expired.details == {"job": job.pk, "threads": 3, "requested_by": "alice"}
    assert BulkDeleteJob.objects.get(pk=later.pk).state == State.QUEUED
    assert (
        refusal_code(lambda: approvals.approve_job(user=world["carol"], job=job))
        == "approval_expired"
    )


@pytest.mark.django_db
def test_approving_a_late_request_is_refused_before_the_sweep_ran(world):
    job = request_deletion(world["alice"], q="purge red")
    _overdue(job)
    assert not selectors.jobs_awaiting_approval(world["bob"]).exists()
    for decide in (approvals.approve_job, approvals.refuse_job):
        assert refusal_code(partial(decide, user=world["bob"], job=job)) == "approval_expired"
    job.refresh_from_db()
    assert job.state == State.EXPIRED and job.task_id == ""
    assert len(events(Action.JOB_APPROVAL_EXPIRED)) == 1  # recorded once, kept
    assert not events(Action.JOB_APPROVED)


# --- The team's setting --------------------------------------------------------------------------


@pytest.mark.django_db
def test_setting_the_rule_is_audited_like_the_two_factor_rule(world):
    red, alice = world["red"], world["alice"]
    assert teams.set_approval_threshold(red, actor=alice, threshold=10) is True
    assert teams.set_approval_threshold(red, actor=alice, threshold=10) is False  # unchanged
    assert teams.set_approval_threshold(red, actor=alice, threshold=None) is True
    assert [(e.team_name, e.details) for e in events(Action.TEAM_APPROVAL_RULE)] == [
        ("Red", {"threshold": 10}),
        ("Red", {"threshold": None}),
    ]
    red.refresh_from_db()
    assert red.approval_threshold is None


@pytest.mark.django_db
def test_only_an_owner_sets_the_rule_and_only_to_a_positive_number(world):
    red = world["red"]
    with pytest.raises(NotAllowed):
        teams.set_approval_threshold(red, actor=world["dave"], threshold=5)
    for bad in (0, -1, approvals.MAX_THRESHOLD + 1):
        with pytest.raises(Refused) as refused:
            teams.set_approval_threshold(red, actor=world["alice"], threshold=bad)
        assert (refused.value.code, refused.value.field) == ("invalid_threshold", "threshold")
    red.refresh_from_db()
    assert red.approval_threshold == 2 and not events(Action.TEAM_APPROVAL_RULE)


def _owner_client(client, person):
    client.force_login(person)
    return client


@pytest.mark.django_db
def test_the_team_page_sets_the_rule_with_clear_messages(client, world):
    owner = _owner_client(client, world["alice"])
    red = world["red"]
    page = body(owner.get(url("team_detail", red.pk)))
    assert "Deletions of more than N threads need a second owner" in page
    assert 'name="threshold"' in page and 'value="2"' in page

    cases = {
        "0": "Type a number of threads of at least 1.",
        "-3": "Type a number of threads of at least 1.",
        "many": "Type a whole number of threads, such as 100.",
        "99999999999": "Type a number of threads of at most 2,147,483,647.",
        "": "Type the number of threads above which a deletion needs approval.",
    }
    for typed, message in cases.items():
        response = owner.post(
            url("team_approval_rule", red.pk), {"required": "on", "threshold": typed}
        )
        assert response.status_code == 200 and message in body(response), typed
    red.refresh_from_db()
    assert red.approval_threshold == 2

    response = owner.post(url("team_approval_rule", red.pk), {"required": "on", "threshold": "50"})
    assert response.status_code == 302
    red.refresh_from_db()
    assert red.approval_threshold == 50
    page = body(owner.get(url("team_detail", red.pk)))
    assert "Deletions of more than 50 of Red&#x27;s threads now need a second owner." in page
    owner.post(url("team_approval_rule", red.pk), {"threshold": "50"})  # the box unticked: off
    red.refresh_from_db()
    assert red.approval_threshold is None


@pytest.mark.django_db
def test_a_member_sees_no_rule_form_and_cannot_post_one(client, world):
    member = _owner_client(client, world["dave"])
    assert "need a second owner" not in body(member.get(url("team_detail", world["red"].pk)))
    response = member.post(url("team_approval_rule", world["red"].pk), {"threshold": "9"})
    assert response.status_code == 403
    world["red"].refresh_from_db()
    assert world["red"].approval_threshold == 2


@given(required=st.sampled_from(["", "on", "off"]), threshold=st.text(max_size=30))
def test_the_rule_form_takes_any_input_to_a_threshold_or_an_error(required, threshold):
    form = ApprovalRuleForm({"required": required, "threshold": threshold})
    if form.is_valid():
        rule = form.rule
        assert rule is None or 1 <= rule <= approvals.MAX_THRESHOLD
        assert rule is None or required
    else:
        assert form.errors["threshold"]


# --- Pages ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_job_page_shows_who_must_approve_and_the_buttons_to_those_who_may(client, world):
    job = request_deletion(world["alice"], q="purge")
    client.force_login(world["bob"])
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "Awaiting approval" in page and 'id="approval-waiting"' in page
    assert '<th scope="row">Red</th>' in page and '<th scope="row">Blue</th>' in page
    assert "bob" in page and "carol" in page  # who may approve (alice asked: not her)
    assert url("job_approve", job.pk) in page and url("job_refuse", job.pk) in page
    assert url("job_pause", job.pk) not in page  # nothing runs yet to pause

    client.force_login(world["alice"])
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert url("job_approve", job.pk) not in page
    assert "You asked for this deletion, so you cannot approve it." in page
    assert url("job_cancel", job.pk) in page


@pytest.mark.django_db
def test_the_jobs_list_and_the_overview_show_approvals_waiting_for_you(client, world):
    job = request_deletion(world["alice"], q="purge red")
    client.force_login(world["bob"])
    listing = body(client.get(url("job_list")))
    assert "Waiting for your approval" in listing and f"#{job.pk}</a>, asked by alice" in listing
    overview = body(client.get(url("overview")))
    assert "1 deletion waits for your approval." in overview
    for person in ("alice", "carol"):  # the requester, and an owner of another team
        client.force_login(world[person])
        assert "Waiting for your approval" not in body(client.get(url("job_list")))
        assert "for your approval" not in body(client.get(url("overview")))


@pytest.mark.django_db
def test_the_overview_costs_one_query_for_approvals_whatever_waits(client, world):
    client.force_login(world["bob"])
    client.get(url("overview"))
    with CaptureQueriesContext(connection) as none_waiting:
        client.get(url("overview"))
    for _ in range(3):
        request_deletion(world["alice"], q="purge red")
    with CaptureQueriesContext(connection) as three_waiting:
        page = body(client.get(url("overview")))
    assert "3 deletions wait for your approval." in page
    assert len(three_waiting) == len(none_waiting)


@pytest.mark.django_db
def test_approving_from_the_page_confirms_first_and_needs_a_recent_authentication(
    client, world, django_capture_on_commit_callbacks
):
    job = request_deletion(world["alice"], q="purge red")
    client.force_login(world["bob"])
    confirm = body(client.get(url("job_approve", job.pk)))
    assert f"Approve bulk delete #{job.pk}?" in confirm and "You approve for Red." in confirm
    # htmx: the confirmation alone, for the dialog.
    partial = body(client.get(url("job_approve", job.pk), headers={"HX-Request": "true"}))
    assert "<html" not in partial and "data-close-dialog" in partial

    authenticated_at(client.session, world["bob"], time.time() - 3600)
    response = client.post(url("job_approve", job.pk))
    assert response.status_code == 302 and "reauthenticate" in response["Location"]
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL

    authenticated_at(client.session, world["bob"], time.time())
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("job_approve", job.pk))
    assert response.status_code == 302 and response["Location"] == url("bulk_delete_job", job.pk)
    job.refresh_from_db()
    assert job.state == State.QUEUED and job.task_id
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "Approved: the deletion is queued." in page and "approved</span> by bob" in page


@pytest.mark.django_db
def test_the_page_says_why_an_approval_is_refused(client, world):
    job = request_deletion(world["alice"], q="purge red")
    client.force_login(world["alice"])
    confirm = body(client.get(url("job_approve", job.pk)))
    assert "You asked for this deletion: another owner must approve or refuse it." in confirm
    assert '<button type="submit"' not in confirm.split('id="job-decide"')[1]
    client.post(url("job_approve", job.pk))
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "You asked for this deletion: another owner must approve or refuse it." in page
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL


@pytest.mark.django_db
def test_refusing_from_the_page_keeps_the_reason_and_checks_it(client, world):
    job = request_deletion(world["alice"], q="purge red")
    client.force_login(world["bob"])
    assert "Why (optional, kept in the audit log)" in body(client.get(url("job_refuse", job.pk)))
    too_long = client.post(url("job_refuse", job.pk), {"reason": "y" * 501})
    assert "Ensure this value has at most 500 characters" in body(too_long)
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL

    response = client.post(url("job_refuse", job.pk), {"reason": "Too many at once"})
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.state == State.CANCELLED
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "Refused: the deletion is cancelled and will not run." in page
    assert "refused</span> by bob" in page and "“Too many at once”" in page


@pytest.mark.django_db
def test_an_expired_request_says_so_on_its_page(client, world):
    job = request_deletion(world["alice"], q="purge red")
    _overdue(job)
    tasks.sweep()
    client.force_login(world["bob"])
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "Approval expired" in page and 'id="approval-expired"' in page
    assert url("job_approve", job.pk) not in page
    client.post(url("job_approve", job.pk))
    assert "This request expired" in body(client.get(url("bulk_delete_job", job.pk)))


# --- API -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_approves_and_refuses(world, django_capture_on_commit_callbacks):
    job = request_deletion(world["alice"], q="purge red")
    asked = ApiClient(make_token(world["alice"]))
    shown = asked.get(f"jobs/{job.pk}").json()
    assert shown["state"] == "approval" and shown["approval_expires_at"]
    assert shown["approvals"] == [
        {"team": "Red", "threads": 3, "decision": "", "decided_by": "", "decided_at": None}
    ]
    response = asked.post(f"jobs/{job.pk}/approve")
    assert response.status_code == 403 and problem_type(response) == "self_approval"

    bob = ApiClient(make_token(world["bob"]))
    with django_capture_on_commit_callbacks(execute=True):
        response = bob.post(f"jobs/{job.pk}/approve")
    assert response.status_code == 200
    assert response.json()["state"] == "queued"
    assert response.json()["approvals"][0]["decided_by"] == "bob"
    again = bob.post(f"jobs/{job.pk}/approve")
    assert again.status_code == 409 and problem_type(again) == "job_not_awaiting_approval"

    other = request_deletion(world["alice"], q="purge blue")
    carol = ApiClient(make_token(world["carol"]))
    response = carol.post(f"jobs/{other.pk}/refuse", {"reason": "No"})
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert response.json()["approvals"][0]["decision"] == "refused"
    assert bob.post(f"jobs/{other.pk}/refuse").status_code == 404  # not Red's: out of sight


@pytest.mark.django_db
def test_the_api_refuses_expired_non_owners_and_bad_bodies(world):
    job = request_deletion(world["alice"], q="purge red")
    dave = ApiClient(make_token(world["dave"]))
    assert dave.post(f"jobs/{job.pk}/approve").status_code == 404
    bob = ApiClient(make_token(world["bob"]))
    long = bob.post(f"jobs/{job.pk}/refuse", {"reason": "z" * 501})
    assert long.status_code == 422
    unknown = bob.post(f"jobs/{job.pk}/refuse", {"why": "no"})
    assert unknown.status_code == 422
    read_only = ApiClient(make_token(world["bob"], scopes=["threads:read"]))
    assert read_only.post(f"jobs/{job.pk}/approve").status_code == 403
    _overdue(job)
    expired = bob.post(f"jobs/{job.pk}/approve")
    assert expired.status_code == 409 and problem_type(expired) == "approval_expired"
    assert bob.get(f"jobs/{job.pk}").json()["state"] == "expired"


@pytest.mark.django_db
def test_a_team_token_approves_for_its_own_team_only(world, make_user):
    both = make_user("erin")
    for team in (world["red"], world["blue"]):
        Membership.objects.create(team=team, user=both, role=Role.OWNER)
    job = request_deletion(world["alice"], q="purge")
    red_token = ApiClient(make_token(both, team=world["red"]))
    response = red_token.post(f"jobs/{job.pk}/approve")
    assert response.status_code == 200 and response.json()["state"] == "approval"
    decided = dict(job.approvals.values_list("team__name", "decision"))
    assert decided == {"Red": "approved", "Blue": ""}


@pytest.mark.django_db
def test_the_confirmations_say_beforehand_that_the_deletion_will_wait(client, world):
    alice = world["alice"]
    client.force_login(alice)
    selection = jobs.create_selection(user=alice, filters=ThreadFilters(q="purge"))
    page = body(client.get(url("selection_detail", selection.pk)))
    assert "3 of the threads are team Blue's, more than the 2 its rule allows" in page
    assert "3 of the threads are team Red's" in page and "each of those teams" in page
    red = world["threads"]["red"]
    confirm = body(client.get(url("thread_bulk_delete"), {"thread": [t.pk for t in red]}))
    assert "3 of the threads are team Red's" in confirm and "that team must approve" in confirm
    two = body(client.get(url("thread_bulk_delete"), {"thread": [t.pk for t in red[:2]]}))
    assert 'id="needs-approval"' not in two

    response = client.post(url("selection_detail", selection.pk), {"typed_count": "7"})
    job = BulkDeleteJob.objects.get(selection=selection)
    follow = body(client.get(response["Location"]))
    assert f"Deleting 7 threads: job #{job.pk} waits for another owner&#x27;s approval." in follow


@pytest.mark.django_db
def test_each_approver_gets_one_email_naming_their_teams(
    world, make_user, django_capture_on_commit_callbacks
):
    erin = make_user("erin")  # owns both teams: one email for the two
    silent = make_user("fay")  # no address: nothing sent, nothing fails
    silent.email = ""
    silent.save()
    for team in (world["red"], world["blue"]):
        Membership.objects.create(team=team, user=erin, role=Role.OWNER)
    Membership.objects.create(team=world["red"], user=silent, role=Role.OWNER)
    with django_capture_on_commit_callbacks(execute=True):
        request_deletion(world["alice"], q="purge")
    sent = {tuple(email.to): email.body for email in mail.outbox}
    assert set(sent) == {("bob@example.com",), ("carol@example.com",), ("erin@example.test",)}
    assert "team “Blue”" in sent["erin@example.test",]
    assert "team “Red”" in sent["erin@example.test",]
    assert "Blue" not in sent["bob@example.com",]


@pytest.mark.django_db
def test_a_mail_server_that_fails_leaves_the_request_standing(
    world, settings, caplog, django_capture_on_commit_callbacks
):
    import socket

    with socket.socket() as unused:  # a port nothing listens on: the connection is refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 2
    with django_capture_on_commit_callbacks(execute=True):
        job = request_deletion(world["alice"], q="purge red")
    job.refresh_from_db()
    assert job.state == State.AWAITING_APPROVAL
    assert f"Job {job.pk}: the approval email was not sent" in caplog.text
    assert list(selectors.jobs_awaiting_approval(world["bob"])) == [job]


@pytest.mark.django_db
def test_an_approver_sees_their_own_teams_threads_of_a_job_and_not_its_receipt(
    client, world, settings, tmp_path
):
    """A job over Red's and Blue's threads asks bob (Red's owner) to approve: he sees its
    counts and Red's threads, never Blue's, on the page or in the API, and not its receipt,
    which names them all; alice, who asked, sees every one."""
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.log")
    red, blue = world["threads"]["red"], world["threads"]["blue"]
    job = bulk.start_bulk_delete(actor=world["alice"], thread_ids=[t.pk for t in red + blue])
    assert job.state == State.AWAITING_APPROVAL and job.total == 6

    client.force_login(world["bob"])
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert all(t.thread_id in page for t in red)
    assert not any(t.thread_id in page for t in blue)
    assert "This job deletes other teams' threads too" in page
    shown = ApiClient(make_token(world["bob"])).get(f"jobs/{job.pk}").json()
    assert {item["thread_id"] for item in shown["items"]} == {t.thread_id for t in red}
    assert shown["total"] == 6

    BulkDeleteJob.objects.filter(pk=job.pk).update(state=State.FINISHED, finished_at=timezone.now())
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert "receipt.csv" not in page
    refused = body(client.get(url("job_receipt_csv", job.pk), follow=True))
    assert "its requester or a superuser can download it" in refused
    response = ApiClient(make_token(world["bob"])).get(f"jobs/{job.pk}/receipt")
    assert response.status_code == 403 and problem_type(response) == "receipt_other_teams"

    client.force_login(world["alice"])
    page = body(client.get(url("bulk_delete_job", job.pk)))
    assert all(t.thread_id in page for t in red + blue)
    assert "other teams' threads too" not in page
    receipt = client.get(url("job_receipt_csv", job.pk))
    assert receipt.status_code == 200
    text = b"".join(receipt.streaming_content).decode()
    assert all(t.thread_id in text for t in red + blue)
