"""Schemathesis hooks for `make conformance` (loaded through SCHEMATHESIS_HOOKS; never imported
by the emulator, which stays stdlib-only).

The shared spec README lists where OpenAI's document and the real API differ. Rather than
switching whole checks off, this writes those documented behaviours into the loaded schema,
so schemathesis checks them too (e.g. it sends `limit=101` and expects a rejection):
- `first_id` / `last_id` of a message list are `null` when the list is empty;
- list `limit` is 1..100;
- metadata has at most 16 pairs, keys of at most 64 and values of at most 512 characters.
"""

import schemathesis


@schemathesis.hook
def before_load_schema(context, raw_schema):
    schemas = raw_schema["components"]["schemas"]
    for name in ("first_id", "last_id"):
        schemas["ListMessagesResponse"]["properties"][name]["type"] = ["string", "null"]

    metadata = next(option for option in schemas["Metadata"]["anyOf"] if option["type"] == "object")
    metadata["maxProperties"] = 16
    metadata["propertyNames"] = {"maxLength": 64}
    metadata["additionalProperties"]["maxLength"] = 512

    parameters = raw_schema["paths"]["/threads/{thread_id}/messages"]["get"]["parameters"]
    limit = next(parameter for parameter in parameters if parameter["name"] == "limit")
    limit["schema"].update(minimum=1, maximum=100)
