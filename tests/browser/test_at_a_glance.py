"""In the browser: what a new team admin meets (issue 22), point by point: the first run,
the list, a thread's page, the audit's pairs, the API failing, a phone's width, one pattern
for each thing, and numbers that agree."""

import re

from playwright.sync_api import expect

from tests.conftest import TEST_KEY
from threads_app.models import Membership, Team

# --- 1. First run ----------------------------------------------------------------------------


def test_first_run_leads_from_a_key_to_a_thread_to_a_team(new_page, log_in, user):
    page = new_page()
    page.goto("/accounts/login/")
    expect(page.locator(".lead")).to_contain_text("Threads API keys, threads and deletion audit")

    log_in(page, user)
    page.goto("/overview/")
    checklist = page.get_by_role("region", name="Get started")
    expect(checklist).to_contain_text("0 of 3 steps done")
    # One primary action, and no "New thread" that could only fail without a key.
    expect(page.locator("main .button.primary")).to_have_text(["Add an API key"])
    expect(page.get_by_role("link", name="New thread")).to_have_count(0)
    page.goto("/")
    expect(page.get_by_role("link", name="New thread")).to_have_count(0)
    page.goto("/threads/new/")
    expect(page.get_by_label("Key", exact=True)).to_have_count(0)  # no form to send in vain
    page.get_by_role("link", name="Add an API key").click()

    page.get_by_label("Label").fill("Production")
    page.get_by_label("Secret").fill(TEST_KEY)
    page.get_by_role("button", name="Add key").click()
    expect(page).to_have_url(re.compile(r"/keys/$"))

    page.goto("/overview/")
    expect(checklist).to_contain_text("1 of 3 steps done")
    expect(page.locator("main .button.primary")).to_have_text(["New thread"])
    checklist.get_by_role("link", name="New thread").click()
    key = page.get_by_label("Key", exact=True)
    expect(key.locator("option")).to_have_text([re.compile("Production")])  # no "---------"
    expect(key).to_have_value(str(user.api_keys.get().pk))
    page.get_by_label("Label").fill("First steps")
    page.get_by_role("button", name="Create thread").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("First steps")

    page.goto("/overview/")
    expect(checklist).to_contain_text("2 of 3 steps done")
    expect(checklist.get_by_role("link", name="Go to teams")).to_be_visible()
    team = Team.objects.create(name="Blue")
    Membership.objects.create(team=team, user=user, role=Membership.Role.OWNER)
    Membership.objects.create(
        team=team,
        user=type(user).objects.create_user("bea", password="x" * 12),
        role=Membership.Role.MEMBER,
    )
    page.reload()
    expect(page.get_by_role("region", name="Get started")).to_have_count(0)
    expect(page.get_by_role("link", name="New thread")).to_be_visible()


# --- 2. The thread list ----------------------------------------------------------------------

ONE_LINE = """elements => elements.map(element => Math.round(
    element.getBoundingClientRect().height / parseFloat(getComputedStyle(element).lineHeight)
))"""


def test_the_list_counts_links_bare_ids_and_shows_why_a_row_matched(
    user_page, api_key, make_thread
):
    page = user_page
    for n in range(3):
        make_thread(api_key, label=f"Order {n}", metadata={"customer": f"acme-{n}", "n": str(n)})
    bare = make_thread(api_key, metadata={"region": "west", "customer": "acme-3"})
    page.goto("/")
    expect(page.locator("#list-count")).to_have_text("4 threads")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_count(4)
    heights = rows.evaluate_all(
        "rows => rows.map(row => row.getBoundingClientRect().height"
        " / parseFloat(getComputedStyle(row).lineHeight))"
    )
    assert max(heights) < 2  # compact rows: one line of text each
    ids = page.locator("#rows code.id")
    assert set(ids.evaluate_all(ONE_LINE)) == {1}  # ids never wrap

    page.get_by_label("Search").fill("acme-3")
    expect(page.locator("#list-count")).to_have_text("1 thread match “acme-3”")
    row = rows.first
    expect(row.locator("mark")).to_have_text("acme-3")  # the pair that matched, not "region"
    expect(row.get_by_role("cell").nth(3)).to_contain_text("customer")
    row.get_by_role("link", name=bare.thread_id).click()  # no label: the id is the link
    expect(page).to_have_url(re.compile(rf"/threads/{bare.pk}/$"))

    page.goto("/?q=acme&state=gone")
    page.get_by_role("search").get_by_role("link", name="Clear").click()
    expect(page.get_by_label("Search")).to_have_value("")
    expect(rows).to_have_count(4)


