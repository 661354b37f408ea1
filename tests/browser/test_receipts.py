"""A finished job's page offers its receipt: downloaded as CSV and JSON in the browser (with
JavaScript and without), each verifying with `manage.py verify_audit --receipt`; the page
is accessible in light and dark mode."""

from io import StringIO

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from threads_app.models import AuditEvent, BulkDeleteJob
from threads_app.services import bulk


@pytest.fixture
def finished_job(user, api_key, make_thread, emulator, immediate_tasks, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.log")
    threads = [make_thread(api_key, label=f"Receipt {n}") for n in range(4)]
    emulator.remove_thread(threads[0].thread_id)  # already gone
    job = bulk.start_bulk_delete(actor=user, thread_ids=[t.pk for t in threads])
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.FINISHED
    return job


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("java_script", "color_scheme"),
    [(True, "light"), (True, "dark"), (False, "light")],
    ids=["htmx-light", "htmx-dark", "no-js"],
)
def test_download_a_finished_jobs_receipt_and_verify_it(
    java_script, color_scheme, new_page, log_in, user, finished_job, check_accessibility, tmp_path
):
    page = log_in(new_page(java_script_enabled=java_script, color_scheme=color_scheme), user)
    page.goto(f"/jobs/{finished_job.pk}/")
    expect(page.locator("#progress-title")).to_have_text("Finished")
    receipt = page.locator("#job-receipt")
    expect(receipt).to_contain_text("manage.py verify_audit --receipt FILE")
    if java_script:
        check_accessibility(page, f"finished job with its receipt ({color_scheme})")
    download_and_verify_receipts(page, finished_job, lines=4, folder=tmp_path)


def download_and_verify_receipts(page, job, *, lines, folder):
    """On the job's page: download its receipt as CSV and as JSON into `folder`; each verifies
    with `manage.py verify_audit --receipt`, and both downloads are audited."""
    receipt = page.locator("#job-receipt")
    for name in ("CSV", "JSON"):
        with page.expect_download() as download:
            receipt.get_by_role("link", name=name, exact=True).click()
        assert download.value.suggested_filename == f"job-{job.pk}-receipt.{name.lower()}"
        path = folder / download.value.suggested_filename
        download.value.save_as(path)
        out = StringIO()
        call_command("verify_audit", "--receipt", str(path), stdout=out)
        assert f"OK: receipt of job {job.pk}: {lines} lines, {lines} with their" in out.getvalue()
    downloads = AuditEvent.objects.filter(action=AuditEvent.Action.RECEIPT_DOWNLOADED)
    assert sorted(downloads.values_list("details__format", flat=True)) == ["csv", "json"]
