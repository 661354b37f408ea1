"""A thread's transcript: the live thread object and all its messages as one JSON document.

It is downloaded from the thread's page, and can be stored with a deletion's intent event
(the "snapshot"), so a deleted conversation can still be handed to whoever asks for it. It
names the key by label and hint only, never by its secret.
"""

import json
from typing import Any

from django.utils import timezone

from threads_app.models import TrackedThread
from threads_app.services.keys import client_for, note_key_result
from threads_app.services.refusals import Refused
from threads_app.upstream import Message, Thread, ThreadsClient, UpstreamError

MESSAGES_PER_REQUEST = 100  # the API's maximum page size


class SnapshotFailed(Refused):
    """The transcript could not be fetched, so the thread was not deleted.

    The message is safe to show; the upstream error is the cause.
    """


def _message(thread_id: str, message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "object": "thread.message",
        "thread_id": thread_id,
        "created_at": message.created_at,
        "role": message.role,
        "content": message.content,
        "attachments": message.attachments,
        "metadata": message.metadata,
    }


def tracked_facts(thread: TrackedThread) -> dict[str, Any]:
    """What the dashboard knows about the thread: who tracks it, under which key."""
    key = thread.api_key
    return {
        "label": thread.label,
        "state": thread.state,
        "key_label": key.label,
        "key_hint": key.hint,
        "team": key.team.name if key.team else None,
        "tracked_by": thread.tracked_by.get_username() if thread.tracked_by else None,
        "tracked_at": thread.tracked_at.isoformat(),
    }


class TranscriptFetch:
    """A transcript fetched call by call: the live thread, then its messages, oldest first,
    a page of 100 after another. An error raised mid-way (a 429 to wait out, say) leaves
    what was fetched, and `fetch()` again goes on from there: no call is repeated."""

    def __init__(self, thread: TrackedThread, client: ThreadsClient) -> None:
        self.thread, self.client = thread, client
        self.live: Thread | None = None
        self.messages: list[dict[str, Any]] = []
        self.after: str | None = None  # the last message fetched
        self.complete = False

    def fetch(self) -> dict[str, Any]:
        """The transcript as a dict; raises `UpstreamError`."""
        if self.live is None:
            self.live = self.client.retrieve_thread(self.thread.thread_id)
        while not self.complete:
            page = self.client.list_messages(
                self.live.id, limit=MESSAGES_PER_REQUEST, order="asc", after=self.after
            )
            self.messages += [_message(self.live.id, message) for message in page.messages]
            self.complete = not page.has_more or not page.last_id
            self.after = page.last_id
        return {
            "thread": {
                "id": self.live.id,
                "object": "thread",
                "created_at": self.live.created_at,
                "metadata": self.live.metadata,
                "tool_resources": self.live.tool_resources,
            },
            "messages": self.messages,
            "exported_at": timezone.now().isoformat(),
            "tracked": tracked_facts(self.thread),
        }


def thread_transcript(thread: TrackedThread) -> dict[str, Any]:
    """The transcript as a dict; raises `UpstreamError`. The key's result is noted either way."""
    try:
        transcript = TranscriptFetch(thread, client_for(thread.api_key)).fetch()
    except UpstreamError as exc:
        note_key_result(thread.api_key, exc)
        raise
    note_key_result(thread.api_key)
    return transcript


def transcript_json(thread: TrackedThread) -> str:
    """The transcript as the JSON text that is downloaded or stored; raises `UpstreamError`."""
    return json.dumps(thread_transcript(thread), indent=2, ensure_ascii=False)


def deletion_snapshot(thread: TrackedThread) -> str:
    """The transcript to store with a deletion's intent; raises `SnapshotFailed`."""
    try:
        return transcript_json(thread)
    except UpstreamError as exc:
        raise SnapshotFailed(
            f"“{thread}” was not deleted: its transcript could not be saved first. "
            f"{exc.headline} {exc} Try again, or delete it without saving a transcript."
        ) from exc