def test_a_label_is_set_on_import_and_in_edit(user_page, api_key, emulator):
    page = user_page
    seeded = emulator.seed_thread(TEST_KEY, metadata={"customer": "c-9"})
    page.goto("/threads/import/")
    page.get_by_label("Thread ids").fill(seeded["id"])
    page.get_by_label("Label").fill("Imported chat")
    page.get_by_role("button", name="Check and track").click()
    page.get_by_role("link", name=re.compile("^Open")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Imported chat")

    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Label")).to_have_value("Imported chat")
    page.get_by_label("Label").fill("Renamed chat")
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed chat")


# --- 3. A thread's page ----------------------------------------------------------------------


def test_a_thread_reads_as_a_conversation_with_its_facts_beside(user_page, api_key, make_thread):
    thread = make_thread(
        api_key,
        label="Refund question",
        messages=[
            {"role": "user", "content": "Hello, a refund please."},
            {"role": "assistant", "content": "Of course. Why?"},
            {"role": "user", "content": "It arrived broken."},
        ],
    )
    page = user_page
    page.goto(f"/threads/{thread.pk}/")

    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs.get_by_role("listitem")).to_have_text(["Threads", "Refund question"])
    messages = page.get_by_role("region", name=re.compile("^Messages"))
    expect(messages.locator(".message-text")).to_have_text(
        ["Hello, a refund please.", "Of course. Why?", "It arrived broken."]  # oldest first
    )
    user, assistant = messages.locator("li.role-user").first, messages.locator("li.role-assistant")
    assert user.evaluate("e => getComputedStyle(e).backgroundColor") != assistant.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    side = page.get_by_role("complementary", name="About this thread")
    expect(side.get_by_role("region", name="Tracked record")).to_be_visible()
    expect(side.get_by_role("region", name="Live thread")).to_be_visible()
    conversation_box, side_box = messages.bounding_box(), side.bounding_box()
    assert side_box["x"] > conversation_box["x"] + conversation_box["width"] - 1  # beside it
    danger = side.get_by_role("region", name="Danger zone")
    expect(danger.get_by_role("link")).to_have_text(["Untrack", "Delete"])
    head_actions = page.locator(".page-head").get_by_role("link")
    expect(head_actions).to_have_text(["Edit"])  # nothing destructive next to Edit

    crumbs.get_by_role("link", name="Threads").click()
    expect(page).to_have_url(re.compile(r"/$"))


# --- 4. The audit's deletion pairs -----------------------------------------------------------


def test_a_deletion_is_one_expandable_audit_row_with_absolute_times(
    user_page, user, api_key, make_thread, emulator
):
    from threads_app.models import AuditEvent
    from threads_app.services import deletions

    thread = make_thread(api_key, label="Vanished")
    emulator.remove_thread(thread.thread_id)
    deletions.delete_thread(thread, actor=user)
    intent, outcome = AuditEvent.objects.filter(
        thread_id=thread.thread_id, action__startswith="thread.delete"
    ).order_by("sequence")
    page = user_page
    page.goto("/audit/")

    row = page.locator(f"#event-{intent.sequence}")
    expect(page.locator(f"#event-{outcome.sequence}")).to_have_count(0)
    expect(row.get_by_role("cell").first).to_have_text(f"{intent.sequence} → {outcome.sequence}")
    summary = row.locator("summary")
    when = r"\d\d:\d\d:\d\d"
    expect(summary).to_contain_text(re.compile(rf"Deletion requested {when} by alice"))
    expect(summary).to_contain_text(re.compile(rf"→ Already gone \(404\) {when}"))
    time = row.locator("time").first
    expect(time).to_have_text(re.compile(r" UTC$"))  # not "4 seconds ago"
    expect(time).to_have_attribute("title", re.compile(r"(now|ago)$"))  # relative on hover
    facts = row.locator(".event-details")
    expect(facts).to_be_hidden()
    summary.click()
    expect(facts).to_contain_text(outcome.request_id)
    expect(facts).to_contain_text("thread.deleted")  # the machine name beside the words


# --- 5. When the API fails -------------------------------------------------------------------


