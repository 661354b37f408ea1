"""Deletion receipts (issue 18, item 2): a finished job's receipt, CSV and JSON, lists every
thread with its outcome and audit event, ends with a covering signed checkpoint, and
`verify_audit --receipt` proves it against the chain and the checkpoint log; any edit,
removal, addition or other checkpoint fails it, naming the first problem."""

import csv
import io
import json
from datetime import UTC
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_helpers import ApiClient, make_token
from tests.threads_helpers import body, url
from threads_app import audit, receipts
from threads_app.audit import Checkpoint
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, Membership
from threads_app.services import receipts as receipt_service

Action = AuditEvent.Action
Item = BulkDeleteItem.Outcome
FORMATS = ("csv", "json")


@pytest.fixture
def inline(immediate_tasks):
    """The job runs as its task is queued, inside the request."""


@pytest.fixture
def checkpoint_log(settings, tmp_path):
    path = tmp_path / "checkpoints.log"
    settings.AUDIT_CHECKPOINT_FILE = str(path)
    return path


@pytest.fixture
def finished_job(
    user_client,
    api_key,
    make_thread,
    emulator,
    inline,
    checkpoint_log,
    django_capture_on_commit_callbacks,
):
    """A finished job of five threads: one refused, one already gone, one failed, two
    deleted."""
    threads = [make_thread(api_key, label=f"Receipt {n}") for n in range(5)]
    refused, gone, failing, *_ = threads
    emulator.add_fault(method="DELETE", path=f"/v1/threads/{refused.thread_id}", kind="not_deleted")
    emulator.add_fault(
        method="DELETE", path=f"/v1/threads/{failing.thread_id}", status=500, times=10
    )
    emulator.remove_thread(gone.thread_id)
    with django_capture_on_commit_callbacks(execute=True):
        user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FINISHED
    return job


def download(client, job, format):
    response = client.get(url(f"job_receipt_{format}", job.pk))
    assert response.status_code == 200, response
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def save(tmp_path, text, format):
    path = tmp_path / f"receipt.{format}"
    path.write_text(text, encoding="utf-8", newline="")
    return path


def verify(path, *extra):
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", "--receipt", str(path), *extra, stdout=out, stderr=err)
    except SystemExit as exit:
        return exit.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


def parsed(text, format):
    return receipts.read_receipt(io.StringIO(text, newline=""))


# --- a receipt that verifies ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_a_finished_jobs_receipt_lists_every_thread_and_verifies(
    user_client, user, finished_job, format, tmp_path, checkpoint_log
):
    text = download(user_client, finished_job, format)
    receipt = parsed(text, format)

    items = {item.thread_id: item for item in finished_job.items.all()}
    assert receipt.job == finished_job.pk
    assert [line.line for line in receipt.lines] == [1, 2, 3, 4, 5]
    assert {line.thread_id: line.outcome for line in receipt.lines} == {
        thread_id: item.outcome for thread_id, item in items.items()
    }
    assert sorted(line.outcome for line in receipt.lines) == sorted(
        [Item.REFUSED, Item.ALREADY_GONE, Item.FAILED, Item.DELETED, Item.DELETED]
    )
    for line in receipt.lines:
        event = AuditEvent.objects.get(sequence=line.event_sequence)
        assert (line.event_hash, line.http_status, line.request_id) == (
            event.hash,
            event.http_status,
            event.request_id,
        )
        assert event.details["intent"] == line.intent_sequence
        assert items[line.thread_id].outcome_sequence == event.sequence
        assert line.at == event.created_at.astimezone(UTC).isoformat()
        assert line.request_id  # every answer of the emulator has one
    statuses = {line.outcome: line.http_status for line in receipt.lines}
    assert statuses[Item.ALREADY_GONE] == 404 and statuses[Item.FAILED] == 500
    # Ends with a signed checkpoint that covers its last event, and that is in the log.
    last = max(line.event_sequence for line in receipt.lines)
    assert receipt.checkpoint.signed and receipt.checkpoint.sequence >= last
    assert receipt.checkpoint.to_json() in checkpoint_log.read_text().splitlines()

    code, output = verify(save(tmp_path, text, format))
    assert code == 0, output
    assert f"OK: receipt of job {finished_job.pk}: 5 lines, 5 with their outcome events" in output
    # The download is audited, naming the job and the format.
    [downloaded] = AuditEvent.objects.filter(action=Action.RECEIPT_DOWNLOADED)
    assert downloaded.actor_username == user.username
    assert downloaded.details == {"job": finished_job.pk, "format": format}
    assert audit.verify_chain().ok


