"""The message envelope every frame uses, and the error replies.

Requests and replies are one JSON object ``{"namespace", "name", "id", "args"}``::

    -> {"namespace": "rpc", "name": "identify", "id": 7, "args": {}}
    <- {"namespace": "rpc", "name": "response", "id": 7, "args": {"type": "server", ...}}
    <- {"namespace": "error", "name": "error", "id": 7,
        "args": {"code": 401, "message": "Unauthorized", "details": "Authenticate first."}}

The ``id`` is echoed exactly as sent (a string or a number).
"""

import json
import re
from dataclasses import dataclass
from typing import Any

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class RequestError(Exception):
    """A request that gets an error reply; ``details`` is a sentence meant for a person."""

    def __init__(self, code, details):
        super().__init__(code, details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Request:
    """A well-formed request."""

    namespace: str
    name: str
    id: Any
    args: Any


class BadRequest(RequestError):
    """A frame that is not a valid request; ``request_id`` is echoed when it was readable."""

    def __init__(self, details, request_id=None):
        super().__init__(400, details)
        self.request_id = request_id


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large")
    return value


# A \uD800-\uDFFF escape may leave a lone surrogate, which no UTF-8 reply can carry.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def loads(text):
    """Strict JSON: no NaN/Infinity, no numbers that overflow, no lone surrogates.
    Raises ValueError (or RecursionError for absurd nesting)."""
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("lone surrogate escape") from None
    return value


def _valid_id(value):
    # bool is an int subclass, but true/false are not ids
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def decode_request(payload):
    """Turn a frame's bytes into a :class:`Request`, or raise :class:`BadRequest`."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
    except UnicodeDecodeError:
        raise BadRequest("The message is not valid UTF-8.") from None
    try:
        message = loads(text)
    except (ValueError, RecursionError):
        raise BadRequest("The message is not valid JSON.") from None
    if not isinstance(message, dict):
        raise BadRequest("The message must be a JSON object.")
    request_id = message.get("id")
    if not _valid_id(request_id):
        raise BadRequest('"id" is required and must be a string or a number.')
    missing = [field for field in ("namespace", "name", "args") if field not in message]
    if missing:
        raise BadRequest(
            "Missing field(s): " + ", ".join(f'"{field}"' for field in missing) + ".", request_id
        )
    for field in ("namespace", "name"):
        if not isinstance(message[field], str) or not message[field]:
            raise BadRequest(f'"{field}" must be a non-empty string.', request_id)
    return Request(message["namespace"], message["name"], request_id, message["args"])


def response(request, result):
    """The success reply to ``request``."""
    return {"namespace": request.namespace, "name": "response", "id": request.id, "args": result}


def error(request_id, code, details):
    """An error reply; ``request_id`` is None when the request's id was unreadable."""
    return {
        "namespace": "error",
        "name": "error",
        "id": request_id,
        "args": {"code": code, "message": REASONS[code], "details": details},
    }


def event(frame_name, args, frame_id="none"):
    """An event frame, as in the specification's events section."""
    return {"namespace": "events", "name": frame_name, "id": frame_id, "args": args}


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(frame):
    """Serialize a frame to UTF-8 JSON bytes; ValueError (or UnicodeEncodeError, a
    subclass) when it holds something JSON cannot carry (NaN, lone surrogates...)."""
    return _ENCODER.encode(frame).encode("utf-8")