def test_a_persistent_503_is_said_once_with_a_retry_and_the_last_known_record(
    user_page, api_key, make_thread, emulator, monkeypatch, check_accessibility
):
    from urllib3.util.retry import Retry

    monkeypatch.setattr(Retry, "sleep", lambda self, response=None: None)  # no back-off wait
    thread = make_thread(api_key, label="Busy day", metadata={"customer": "c-7"})
    emulator.add_fault(
        method="GET", path=f"/v1/threads/{thread.thread_id}*", status=503, times=None
    )
    page = user_page
    page.goto(f"/threads/{thread.pk}/")

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Threads API unavailable (503), retried 3 times.")
    expect(alert).not_to_contain_text("((")
    side = page.get_by_role("complementary", name="About this thread")
    expect(side.get_by_role("region", name="Last known thread")).to_contain_text("c-7")
    expect(side.locator(".badge.unknown").first).to_be_visible()
    expect(side.get_by_text("active", exact=True)).to_have_count(0)  # no green "active"
    messages = page.get_by_role("region", name="Messages")
    expect(messages).to_contain_text("Not shown. Threads API unavailable (503)")
    expect(page.get_by_role("button", name="Edit")).to_be_disabled()
    delete = side.get_by_role("button", name="Delete")
    expect(delete).to_be_disabled()
    expect(delete).to_have_accessible_description(re.compile("need the Threads API"))
    expect(side.get_by_role("button", name="Download transcript (JSON)")).to_be_disabled()
    check_accessibility(page, "thread, API unavailable")
    page.emulate_media(color_scheme="dark")
    check_accessibility(page, "thread, API unavailable")

    emulator.clear_faults()
    alert.get_by_role("link", name="Try again").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_be_visible()
    expect(side.get_by_role("region", name="Live thread")).to_contain_text("c-7")


def test_a_thread_gone_upstream_offers_only_untrack(user_page, api_key, make_thread, emulator):
    thread = make_thread(api_key)  # no label: the heading is its id, not "Thread"
    emulator.remove_thread(thread.thread_id)
    page = user_page
    page.goto(f"/threads/{thread.pk}/")

    expect(page.get_by_role("heading", level=1)).to_have_text(thread.thread_id)
    expect(page.get_by_role("alert")).to_contain_text("no longer has this thread")
    expect(page.get_by_role("button", name="Edit")).to_be_disabled()
    side = page.get_by_role("complementary", name="About this thread")
    expect(side.get_by_role("button", name="Delete")).to_be_disabled()
    expect(side.get_by_role("link", name="Untrack")).to_be_enabled()


# --- 6. Mobile (375 px) ----------------------------------------------------------------------


def _within(page, locator, width=375):
    box = locator.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (box, locator)


def test_a_phone_gets_the_search_cards_dates_and_a_row_menu(
    new_page, log_in, user, api_key, make_thread, make_team, check_accessibility
):
    from threads_app.services import deletions

    team = make_team("Blue", {user: "owner"})
    make_thread(api_key, label="Refund question", metadata={"customer": "c-42"})
    deletions.delete_thread(make_thread(api_key, label="Old chat"), actor=user)
    page = log_in(new_page(width=375), user)
    page.goto(f"/?team={team.pk}&state=all")

    search = page.get_by_label("Search")
    expect(search).to_be_visible()
    expect(page.get_by_label("State", exact=True)).to_be_hidden()  # folded away
    page.get_by_text("Filters (2)").click()
    expect(page.get_by_label("State", exact=True)).to_be_visible()

    page.goto("/")
    row = page.locator("#rows tbody tr").first
    _within(page, row)
    created = row.locator(".created-cell time")
    expect(created).to_be_visible()  # the date, labelled "Created" (CSS, from data-label)
    _within(page, created)
    delete = row.get_by_role("button", name=re.compile("^Delete"))
    expect(delete).to_be_hidden()
    row.locator("summary", has_text="Actions for Refund question").click()
    expect(delete).to_be_visible()
    _within(page, delete)
    assert delete.evaluate("b => b.scrollWidth <= b.clientWidth")  # "Delete", not "Delet"
    check_accessibility(page, "threads list at 375 px")

    page.goto("/overview/")
    deleted = page.get_by_role("row", name=re.compile("alice's key")).locator("td").last
    expect(deleted).to_have_attribute("data-label", "Deleted")
    expect(deleted).to_have_text(re.compile(r"^1 deleted"))
    _within(page, deleted)
    check_accessibility(page, "overview at 375 px")
    page.goto("/audit/")
    thread_cell = page.locator("#rows tbody tr").first.locator(".thread-cell")
    _within(page, thread_cell)
    check_accessibility(page, "audit log at 375 px")


# --- 7. One pattern for each thing -----------------------------------------------------------