@pytest.mark.django_db
def test_the_csv_and_json_say_the_same(user_client, finished_job, tmp_path):
    csv_receipt = parsed(download(user_client, finished_job, "csv"), "csv")
    json_receipt = parsed(download(user_client, finished_job, "json"), "json")
    assert csv_receipt.lines == json_receipt.lines
    # A covering checkpoint written for the first download serves the second.
    assert csv_receipt.checkpoint == json_receipt.checkpoint


@pytest.mark.django_db
def test_a_covering_checkpoint_is_reused_and_a_new_one_written_only_when_none_covers(
    user_client, finished_job, checkpoint_log
):
    assert not checkpoint_log.exists()
    first = parsed(download(user_client, finished_job, "json"), "json").checkpoint
    assert checkpoint_log.read_text().splitlines() == [first.to_json()]
    second = parsed(download(user_client, finished_job, "json"), "json").checkpoint
    assert second == first and len(checkpoint_log.read_text().splitlines()) == 1
    # A log written by someone else, with a line that is no checkpoint, is read past.
    with checkpoint_log.open("a") as log:
        log.write("not a checkpoint\n")
    assert parsed(download(user_client, finished_job, "csv"), "csv").checkpoint == first


@pytest.mark.django_db
def test_items_without_an_outcome_event_say_what_is_known(user, checkpoint_log, tmp_path):
    """A cancelled job's threads never reached: no status, no request id, no event."""
    job = BulkDeleteJob.objects.create(created_by=user, state=BulkDeleteJob.State.CANCELLED)
    BulkDeleteItem.objects.create(job=job, thread_id="thread_never_reached")
    BulkDeleteItem.objects.create(
        job=job, thread_id="thread_was_gone", outcome=Item.ALREADY_GONE, message="Gone before."
    )
    audit.record(action=Action.THREAD_CREATED, outcome=AuditEvent.Outcome.SUCCESS)
    issued = receipt_service.issue_receipt(user=user, job=job, format="json")
    text = "".join(issued.chunks())
    never, was_gone = parsed(text, "json").lines
    assert (never.outcome, never.http_status, never.request_id, never.event_sequence) == (
        Item.PENDING,
        None,
        "",
        None,
    )
    assert never.note == "Not reached: nothing was sent for this thread." and never.at == ""
    assert was_gone.note == "Gone before. No outcome event is recorded for it."
    code, output = verify(save(tmp_path, text, "json"))
    assert code == 0 and "2 lines, 0 with their outcome events" in output


# --- tampered receipts fail, naming the first problem ---------------------------------------


def rewrite(text, format, change):
    """The receipt with `change(lines, tail)` applied: `lines` as dicts of its values (CSV:
    text), `tail` holding its `checkpoint` (JSON text) and `signature`."""
    if format == "json":
        data = json.loads(text)
        tail = {"checkpoint": json.dumps(data["checkpoint"]), "signature": data["signature"]}
        change(data["lines"], tail)
        data["checkpoint"], data["signature"] = json.loads(tail["checkpoint"]), tail["signature"]
        return json.dumps(data)
    header, *rows, checkpoint_row, signature_row = list(csv.reader(io.StringIO(text)))
    lines = [dict(zip(header, row, strict=True)) for row in rows]
    note = header.index("note")
    tail = {"checkpoint": checkpoint_row[note], "signature": signature_row[note]}
    change(lines, tail)
    checkpoint_row[note], signature_row[note] = tail["checkpoint"], tail["signature"]
    out = io.StringIO()
    csv.writer(out).writerows(
        [
            header,
            *([str(line[name]) for name in header] for line in lines),
            checkpoint_row,
            signature_row,
        ]
    )
    return out.getvalue()


def edit_outcome(lines, tail):
    failed = next(line for line in lines if line["outcome"] == Item.FAILED)
    failed["outcome"] = Item.DELETED


def remove_and_renumber(lines, tail):
    del lines[0]
    for number, line in enumerate(lines, 1):
        line["line"] = number


def remove_last(lines, tail):
    del lines[-1]  # the numbers of the others still follow on: only the log can tell


def add_a_copy(lines, tail):
    lines.append({**lines[0], "line": len(lines) + 1})


def edit_hash(lines, tail):
    lines[1]["event_hash"] = "0" * 64


def earlier_checkpoint(lines, tail):
    """Another genuine checkpoint from the log, one that does not cover the lines."""
    event = AuditEvent.objects.order_by("sequence").first()
    checkpoint = Checkpoint.sign(event.sequence, event.hash)
    audit.write_checkpoint(checkpoint)
    tail["checkpoint"] = checkpoint.to_json()


