"""Helpers shared by the tests of the thread pages (tests/test_threads_*.py)."""

import json

import pytest
from django.urls import reverse

from tests.conftest import OTHER_TEST_KEY, TEST_KEY

HX = {"HTTP_HX_REQUEST": "true"}

# Every way the upstream can fail a call, and a piece of the message the user must see.
# 429 repeats: GET and DELETE are retried, a POST is not.
UPSTREAM_FAULTS = [
    pytest.param({"kind": "status", "status": 401}, "401", id="401"),
    pytest.param({"kind": "status", "status": 404}, "404", id="404"),
    pytest.param({"kind": "status", "status": 429, "times": None}, "429", id="429"),
    pytest.param({"kind": "status", "status": 500}, "500", id="500"),
    pytest.param({"kind": "hang", "seconds": 3}, "did not answer within 2 s", id="timeout"),
    pytest.param({"kind": "malformed"}, "not JSON", id="malformed"),
]
# The same without the 404, for calls where a 404 has its own meaning.
FAILURES = [param for param in UPSTREAM_FAULTS if param.id != "404"]


def url(name, *args, query=""):
    return reverse(f"threads_app:{name}", args=args) + (f"?{query}" if query else "")


def body(response):
    """The response body as text, checked to hold no API key."""
    text = response.content.decode()
    for secret in (TEST_KEY, OTHER_TEST_KEY):
        assert secret not in text
    return text


def is_partial(text):
    return "<html" not in text and "<header" not in text


def triggers(response):
    """The HX-Trigger events of an htmx response (toasts under "messages")."""
    return json.loads(response.get("HX-Trigger", "{}"))


def toasts(response):
    return [toast["message"] for toast in triggers(response).get("messages", [])]


def posts_sent(emulator):
    return [entry for entry in emulator.request_log if entry[0] == "POST"]
