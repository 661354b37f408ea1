"""From a saved view to "Select all" to the preview, the typed count and the finished job (a
deletion, or an export and its download), in the browser (with htmx and without JavaScript),
run by a real worker; accessible in light and dark mode."""

import gzip
import json

import pytest
from playwright.sync_api import expect

from threads_app.models import BulkDeleteJob, SavedView, TrackedThread


@pytest.fixture
def campaign(api_key, make_thread):
    threads = [make_thread(api_key, label=f"Spring campaign {n}") for n in range(7)]
    make_thread(api_key, label="Keep this one")
    return threads


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_saved_view_select_all_preview_typed_count_finished_job(
    java_script, new_page, log_in, user, campaign, start_worker, check_accessibility
):
    page = log_in(new_page(java_script_enabled=java_script), user)
    page.goto("/?q=spring")
    if not java_script:  # the saved views have a page of their own; with htmx, a region
        page.get_by_role("link", name="Saved views").click()
    page.get_by_text("Save this view").click()
    page.get_by_label("Name").fill("Spring campaign")
    page.get_by_role("button", name="Save the current search, filters and sort").click()
    expect(page.get_by_text("View “Spring campaign” saved.")).to_be_visible()
    view = SavedView.objects.get()
    assert view.filters == {"q": "spring"}

    page.goto("/")
    if not java_script:
        page.get_by_role("link", name="Saved views").click()
    page.get_by_role("link", name="Spring campaign", exact=True).click()
    expect(page.get_by_role("row")).to_have_count(8)  # the header and the 7 threads
    if java_script:  # axe runs in the page: it needs JavaScript
        check_accessibility(page, "thread list with saved views")
    page.get_by_role("button", name="Select all 7 matching “Spring campaign”…").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Delete 7 threads?")
    expect(page.locator("#selection-filter")).to_contain_text("the view “Spring campaign”")
    if java_script:
        check_accessibility(page, "selection preview")
    page.get_by_label("Type the number of threads to delete").fill("6")
    page.get_by_role("button", name="Delete 7 threads").click()
    expect(page.get_by_text("Type the number of threads, 7, to confirm.")).to_be_visible()
    assert not BulkDeleteJob.objects.exists()

    page.get_by_label("Type the number of threads to delete").fill("7")
    page.get_by_role("button", name="Delete 7 threads").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Bulk delete #{BulkDeleteJob.objects.get().pk}"
    )
    start_worker()
    # With htmx the progress region polls itself; without, the page reloads every 5 seconds.
    expect(page.locator("#progress-title")).to_have_text("Finished", timeout=30_000)
    expect(page.get_by_text("7 of 7 threads done")).to_be_visible()
    if java_script:
        check_accessibility(page, "finished job")
    deleted = TrackedThread.objects.filter(state=TrackedThread.State.DELETED)
    assert set(deleted) == set(campaign)

    page.get_by_role("link", name="Jobs", exact=True).click()
    expect(
        page.get_by_role("link", name=f"Delete #{BulkDeleteJob.objects.get().pk}")
    ).to_be_visible()
    expect(page.get_by_role("cell", name="View “Spring campaign”")).to_be_visible()


def test_the_jobs_page_and_the_preview_are_accessible_in_dark_mode(
    new_page, log_in, user, campaign, check_accessibility
):
    from threads_app.selectors import ThreadFilters
    from threads_app.services import jobs

    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="spring"))
    jobs.start_selection_job(user=user, selection=selection, typed_count=7)
    page = log_in(new_page(color_scheme="dark"), user)
    for path, name in (
        (f"/selections/{selection.pk}/", "selection preview"),
        ("/jobs/", "jobs page"),
        ("/overview/", "overview with jobs"),
    ):
        page.goto(path)
        if path == "/overview/":
            expect(page.locator("#jobs-card")).to_be_visible()  # loaded by htmx
        check_accessibility(page, name)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_export_a_selection_then_download_the_file(
    java_script, new_page, log_in, user, campaign, start_worker, check_accessibility
):
    page = log_in(new_page(java_script_enabled=java_script), user)
    page.goto("/?q=spring")
    page.get_by_role("button", name="Select all 7 matching").click()
    page.get_by_label("Type the number of threads to export").fill("8")
    page.get_by_role("button", name="Export 7 threads").click()
    expect(page.get_by_text("Type the number of threads, 7, to confirm.")).to_be_visible()
    assert not BulkDeleteJob.objects.exists()

    page.get_by_label("Type the number of threads to export").fill("7")
    page.get_by_role("button", name="Export 7 threads").click()
    job = BulkDeleteJob.objects.get()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Export #{job.pk}")
    start_worker()
    expect(page.locator("#progress-title")).to_have_text("Finished", timeout=30_000)
    expect(page.get_by_text("7 of 7 threads done")).to_be_visible()
    if java_script:
        check_accessibility(page, "finished export")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the export").click()
    assert download.value.suggested_filename.startswith(f"threads-export-{job.pk}-")
    with gzip.open(download.value.path()) as file:
        labels = [json.loads(line)["tracked"]["label"] for line in file]
    assert labels == [f"Spring campaign {n}" for n in range(7)]
    assert TrackedThread.objects.filter(state=TrackedThread.State.ACTIVE).count() == 8


def test_a_finished_export_is_accessible_in_dark_mode(
    new_page, log_in, user, campaign, check_accessibility, immediate_tasks
):
    from threads_app.selectors import ThreadFilters
    from threads_app.services import jobs

    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="spring"))
    job = jobs.start_selection_job(user=user, selection=selection, action="export", typed_count=7)
    page = log_in(new_page(color_scheme="dark"), user)
    page.goto(f"/jobs/{job.pk}/")
    expect(page.get_by_role("link", name="Download the export")).to_be_visible()
    check_accessibility(page, "finished export")