def test_one_confirmation_dialog_one_feedback_and_a_role_select_with_undo(
    user_page, user, api_key, make_thread, make_user, make_team, check_accessibility
):
    from threads_app.models import Membership

    page = user_page
    thread = make_thread(api_key, label="Confirm me")
    page.goto(f"/threads/{thread.pk}/")
    delete = page.get_by_role("complementary").get_by_role("link", name="Delete")
    delete.click()
    dialog = page.get_by_role("dialog", name="Delete this thread?")
    expect(dialog.get_by_label("Save a transcript with the audit record")).to_be_focused()
    check_accessibility(page, "confirmation dialog")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    delete.click()
    dialog.get_by_role("button", name="Delete thread").click()
    expect(page).to_have_url(re.compile(r"/$"))
    banner = page.locator("main > .messages-region > .messages .message.success")
    expect(banner).to_have_text("Deleted “Confirm me”.")
    assert banner.evaluate("e => getComputedStyle(e.parentElement).position") == "static"

    # Feedback from an htmx request is the same banner, not a toast over the content.
    team = make_team("Blue", {user: "owner", make_user("dora"): "viewer"})
    page.goto(f"/teams/{team.pk}/")
    expect(page.get_by_role("button", name="Save the role of dora")).to_be_hidden()  # saves itself
    page.get_by_label("Role of dora").select_option("member")
    expect(page.locator("main > .messages-region > .messages .message.success")).to_have_text(
        "dora's role in Blue is now member."
    )
    assert Membership.objects.get(team=team, user__username="dora").role == "member"
    row = page.locator("#members tr", has_text="dora")
    row.get_by_role("button", name=re.compile("^Undo")).click()
    expect(page.get_by_label("Role of dora")).to_have_value("viewer")
    assert Membership.objects.get(team=team, user__username="dora").role == "viewer"


def test_the_confirmation_and_role_pages_work_without_javascript(
    new_page, log_in, user, make_user, make_team
):
    from threads_app.models import Membership

    team = make_team("Blue", {user: "owner", make_user("dora"): "viewer"})
    page = log_in(new_page(java_script_enabled=False), user)
    page.goto(f"/teams/{team.pk}/")
    page.get_by_label("Role of dora").select_option("member")
    page.get_by_role("button", name="Save the role of dora").click()
    expect(page.locator(".messages")).to_contain_text("dora's role in Blue is now member.")
    page.get_by_role("button", name=re.compile("^Undo")).click()
    expect(page.get_by_label("Role of dora")).to_have_value("viewer")
    assert Membership.objects.get(team=team, user__username="dora").role == "viewer"

    page.get_by_role("link", name="Remove dora").click()  # the confirmation page itself
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove dora from Blue?")
    page.get_by_role("button", name="Remove member").click()
    expect(page.locator(".messages")).to_contain_text("dora was removed from Blue.")


# --- 8. Numbers that agree -------------------------------------------------------------------


def test_the_overview_chart_shows_imports_on_labelled_full_width_axes(
    new_page, log_in, user, api_key, make_thread, make_team, make_key, emulator
):
    from threads_app.models import TrackedThread
    from threads_app.services import threads as thread_services

    team = make_team("Blue", {user: "owner"})
    team_key = make_key(team=team, label="Blue key", created_by=user)
    thread_services.create_thread(actor=user, api_key=api_key, label="Made here")
    seeded = [emulator.seed_thread(TEST_KEY)["id"] for _ in range(3)]
    thread_services.import_threads(actor=user, api_key=api_key, thread_ids=seeded)
    for n in range(2):
        make_thread(team_key, label=f"Team {n}")
    TrackedThread.objects.filter(api_key=team_key, label="Team 0").update(state="deleted")
    page = log_in(new_page(), user)
    page.goto("/overview/")

    legend = page.locator(".legend")
    expect(legend).to_contain_text("Created here (1)")
    expect(legend).to_contain_text("Imported (3)")
    chart = page.get_by_role("img", name=re.compile("created, imported and deleted"))
    expect(chart.locator("rect.bar.imported")).to_have_count(1)
    expect(chart.locator("text.axis-title")).to_have_text(["Day (UTC)", "Threads"])
    card = page.get_by_role("region", name=re.compile("^Created, imported and deleted"))
    assert chart.bounding_box()["width"] >= card.bounding_box()["width"] - 60  # full width

    # One count of a key's tracked threads: the keys page and the team page agree.
    page.goto("/keys/")
    keys_count = page.locator(f"#key-{team_key.pk}").get_by_role("cell").nth(4)
    expect(keys_count).to_have_text("1")  # Team 1; Team 0 was deleted
    page.goto(f"/teams/{team.pk}/")
    team_row = page.get_by_role("row", name=re.compile("Blue key"))
    expect(team_row.get_by_role("cell").nth(3)).to_have_text("1")
