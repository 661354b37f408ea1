"""Two-person approval in the browser (with htmx and without JavaScript), run by a real
worker: owner A asks to delete a selection above the team's rule, owner B sees it waiting on
the overview, approves it, the job runs to the end, and A downloads its receipt, which
verifies; accessible in light and dark mode.

The flow's steps are functions of their own; the receipt's is
`tests.browser.test_receipts.download_and_verify_receipts`."""

import pytest
from playwright.sync_api import expect

from tests.browser.test_receipts import download_and_verify_receipts
from threads_app.models import BulkDeleteJob, Membership, TrackedThread
from threads_app.selectors import ThreadFilters
from threads_app.services import jobs

THREADS = 5  # the team's rule: more than 3 need a second owner
RULE = 3


@pytest.fixture
def red_team(user, other_user, make_team, make_key, make_thread):
    """Team Red: owners alice (`user`) and bob (`other_user`), the rule "more than 3", and 5
    "Purge" threads under its key."""
    team = make_team("Red", {user: Membership.Role.OWNER, other_user: Membership.Role.OWNER})
    team.approval_threshold = RULE
    team.save()
    key = make_key(team=team, created_by=user, label="RedKey")
    threads = [make_thread(key, label=f"Purge {n}") for n in range(THREADS)]
    return {"team": team, "threads": threads}


def request_deletion(page, *, java_script, check_accessibility):
    """As owner A: select every "purge" thread, read the warning, type the count; the job
    page says it awaits approval. The job."""
    page.goto("/?q=purge")
    page.get_by_role("button", name=f"Select all {THREADS} matching…").click()
    expect(page.locator("#needs-approval")).to_contain_text(
        f"{THREADS} of the threads are team Red's, more than the {RULE} its rule allows"
    )
    if java_script:  # axe runs in the page: it needs JavaScript
        check_accessibility(page, "selection preview needing approval")
    page.get_by_label("Type the number of threads to delete").fill(str(THREADS))
    page.get_by_role("button", name=f"Delete {THREADS} threads").click()
    job = BulkDeleteJob.objects.get()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Bulk delete #{job.pk}")
    expect(page.get_by_text("waits for another owner's approval")).to_be_visible()
    expect(page.locator("#approval-waiting")).to_be_visible()
    expect(
        page.get_by_text("You asked for this deletion, so you cannot approve it.")
    ).to_be_visible()
    expect(page.get_by_role("link", name="Approve")).to_have_count(0)
    if java_script:
        check_accessibility(page, "job awaiting approval, as its requester")
    assert job.state == BulkDeleteJob.State.AWAITING_APPROVAL
    return job


def approve_and_finish(page, job, *, java_script, check_accessibility, start_worker):
    """As owner B: the overview points to the waiting deletion; approve it after the
    confirmation; a worker runs it to the end."""
    page.goto("/overview/")
    expect(page.locator("#approvals-notice")).to_have_text(
        "1 deletion waits for your approval. See what waits for you"
    )
    if java_script:
        check_accessibility(page, "overview with an approval waiting")
    page.get_by_role("link", name="See what waits for you").click()
    awaiting = page.locator("#awaiting")
    expect(awaiting).to_contain_text("asked by alice")
    awaiting.get_by_role("link", name=f"Delete #{job.pk}").click()
    expect(page.locator("#approvals")).to_contain_text("Red")
    expect(page.locator("#approvals")).to_contain_text("bob")
    if java_script:
        check_accessibility(page, "job awaiting approval, as an approver")
    page.get_by_role("link", name="Approve").click()
    if java_script:  # the confirmation opens in a dialog over the job's page
        confirm = page.get_by_role("dialog", name=f"Approve bulk delete #{job.pk}?")
        expect(confirm).to_be_visible()
        check_accessibility(page, "approval confirmation dialog")
    else:
        confirm = page
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Approve bulk delete #{job.pk}?")
    expect(confirm.get_by_text("You approve for Red.")).to_be_visible()
    confirm.get_by_role("button", name="Approve the deletion").click()
    expect(page.get_by_text("Approved: the deletion is queued.")).to_be_visible()
    expect(page.locator("#approvals")).to_contain_text("approved by bob")
    start_worker()
    # With htmx the progress region polls itself; without, the page reloads every 5 seconds.
    expect(page.locator("#progress-title")).to_have_text("Finished", timeout=30_000)
    expect(page.get_by_text(f"{THREADS} of {THREADS} threads done")).to_be_visible()
    if java_script:
        check_accessibility(page, "finished job after approval")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_owner_requests_another_owner_approves_the_job_runs_and_its_receipt_verifies(
    java_script,
    new_page,
    log_in,
    user,
    other_user,
    red_team,
    start_worker,
    check_accessibility,
    settings,
    tmp_path,
):
    requester = log_in(new_page(java_script_enabled=java_script), user)
    job = request_deletion(
        requester, java_script=java_script, check_accessibility=check_accessibility
    )

    approver = log_in(new_page(java_script_enabled=java_script), other_user)
    approve_and_finish(
        approver,
        job,
        java_script=java_script,
        check_accessibility=check_accessibility,
        start_worker=start_worker,
    )
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.FINISHED
    deleted = TrackedThread.objects.filter(state=TrackedThread.State.DELETED)
    assert set(deleted) == set(red_team["threads"])
    # The requester takes away the proof: the receipt, which verifies against the audit log.
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.log")
    requester.goto(f"/jobs/{job.pk}/")
    download_and_verify_receipts(requester, job, lines=THREADS, folder=tmp_path)


