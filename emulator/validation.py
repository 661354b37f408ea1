"""Request validation: OpenAI-shaped 400 errors, and normalisation into the stored shapes.

Follows `threads-openapi.yaml` plus the limits the real API enforces although the document
states them only in descriptions (metadata sizes, list `limit` 1..100). Unknown fields are
rejected where the document says `additionalProperties: false` (every request body's top
level, chunking strategies) and ignored elsewhere, as the document allows them there.
`null` for `metadata` or `tool_resources` means none (`{}`), on create and modify alike.
"""

import re

from emulator.protocol import invalid, new_id

METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
CODE_INTERPRETER_FILES_MAX = 20
VECTOR_STORES_MAX = 1
LIST_LIMIT_MAX = 100
LIST_LIMIT_DEFAULT = 20

ROLES = ("user", "assistant")
ORDERS = ("asc", "desc")
CONTENT_TYPES = ("image_file", "image_url", "text")
IMAGE_DETAILS = ("auto", "low", "high")
ATTACHMENT_TOOLS = ("code_interpreter", "file_search")
CHUNKING_TYPES = ("auto", "static")

_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
# An absolute URI (RFC 3986): a scheme, then no whitespace.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")
# Digits capped well below int()'s 4300-digit limit; anything longer is no usable integer anyway.
_INTEGER = re.compile(r"-?[0-9]{1,100}")


def _join(param: str, key: str) -> str:
    return f"{param}.{key}" if param else key


def _type_error(value, expected: str, param: str):
    got = _TYPE_NAMES.get(type(value), "a value")
    return invalid(
        f"Invalid type for '{param or 'body'}': expected {expected}, but got {got} instead.",
        param or None,
        "invalid_type",
    )


def _expect(value, expected: type, param: str):
    # `type(...) is` on purpose: JSON `true` must not pass for an integer.
    if type(value) is not expected:
        raise _type_error(value, _TYPE_NAMES[expected], param)
    return value


def _object(value, param: str, *, allowed=None, required=()) -> dict:
    _expect(value, dict, param)
    for key in value:
        if allowed is not None and key not in allowed:
            raise invalid(
                f"Unknown parameter: '{_join(param, key)}'.", _join(param, key), "unknown_parameter"
            )
    for key in required:
        if key not in value:
            raise invalid(
                f"Missing required parameter: '{_join(param, key)}'.",
                _join(param, key),
                "missing_required_parameter",
            )
    return value


def _quoted(values) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) == 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _enum(value, allowed, param: str) -> str:
    _expect(value, str, param)
    if value not in allowed:
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: {_quoted(allowed)}.",
            param,
            "invalid_value",
        )
    return value


def _kind(value, param: str, allowed) -> str:
    """The `type` of a tagged object such as a content part."""
    _object(value, param, required=("type",))
    return _enum(value["type"], allowed, _join(param, "type"))


def _integer(value, param: str, *, minimum=None, maximum=None) -> int:
    _expect(value, int, param)
    if minimum is not None and value < minimum:
        raise invalid(
            f"Invalid '{param}': integer below minimum value. "
            f"Expected a value >= {minimum}, but got {value} instead.",
            param,
            "integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise invalid(
            f"Invalid '{param}': integer above maximum value. "
            f"Expected a value <= {maximum}, but got {value} instead.",
            param,
            "integer_above_max_value",
        )
    return value


def _array(value, param: str, *, min_items=0, max_items=None) -> list:
    _expect(value, list, param)
    if len(value) < min_items:
        raise invalid(
            f"Invalid '{param}': empty array. Expected an array with minimum length {min_items}, "
            "but got an empty array instead.",
            param,
            "empty_array",
        )
    if max_items is not None and len(value) > max_items:
        raise invalid(
            f"Invalid '{param}': array too long. Expected an array with maximum length "
            f"{max_items}, but got an array with length {len(value)} instead.",
            param,
            "array_above_max_length",
        )
    return value


def _strings(value, param: str, *, max_items=None) -> list[str]:
    items = _array(value, param, max_items=max_items)
    return [_expect(item, str, f"{param}[{index}]") for index, item in enumerate(items)]


