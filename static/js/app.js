// Threads Console: the little behaviour the pages need (CSP: no inline script anywhere).
"use strict";

document.documentElement.classList.add("js");  // CSS hides what only a page without scripts needs

// One feedback pattern: what an htmx request's answer says shows where a page's messages do,
// as the same banners at the top of the page (replacing the previous ones, never timed out),
// and is announced through the polite live region #toasts.
function showMessages(items) {
  const main = document.getElementById("main");
  let region = main.querySelector(":scope > .messages-region");
  if (!region) {  // the page had no messages: the same markup as the page's (base.html)
    region = document.createElement("div");
    region.className = "messages-region";
    main.prepend(region);
  }
  let list = region.querySelector(":scope > .messages");
  if (!list) {
    list = document.createElement("ul");
    list.className = "messages";
    region.append(list);
  }
  list.replaceChildren();
  for (const { message, tags } of items) {
    const item = document.createElement("li");
    item.className = "message " + (tags || "");
    item.textContent = message;
    list.appendChild(item);
  }
  document.getElementById("toasts").textContent = items.map((item) => item.message).join(" ");
}

function showMessage(message, tags) {
  showMessages([{ message, tags }]);
}

// Django messages sent to htmx requests through HX-Trigger: {"messages": [...]}.
document.body.addEventListener("messages", (event) => {
  showMessages(event.detail.value || []);
});

// An upstream or server failure on an htmx request still tells the user something.
document.body.addEventListener("htmx:responseError", (event) => {
  showMessage("The request failed (" + event.detail.xhr.status + "). Please try again.", "error");
});
document.body.addEventListener("htmx:sendError", () => {
  showMessage("The server could not be reached. Check your connection and try again.", "error");
});

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
  ["hour", 3600], ["minute", 60], ["second", 1]];

function relativeTime(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size || unit === "second") {
      return relativeFormat.format(Math.round(seconds / size), unit);
    }
  }
}