@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_another_owner_refuses_with_a_reason_and_nothing_runs(
    java_script, new_page, log_in, user, other_user, red_team
):
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="purge"))
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=THREADS)
    page = log_in(new_page(java_script_enabled=java_script), other_user)
    page.goto(f"/jobs/{job.pk}/")
    page.get_by_role("link", name="Refuse").click()
    scope = page.get_by_role("dialog") if java_script else page
    scope.get_by_label("Why (optional, kept in the audit log)").fill("Not before the audit")
    scope.get_by_role("button", name="Refuse the deletion").click()
    expect(page.get_by_text("Refused: the deletion is cancelled and will not run.")).to_be_visible()
    expect(page.locator("#approvals")).to_contain_text("“Not before the audit”")
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.CANCELLED
    assert not TrackedThread.objects.filter(state=TrackedThread.State.DELETED).exists()


def test_the_approval_pages_are_accessible_in_dark_mode(
    new_page, log_in, user, other_user, red_team, check_accessibility
):
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="purge"))
    job = jobs.start_selection_job(user=user, selection=selection, typed_count=THREADS)
    page = log_in(new_page(color_scheme="dark"), other_user)
    for path, name in (
        (f"/teams/{red_team['team'].pk}/", "team page with the approval rule"),
        (f"/jobs/{job.pk}/", "job awaiting approval"),
        (f"/jobs/{job.pk}/approve/", "approval confirmation page"),
        (f"/jobs/{job.pk}/refuse/", "refusal page"),
        ("/jobs/", "jobs page with approvals waiting"),
        ("/overview/", "overview with an approval waiting"),
    ):
        page.goto(path)
        check_accessibility(page, name)


@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_an_owner_sets_the_rule_on_the_team_page(
    java_script, new_page, log_in, user, make_team, check_accessibility
):
    team = make_team("Green", {user: Membership.Role.OWNER})
    page = log_in(new_page(java_script_enabled=java_script), user)
    page.goto(f"/teams/{team.pk}/")
    rule = page.locator("#approval-rule")
    rule.get_by_label("Deletions of more than N threads need a second owner").check()
    rule.get_by_label("N, the number of threads").fill("0")
    rule.get_by_role("button", name="Save the rule for large deletions").click()
    expect(page.get_by_text("Type a number of threads of at least 1.")).to_be_visible()
    if java_script:
        check_accessibility(page, "team page with the approval rule's error")
    rule.get_by_label("N, the number of threads").fill("100")
    rule.get_by_role("button", name="Save the rule for large deletions").click()
    expect(
        page.get_by_text("Deletions of more than 100 of Green's threads now need a second owner.")
    ).to_be_visible()
    team.refresh_from_db()
    assert team.approval_threshold == 100