def _too_long(param: str, what: str, limit: int, length: int):
    return invalid(
        f"Invalid '{param}': {what} too long. Expected a {what} with maximum length {limit}, "
        f"but got a {what} with length {length} instead.",
        param,
        "string_above_max_length",
    )


def metadata(value, param: str = "metadata") -> dict[str, str]:
    """A metadata map; `null` means none (`{}`)."""
    if value is None:
        return {}
    _expect(value, dict, param)
    if len(value) > METADATA_MAX_PAIRS:
        raise invalid(
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{METADATA_MAX_PAIRS} properties, but got an object with {len(value)} properties "
            "instead.",
            param,
            "object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > METADATA_KEY_MAX:
            raise _too_long(param, "key", METADATA_KEY_MAX, len(key))
        _expect(item, str, _join(param, key))
        if len(item) > METADATA_VALUE_MAX:
            raise _too_long(_join(param, key), "string", METADATA_VALUE_MAX, len(item))
    return dict(value)


def _chunking_strategy(value, param: str) -> None:
    kind = _kind(value, param, CHUNKING_TYPES)
    if kind == "auto":
        _object(value, param, allowed={"type"})
        return
    _object(value, param, allowed={"type", "static"}, required=("static",))
    static_param = _join(param, "static")
    sizes = ("max_chunk_size_tokens", "chunk_overlap_tokens")
    static = _object(value["static"], static_param, allowed=set(sizes), required=sizes)
    _integer(static[sizes[0]], _join(static_param, sizes[0]), minimum=100, maximum=4096)
    _integer(static[sizes[1]], _join(static_param, sizes[1]))


def _new_vector_store(value, param: str) -> str:
    """Validate a `vector_stores` helper entry; the emulator only mints an id for it."""
    _object(value, param)
    _strings(value.get("file_ids", []), _join(param, "file_ids"))
    if "chunking_strategy" in value:
        _chunking_strategy(value["chunking_strategy"], _join(param, "chunking_strategy"))
    metadata(value.get("metadata"), _join(param, "metadata"))
    return new_id("vs_")


def _file_search(value, param: str, *, creating: bool) -> dict:
    _object(value, param)
    ids_param, stores_param = _join(param, "vector_store_ids"), _join(param, "vector_stores")
    has_ids, has_stores = "vector_store_ids" in value, "vector_stores" in value
    if creating and has_ids and has_stores:
        raise invalid(
            f"Invalid '{param}': provide only one of 'vector_store_ids' or 'vector_stores'.",
            param,
            "invalid_value",
        )
    if creating and not (has_ids or has_stores):
        raise invalid(
            f"Missing required parameter: '{ids_param}'.", ids_param, "missing_required_parameter"
        )
    if creating and has_stores:
        stores = _array(value["vector_stores"], stores_param, max_items=VECTOR_STORES_MAX)
        ids = [_new_vector_store(store, f"{stores_param}[{i}]") for i, store in enumerate(stores)]
    else:
        ids = _strings(value.get("vector_store_ids", []), ids_param, max_items=VECTOR_STORES_MAX)
    return {"vector_store_ids": ids}


def tool_resources(value, param: str = "tool_resources", *, creating: bool) -> dict:
    """Tool resources as the thread object shows them; `null` means none (`{}`).

    Only thread creation knows the `vector_stores` helper (it mints a vector store id).
    """
    if value is None:
        return {}
    _object(value, param)
    result = {}
    if "code_interpreter" in value:
        ci_param = _join(param, "code_interpreter")
        code_interpreter = _object(value["code_interpreter"], ci_param)
        result["code_interpreter"] = {
            "file_ids": _strings(
                code_interpreter.get("file_ids", []),
                _join(ci_param, "file_ids"),
                max_items=CODE_INTERPRETER_FILES_MAX,
            )
        }
    if "file_search" in value:
        result["file_search"] = _file_search(
            value["file_search"], _join(param, "file_search"), creating=creating
        )
    return result


def _text_part(text: str) -> dict:
    return {"type": "text", "text": {"value": text, "annotations": []}}


def _content_part(value, param: str) -> dict:
    kind = _kind(value, param, CONTENT_TYPES)
    _object(value, param, required=(kind,))
    if kind == "text":
        return _text_part(_expect(value["text"], str, _join(param, "text")))
    image_param = _join(param, kind)
    ref_key = "file_id" if kind == "image_file" else "url"
    image = _object(value[kind], image_param, required=(ref_key,))
    ref_param = _join(image_param, ref_key)
    ref = _expect(image[ref_key], str, ref_param)
    if ref_key == "url" and not _URI.fullmatch(ref):
        raise invalid(f"Invalid '{ref_param}': expected a valid URL.", ref_param, "invalid_url")
    detail = _enum(image.get("detail", "auto"), IMAGE_DETAILS, _join(image_param, "detail"))
    return {"type": kind, kind: {ref_key: ref, "detail": detail}}


def _content(value, param: str) -> list[dict]:
    if isinstance(value, str):
        return [_text_part(value)]
    if not isinstance(value, list):
        raise _type_error(value, "one of a string or an array of objects", param)
    parts = _array(value, param, min_items=1)
    return [_content_part(part, f"{param}[{index}]") for index, part in enumerate(parts)]


def _attachments(value, param: str) -> list[dict]:
    """Attachments as given; the document does not require `file_id` in an item, so neither
    does the emulator (its `required` sits on the array, where it means nothing)."""
    if value is None:
        return []
    result = []
    for index, item in enumerate(_array(value, param)):
        item_param = f"{param}[{index}]"
        _object(item, item_param)
        attachment = {}
        if "file_id" in item:
            attachment["file_id"] = _expect(item["file_id"], str, _join(item_param, "file_id"))
        tools_param = _join(item_param, "tools")
        attachment["tools"] = [
            {"type": _kind(tool, f"{tools_param}[{i}]", ATTACHMENT_TOOLS)}
            for i, tool in enumerate(_array(item.get("tools", []), tools_param))
        ]
        result.append(attachment)
    return result


def message(body, param: str = "") -> dict:
    """A create-message request (also each of a create-thread request's `messages`)."""
    _object(
        body,
        param,
        allowed={"role", "content", "attachments", "metadata"},
        required=("role", "content"),
    )
    return {
        "role": _enum(body["role"], ROLES, _join(param, "role")),
        "content": _content(body["content"], _join(param, "content")),
        "attachments": _attachments(body.get("attachments"), _join(param, "attachments")),
        "metadata": metadata(body.get("metadata"), _join(param, "metadata")),
    }


def thread_create(body) -> dict:
    _object(body, "", allowed={"messages", "tool_resources", "metadata"})
    messages = _array(body.get("messages", []), "messages")
    return {
        "messages": [message(item, f"messages[{index}]") for index, item in enumerate(messages)],
        "tool_resources": tool_resources(body.get("tool_resources"), creating=True),
        "metadata": metadata(body.get("metadata")),
    }


def thread_modify(body) -> dict:
    """Only the fields present; each replaces the stored value as a whole (`null` clears it)."""
    _object(body, "", allowed={"metadata", "tool_resources"})
    changes = {}
    if "metadata" in body:
        changes["metadata"] = metadata(body["metadata"])
    if "tool_resources" in body:
        changes["tool_resources"] = tool_resources(body["tool_resources"], creating=False)
    return changes


def message_modify(body) -> dict:
    _object(body, "", allowed={"metadata"})
    return {"metadata": metadata(body["metadata"])} if "metadata" in body else {}


def list_query(query: dict[str, list[str]]) -> dict:
    """The message-list query string (`parse_qs` output) as keyword arguments for the store."""
    values = {name: items[0] for name, items in query.items()}
    limit = values.get("limit", str(LIST_LIMIT_DEFAULT))
    if not _INTEGER.fullmatch(limit):
        raise _type_error(limit, "an integer", "limit")
    return {
        "limit": _integer(int(limit), "limit", minimum=1, maximum=LIST_LIMIT_MAX),
        "order": _enum(values.get("order", "desc"), ORDERS, "order"),
        "after": values.get("after"),
        "before": values.get("before"),
        "run_id": values.get("run_id"),
    }