def later_checkpoint(lines, tail):
    """A genuine checkpoint that covers the lines, but not the one the receipt was issued
    with: only the receipt's signature tells."""
    tail["checkpoint"] = audit.checkpoint_head().to_json()


def forged_checkpoint(lines, tail):
    data = json.loads(tail["checkpoint"])
    data["sequence"] += 1
    tail["checkpoint"] = json.dumps(data)


def unlogged_checkpoint(lines, tail):
    event = AuditEvent.objects.order_by("-sequence").first()
    tail["checkpoint"] = Checkpoint.sign(event.sequence, event.hash).to_json()


def edit_request_id(lines, tail):
    lines[2]["request_id"] = "req_someone_elses"


def edit_note(lines, tail):
    lines[0]["note"] = "Deleted, honestly."


TAMPERING = {
    edit_outcome: "records the outcome failed, not deleted",
    remove_and_renumber: "the receipt leaves it out (a line was removed)",
    remove_last: "the receipt leaves it out (a line was removed)",
    add_a_copy: "(a line was added)",
    edit_hash: "has another hash in the audit log",
    earlier_checkpoint: "is after the receipt's checkpoint",
    later_checkpoint: "the receipt's signature does not match",
    forged_checkpoint: "the receipt's checkpoint has a wrong signature",
    unlogged_checkpoint: "is not in the checkpoint log",
    edit_request_id: "records another status, request id or time",
    edit_note: "the receipt's signature does not match",
}


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("change", TAMPERING, ids=lambda change: change.__name__)
def test_a_tampered_receipt_fails_with_its_first_problem(
    user_client, finished_job, format, change, tmp_path
):
    text = download(user_client, finished_job, format)
    assert verify(save(tmp_path, text, format))[0] == 0

    code, output = verify(save(tmp_path, rewrite(text, format, change), format))

    assert code == 1
    assert output.startswith("BROKEN") and TAMPERING[change] in output, output


@pytest.mark.django_db
def test_verify_receipt_needs_a_checkpoint_log_and_a_receipt(
    user_client, finished_job, tmp_path, settings
):
    path = save(tmp_path, download(user_client, finished_job, "csv"), "csv")
    settings.AUDIT_CHECKPOINT_FILE = ""
    with pytest.raises(CommandError, match="pass --checkpoints FILE"):
        verify(path)
    log = tmp_path / "elsewhere.log"
    log.write_text((tmp_path / "checkpoints.log").read_text())
    assert verify(path, "--checkpoints", str(log))[0] == 0
    not_a_receipt = save(tmp_path, "thread,outcome\nthread_x,deleted\n", "csv")
    code, output = verify(not_a_receipt, "--checkpoints", str(log))
    assert code == 1 and "is not a receipt: its first row is not the receipt's columns" in output
    with pytest.raises(CommandError, match="Cannot read the receipt"):
        verify(tmp_path / "missing.json", "--checkpoints", str(log))


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.text(max_size=200).map(lambda rest: "{" + rest),
        st.lists(st.text(max_size=20), max_size=12).map(
            lambda cells: ",".join(receipts.FIELDS) + "\n" + ",".join(cells) + "\n"
        ),
    )
)
def test_reading_any_text_gives_a_receipt_or_a_clear_error(text):
    try:
        receipts.read_receipt(io.StringIO(text, newline=""))
    except receipts.ReceiptError as error:
        assert str(error)


# --- who may download it, and when ---------------------------------------------------------


