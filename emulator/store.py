"""The in-memory store: threads and their messages, each thread owned by the key that made it.

One lock guards everything; callers get deep copies, never the stored objects.
"""

import copy
import threading
import time

from emulator.protocol import ApiError, new_id


def _thread_not_found(thread_id: str) -> ApiError:
    return ApiError(404, f"No thread found with id '{thread_id}'.")


def _message_not_found(message_id: str) -> ApiError:
    return ApiError(404, f"No message found with id '{message_id}'.")


class Store:
    def __init__(self):
        self._lock = threading.Lock()
        # thread id -> {"owner": key, "thread": thread object, "messages": {id: message}}
        self._threads: dict[str, dict] = {}

    def clear(self) -> None:
        with self._lock:
            self._threads.clear()

    def _record(self, owner: str, thread_id: str) -> dict:
        record = self._threads.get(thread_id)
        if record is None or record["owner"] != owner:
            raise _thread_not_found(thread_id)
        return record

    def _message(self, owner: str, thread_id: str, message_id: str) -> dict:
        message = self._record(owner, thread_id)["messages"].get(message_id)
        if message is None:
            raise _message_not_found(message_id)
        return message

    @staticmethod
    def _new_message(thread_id: str, spec: dict) -> dict:
        now = int(time.time())
        return {
            "id": new_id("msg_"),
            "object": "thread.message",
            "created_at": now,
            "thread_id": thread_id,
            "status": "completed",
            "incomplete_details": None,
            "completed_at": now,
            "incomplete_at": None,
            "role": spec["role"],
            "content": spec["content"],
            "assistant_id": None,
            "run_id": None,
            "attachments": spec["attachments"],
            "metadata": spec["metadata"],
        }

    def create_thread(self, owner: str, spec: dict) -> dict:
        """`spec` is `validation.thread_create` output."""
        thread = {
            "id": new_id("thread_"),
            "object": "thread",
            "created_at": int(time.time()),
            "metadata": spec["metadata"],
            "tool_resources": spec["tool_resources"],
        }
        messages = [self._new_message(thread["id"], item) for item in spec["messages"]]
        with self._lock:
            self._threads[thread["id"]] = {
                "owner": owner,
                "thread": thread,
                "messages": {message["id"]: message for message in messages},
            }
            return copy.deepcopy(thread)

    def get_thread(self, owner: str, thread_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._record(owner, thread_id)["thread"])

    def modify_thread(self, owner: str, thread_id: str, changes: dict) -> dict:
        with self._lock:
            thread = self._record(owner, thread_id)["thread"]
            thread.update(copy.deepcopy(changes))
            return copy.deepcopy(thread)

    def delete_thread(self, owner: str, thread_id: str) -> dict:
        with self._lock:
            self._record(owner, thread_id)
            del self._threads[thread_id]
        return {"id": thread_id, "object": "thread.deleted", "deleted": True}

    def remove_thread(self, thread_id: str) -> bool:
        """Drop a thread whoever owns it; False if there was none."""
        with self._lock:
            return self._threads.pop(thread_id, None) is not None

    def create_message(self, owner: str, thread_id: str, spec: dict) -> dict:
        """`spec` is `validation.message` output."""
        message = self._new_message(thread_id, spec)
        with self._lock:
            self._record(owner, thread_id)["messages"][message["id"]] = message
            return copy.deepcopy(message)

    def get_message(self, owner: str, thread_id: str, message_id: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._message(owner, thread_id, message_id))

    def modify_message(self, owner: str, thread_id: str, message_id: str, changes: dict) -> dict:
        with self._lock:
            message = self._message(owner, thread_id, message_id)
            message.update(copy.deepcopy(changes))
            return copy.deepcopy(message)

    def delete_message(self, owner: str, thread_id: str, message_id: str) -> dict:
        with self._lock:
            self._message(owner, thread_id, message_id)
            del self._threads[thread_id]["messages"][message_id]
        return {"id": message_id, "object": "thread.message.deleted", "deleted": True}

    def list_messages(
        self, owner: str, thread_id: str, *, limit, order, after, before, run_id
    ) -> dict:
        """A cursor page: `after`/`before` are message ids in the requested order.

        With only `before`, the page is the `limit` messages just before it (so paging
        backwards works), and `has_more` says whether there are more beyond them. A cursor
        that is no message of the thread gives an empty page.
        """
        with self._lock:
            messages = list(self._record(owner, thread_id)["messages"].values())
            if order == "desc":
                messages.reverse()
            ids = [message["id"] for message in messages]
            if any(cursor is not None and cursor not in ids for cursor in (after, before)):
                window = []
            else:
                start = ids.index(after) + 1 if after is not None else 0
                end = ids.index(before) if before is not None else len(ids)
                window = [m for m in messages[start:end] if run_id in (None, m["run_id"])]
            page = window[-limit:] if before is not None and after is None else window[:limit]
            page = copy.deepcopy(page)
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(window) > len(page),
        }