// <time datetime="…" data-relative>: relative text, exact time on hover (title).
// <time datetime="…" data-relative-title> (the audit log): exact UTC text, relative on hover.
function enhance(root) {
  for (const el of root.querySelectorAll("time[data-relative]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (isNaN(date)) continue;
    el.title = date.toLocaleString();
    el.textContent = relativeTime(date);
  }
  for (const el of root.querySelectorAll("time[data-relative-title]")) {
    const date = new Date(el.getAttribute("datetime"));
    if (!isNaN(date)) el.title = relativeTime(date);
  }
}

// <details data-fold-narrow> (a filter bar's other filters, a list row's actions) is open in
// the page, so all is in reach without JavaScript; on a phone it folds behind its summary
// ("Filters (n)", "⋯"), and opens again on a wider screen (where the summary is hidden).
const NARROW = matchMedia("(max-width: 37.5rem)");

function fold(root) {
  for (const details of root.querySelectorAll("details[data-fold-narrow]")) {
    details.open = !NARROW.matches;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  enhance(document);
  fold(document);
});
NARROW.addEventListener("change", () => fold(document));
document.body.addEventListener("htmx:afterSettle", (event) => {
  const region = event.target;
  enhance(region);
  fold(region);
  // A swapped region with data-announce="12 threads shown" data-announce-in="status-id" puts
  // that summary in the (role=status) element, instead of the whole region being re-read.
  if (region.dataset.announceIn) {
    document.getElementById(region.dataset.announceIn).textContent = region.dataset.announce;
  }
});

// A table row that an htmx response removes (an empty body swapped over it, e.g. the list's
// Delete) must not take the keyboard focus with it: hand it to the next row's first link, else
// the previous row's, else the element named by the table's data-focus-fallback. Give those
// links ids: htmx then keeps the focus on them when the region around them is refreshed.
document.body.addEventListener("htmx:beforeSwap", (event) => {
  const row = event.detail.target;
  const removed = event.detail.shouldSwap && !event.detail.serverResponse.trim();
  if (row.tagName !== "TR" || !removed) return;
  if (!row.contains(document.activeElement)) return;
  const neighbour = row.nextElementSibling || row.previousElementSibling;
  const fallback = row.closest("table").dataset.focusFallback;
  const next = neighbour ? neighbour.querySelector("a[href]") : document.getElementById(fallback);
  if (next) next.focus();
});

document.addEventListener("click", async (event) => {
  // Copy buttons: <button type="button" class="copy" data-copy="text">.
  const copy = event.target.closest("[data-copy]");
  if (copy) {
    try {
      await navigator.clipboard.writeText(copy.dataset.copy);
      showMessage("Copied " + copy.dataset.copy, "success");
    } catch {
      showMessage("Copying is not allowed here; select the text instead.", "error");
    }
    return;
  }
  // Repeating form rows: <button data-add-row="template-id" data-into="container-id">. The
  // button also submits `add_row` for a page without JavaScript: here the row is added instead.
  const add = event.target.closest("[data-add-row]");
  if (add) {
    event.preventDefault();
    const template = document.getElementById(add.dataset.addRow);
    const container = document.getElementById(add.dataset.into);
    const row = template.content.firstElementChild.cloneNode(true);
    // Django formset rows (data-formset="prefix"): number the row, count it in TOTAL_FORMS.
    const total = document.getElementById(`id_${add.dataset.formset}-TOTAL_FORMS`);
    if (add.dataset.formset && total) {
      const attrs = ["name", "id", "for", "aria-describedby"];
      for (const el of row.querySelectorAll(attrs.map((attr) => `[${attr}]`).join(", "))) {
        for (const attr of attrs) {
          const value = el.getAttribute(attr);
          if (value) el.setAttribute(attr, value.replaceAll("__prefix__", total.value));
        }
      }
      total.value = Number(total.value) + 1;
    }
    // Its labels' <span data-row-number> get the next number after the highest one in use,
    // so no two rows share a name ("Key of pair 3"), even after one in the middle was removed.
    const used = [...container.querySelectorAll("[data-row-number]")].map((el) => +el.textContent);
    const number = Math.max(0, ...used) + 1;
    for (const el of row.querySelectorAll("[data-row-number]")) el.textContent = number;
    container.appendChild(row);
    const first = row.querySelector("input, select, textarea");
    if (first) first.focus();
    return;
  }
  const remove = event.target.closest("[data-remove-row]");
  if (remove) {
    remove.closest("[data-row]").remove();
  }
});

// Select-all checkboxes: <input type="checkbox" data-select-all="name-of-row-checkboxes">.
document.addEventListener("change", (event) => {
  const all = event.target.closest("[data-select-all]");
  if (all) {
    for (const box of document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`)) {
      box.checked = all.checked;
    }
  }
  document.dispatchEvent(new CustomEvent("selectionChanged"));
});

// Selections: <span data-selection-count="name"> says how many boxes are ticked, and each
// select-all box shows whether all, some or none of its boxes are.
document.addEventListener("selectionChanged", () => {
  for (const count of document.querySelectorAll("[data-selection-count]")) {
    const ticked = document.querySelectorAll(`input[name="${count.dataset.selectionCount}"]:checked`);
    count.textContent = ticked.length ? `${ticked.length} selected` : "";
  }
  for (const all of document.querySelectorAll("[data-select-all]")) {
    const boxes = [...document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`)];
    const ticked = boxes.filter((box) => box.checked).length;
    all.checked = boxes.length > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
});

// One confirmation: a link or button with hx-get="<its confirmation page>" hx-target="#dialog"
// shows that page's confirmation in a modal <dialog> (its plain href or form opens the page
// itself without JavaScript). The dialog's form posts as the page's would (or, with hx-post,
// updates the row in place); Cancel, Escape or sending it closes the dialog, and the focus
// goes back to what opened it.
const dialog = document.getElementById("dialog");
let opener = null;
document.body.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.target === dialog) opener = event.detail.elt;
  else if (dialog.open && dialog.contains(event.detail.elt)) closeDialog();
});
// Shown once settled, when htmx has wired the confirmation's form: a press before that would
// send the form without htmx (the page's own POST, a full reload).
document.body.addEventListener("htmx:afterSettle", (event) => {
  if (event.detail.target !== dialog) return;
  dialog.showModal();
  const first = dialog.querySelector("input, button:not([data-close-dialog])");
  if (first) first.focus();
});
function closeDialog() {
  if (dialog.open) dialog.close();
}
dialog.addEventListener("close", () => {
  if (opener && opener.isConnected) opener.focus();
  opener = null;
});
dialog.addEventListener("click", (event) => {
  if (event.target.closest("[data-close-dialog]")) closeDialog();
});
dialog.addEventListener("submit", () => setTimeout(closeDialog));