@pytest.mark.django_db
def test_only_whoever_sees_the_job_downloads_its_receipt(
    finished_job, make_user, make_team, client, admin_client
):
    owner, viewer, outsider = make_user("owner-r"), make_user("viewer-r"), make_user("outside-r")
    team = make_team(members={owner: Membership.Role.OWNER, viewer: Membership.Role.VIEWER})
    for name in ("job_receipt_csv", "job_receipt_json"):
        for someone in (outsider, viewer, owner):
            client.force_login(someone)
            assert client.get(url(name, finished_job.pk)).status_code == 404
        assert admin_client.get(url(name, finished_job.pk)).status_code == 200
    BulkDeleteJob.objects.filter(pk=finished_job.pk).update(team=team)
    client.force_login(owner)
    assert client.get(url("job_receipt_csv", finished_job.pk)).status_code == 200
    client.force_login(viewer)  # a team's viewers do not see its jobs
    assert client.get(url("job_receipt_csv", finished_job.pk)).status_code == 404
    downloads = AuditEvent.objects.filter(action=Action.RECEIPT_DOWNLOADED)
    assert sorted(downloads.values_list("actor_username", flat=True)) == sorted(
        ["admin", "admin", owner.username]
    )


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["running", "queued", "paused", "failed"])
def test_a_job_that_has_not_finished_has_no_receipt_yet(user_client, user, state):
    job = BulkDeleteJob.objects.create(created_by=user, state=state)
    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "job_receipt" not in page and "receipt.csv" not in page
    response = user_client.get(url("job_receipt_csv", job.pk), follow=True)
    assert response.redirect_chain == [(url("bulk_delete_job", job.pk), 302)]
    assert f"Job #{job.pk} has not finished: its receipt is ready once it has" in body(response)
    assert not AuditEvent.objects.filter(action=Action.RECEIPT_DOWNLOADED).exists()


@pytest.mark.django_db
def test_a_cancelled_job_still_resolving_has_no_receipt_yet(user_client, user):
    job = BulkDeleteJob.objects.create(created_by=user, state="cancelled", task_id="running")
    assert not job.receipt_ready
    assert user_client.get(url("job_receipt_json", job.pk)).status_code == 302
    BulkDeleteJob.objects.filter(pk=job.pk).update(task_id="")
    assert user_client.get(url("job_receipt_json", job.pk)).status_code == 200


@pytest.mark.django_db
def test_the_job_page_links_its_receipt_once_finished(user_client, finished_job):
    page = body(user_client.get(url("bulk_delete_job", finished_job.pk)))
    assert f'href="{url("job_receipt_csv", finished_job.pk)}" download>CSV</a>' in page
    assert f'href="{url("job_receipt_json", finished_job.pk)}" download>JSON</a>' in page


@pytest.mark.django_db
def test_an_unwritable_checkpoint_log_refuses_the_receipt_and_says_why(
    user_client, finished_job, settings, tmp_path
):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path)  # a directory: no line can be appended
    response = user_client.get(url("job_receipt_json", finished_job.pk), follow=True)
    assert "The audit checkpoint that the receipt ends with could not be written" in body(response)
    assert not AuditEvent.objects.filter(action=Action.RECEIPT_DOWNLOADED).exists()


@pytest.mark.django_db
def test_a_large_receipt_streams_with_a_few_queries_a_thousand_lines(
    user, checkpoint_log, django_assert_max_num_queries
):
    job = BulkDeleteJob.objects.create(created_by=user, state=BulkDeleteJob.State.FINISHED)
    BulkDeleteItem.objects.bulk_create(
        BulkDeleteItem(job=job, thread_id=f"thread_{n}") for n in range(2500)
    )
    issued = receipt_service.issue_receipt(user=user, job=job, format="csv")
    chunks = issued.chunks()
    with django_assert_max_num_queries(2):
        first = [next(chunks) for _ in range(1001)]  # the columns, then 1,000 lines
    assert first[0].startswith("job,line,thread_id")
    with django_assert_max_num_queries(4):
        rest = list(chunks)
    assert len(first) + len(rest) == 1 + 2500 + 2


# --- the API --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_gives_the_receipt_in_json_or_csv(user, finished_job, tmp_path):
    api = ApiClient(make_token(user, scopes=["audit:read"]))
    response = api.get(f"jobs/{finished_job.pk}/receipt")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/json")
    text = b"".join(response.streaming_content).decode()
    assert verify(save(tmp_path, text, "json"))[0] == 0
    response = api.get(f"jobs/{finished_job.pk}/receipt", {"format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert verify(save(tmp_path, b"".join(response.streaming_content).decode(), "csv"))[0] == 0
    assert AuditEvent.objects.filter(action=Action.RECEIPT_DOWNLOADED).count() == 2
    assert api.get(f"jobs/{finished_job.pk}/receipt", {"format": "xml"}).status_code == 422


@pytest.mark.django_db
def test_the_api_refuses_a_receipt_before_the_job_finishes(user):
    job = BulkDeleteJob.objects.create(created_by=user, state="running")
    api = ApiClient(make_token(user, scopes=["audit:read"]))
    response = api.get(f"jobs/{job.pk}/receipt")
    assert response.status_code == 409
    assert response.json()["type"].endswith("receipt_not_ready")
    threads_only = ApiClient(make_token(user, scopes=["threads:read"]))
    assert threads_only.get(f"jobs/{job.pk}/receipt").status_code == 403
