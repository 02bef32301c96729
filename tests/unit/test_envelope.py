"""The request envelope: what decode_request accepts, what it rejects, and the reply frames."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sysadmd.protocol import envelope
from sysadmd.protocol.envelope import BadRequest, Request, decode_request


def _frame(**fields):
    return json.dumps(fields).encode("utf-8")


def _valid(**overrides):
    fields = {"namespace": "rpc", "name": "identify", "id": 7, "args": {}}
    fields.update(overrides)
    return fields


def _rejected(payload):
    with pytest.raises(BadRequest) as info:
        decode_request(payload)
    assert info.value.code == 400
    assert info.value.details
    return info.value


# Accepted requests


@pytest.mark.parametrize("request_id", ["abc", "", 0, 7, -3, 2**70, 1.5, -0.25])
def test_decode_accepts_string_and_number_ids_and_echoes_them_exactly(request_id):
    """Any string or number is an id, returned with its type and value unchanged."""
    request = decode_request(_frame(**_valid(id=request_id)))
    assert request == Request("rpc", "identify", request_id, {})
    assert type(request.id) is type(request_id)


@pytest.mark.parametrize(
    "args", [{}, {"action": "list"}, [], [1, "two", None], "text", 3, 2.5, None, True, {"a": {"b": [{}]}}]
)
def test_decode_accepts_any_json_value_as_args(args):
    """``args`` is passed through whatever JSON value it is; the handler judges it."""
    request = decode_request(_frame(**_valid(args=args)))
    assert request.args == args


def test_decode_accepts_text_and_bytearray_payloads():
    """A str or bytearray payload decodes like the equivalent bytes."""
    text = json.dumps(_valid(id="x"))
    assert decode_request(text) == decode_request(bytearray(text.encode())) == Request(
        "rpc", "identify", "x", {}
    )


def test_decode_accepts_non_ascii_utf8():
    """UTF-8 text outside ASCII is decoded, not rejected."""
    payload = json.dumps(_valid(id="é✓", args={"k": "日本"}), ensure_ascii=False).encode("utf-8")
    request = decode_request(payload)
    assert request.id == "é✓"
    assert request.args == {"k": "日本"}


def test_decode_ignores_extra_fields():
    """Unknown top-level fields do not make a request invalid."""
    request = decode_request(_frame(**_valid(extra=1)))
    assert request == Request("rpc", "identify", 7, {})


# Rejected frames


@pytest.mark.parametrize("payload", [b"\xff", b'{"id": "\xc3\x28"}', b"\xed\xa0\x80", b"\x80abc"])
def test_decode_rejects_invalid_utf8(payload):
    """Bytes that are not UTF-8 are a 400 naming UTF-8, with no id."""
    error = _rejected(payload)
    assert "UTF-8" in error.details
    assert error.request_id is None


@pytest.mark.parametrize("payload", [b"", b"{", b"{'id': 1}", b'{"id": 1,}', b"hello", b'{"a":1} x'])
def test_decode_rejects_invalid_json(payload):
    """Malformed JSON is a 400 saying so."""
    error = _rejected(payload)
    assert "JSON" in error.details
    assert error.request_id is None


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["id", "args"])
def test_decode_rejects_nan_and_infinity_literals(constant, where):
    """NaN and Infinity are Python extensions, not JSON: rejected wherever they appear."""
    fields = _valid()
    fields[where] = "@@"
    payload = json.dumps(fields).replace('"@@"', constant).encode()
    error = _rejected(payload)
    assert "JSON" in error.details


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_decode_rejects_numbers_that_overflow_to_infinity(literal):
    """``1e400`` parses to infinity; echoing it would put ``Infinity`` (not JSON) on the wire."""
    payload = ('{"namespace": "rpc", "name": "identify", "id": %s, "args": {}}' % literal).encode()
    _rejected(payload)


@pytest.mark.parametrize("payload", [b"[]", b"[1]", b'"text"', b"1", b"null", b"true"])
def test_decode_rejects_non_objects(payload):
    """Only a JSON object can be a request."""
    error = _rejected(payload)
    assert "object" in error.details
    assert error.request_id is None


@pytest.mark.parametrize("bad_id", [True, False, None, {}, {"a": 1}, [], [1]])
def test_decode_rejects_bool_null_and_structured_ids(bad_id):
    """true/false, null, objects and arrays are not ids; the reply cannot echo them."""
    error = _rejected(_frame(**_valid(id=bad_id)))
    assert '"id"' in error.details
    assert error.request_id is None


def test_decode_rejects_missing_id():
    """A request without ``id`` is a 400 about the id."""
    fields = _valid()
    del fields["id"]
    error = _rejected(_frame(**fields))
    assert '"id"' in error.details
    assert error.request_id is None


@pytest.mark.parametrize(
    "missing", [("namespace",), ("name",), ("args",), ("namespace", "name", "args")]
)
def test_decode_rejects_missing_fields_naming_each_and_echoing_the_id(missing):
    """Every missing field is named, and the readable id is echoed."""
    fields = _valid(id="req-1")
    for field in missing:
        del fields[field]
    error = _rejected(_frame(**fields))
    for field in missing:
        assert f'"{field}"' in error.details
    assert error.request_id == "req-1"


@pytest.mark.parametrize("field", ["namespace", "name"])
@pytest.mark.parametrize("value", ["", 1, None, [], {}, True])
def test_decode_rejects_empty_or_non_string_namespace_and_name(field, value):
    """``namespace`` and ``name`` must be non-empty strings; the id is echoed."""
    error = _rejected(_frame(**_valid(**{field: value, "id": 42})))
    assert f'"{field}"' in error.details
    assert error.request_id == 42


def test_decode_rejects_deeply_nested_json_without_recursion_error():
    """100000 nested arrays are a BadRequest, never a RecursionError escaping."""
    error = _rejected(b"[" * 100000)
    assert error.request_id is None


def test_decode_rejects_deeply_nested_args_of_an_otherwise_valid_request():
    """Deep nesting inside ``args`` of an otherwise valid request is also a BadRequest."""
    payload = b'{"namespace":"rpc","name":"x","id":1,"args":' + b"[" * 100000 + b"]" * 100000 + b"}"
    _rejected(payload)


# Reply frames


def test_response_echoes_namespace_and_id():
    """A response keeps the request's namespace and id and carries the result as args."""
    request = Request("events", "subscribe", "abc", ["x"])
    assert envelope.response(request, {"ok": 1}) == {
        "namespace": "events",
        "name": "response",
        "id": "abc",
        "args": {"ok": 1},
    }


@pytest.mark.parametrize("code", sorted(envelope.REASONS))
def test_error_frame_carries_code_reason_and_details(code):
    """An error reply names the code, its standard reason phrase and the details."""
    frame = envelope.error(9, code, "Because.")
    assert frame == {
        "namespace": "error",
        "name": "error",
        "id": 9,
        "args": {"code": code, "message": envelope.REASONS[code], "details": "Because."},
    }


def test_error_frame_with_unreadable_id_has_null_id():
    """An unreadable id is sent as JSON null."""
    assert json.loads(envelope.encode(envelope.error(None, 400, "x")))["id"] is None


def test_event_frame_defaults_id_to_none_string():
    """Event frames use the string "none" as their id, as the reference server does."""
    assert envelope.event("system_state", {"a": 1}) == {
        "namespace": "events",
        "name": "system_state",
        "id": "none",
        "args": {"a": 1},
    }


def test_encode_is_compact_utf8():
    """encode() gives compact UTF-8 JSON, non-ASCII unescaped."""
    assert envelope.encode({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode("utf-8")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_encode_refuses_values_that_are_not_json(value):
    """encode() never produces NaN/Infinity, which strict JSON clients cannot parse."""
    with pytest.raises(ValueError):
        envelope.encode(envelope.event("x", {"v": value}))


@pytest.mark.parametrize(
    "field",
    [
        "id",
        "namespace",
        "args",
        "name",
    ],
)
def test_lone_surrogate_is_rejected_or_reply_is_encodable(field):
    """Whatever decode_request accepts, its echoed reply and error frames can be encoded."""
    fields = _valid()
    fields[field] = "\ud800"
    payload = json.dumps(fields).encode("ascii")  # ASCII, so valid UTF-8 on the wire
    # Replies go out as WebSocket text frames, so they must be strict UTF-8.
    try:
        request = decode_request(payload)
    except BadRequest as e:
        envelope.encode(envelope.error(e.request_id, 400, e.details)).decode("utf-8")
        return
    envelope.encode(envelope.response(request, request.args)).decode("utf-8")
    envelope.encode(envelope.error(request.id, 500, "x")).decode("utf-8")


# Properties

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

request_like = st.fixed_dictionaries(
    {},
    optional={
        "namespace": json_values | st.text(min_size=1),
        "name": json_values | st.text(min_size=1),
        "id": json_values,
        "args": json_values,
    },
)


def _decode_and_check(payload):
    """decode_request's outcome is a Request or a BadRequest; both replies round-trip."""
    try:
        request = decode_request(payload)
    except BadRequest as e:
        assert e.code == 400
        assert isinstance(e.details, str) and e.details
        frame = envelope.error(e.request_id, e.code, e.details)
        assert json.loads(envelope.encode(frame)) == frame
        return None
    assert isinstance(request, Request)
    assert isinstance(request.namespace, str) and request.namespace
    assert isinstance(request.name, str) and request.name
    assert isinstance(request.id, (str, int, float)) and not isinstance(request.id, bool)
    reply = envelope.response(request, request.args)
    assert json.loads(envelope.encode(reply)) == reply
    err = envelope.error(request.id, 404, "Unknown call.")
    assert json.loads(envelope.encode(err)) == err
    return request


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_arbitrary_bytes_give_request_or_bad_request(payload):
    """No byte string makes decode_request raise anything but BadRequest."""
    _decode_and_check(payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_property_arbitrary_json_values_give_request_or_bad_request(value):
    """Any JSON document is either a Request or a BadRequest."""
    _decode_and_check(json.dumps(value).encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(request_like)
def test_property_request_shaped_objects_decode_consistently(fields):
    """Objects with any mix of the four fields decode exactly when the fields are valid."""
    request = _decode_and_check(json.dumps(fields, ensure_ascii=False).encode("utf-8"))
    valid = (
        "id" in fields
        and isinstance(fields["id"], (str, int, float))
        and not isinstance(fields["id"], bool)
        and all(k in fields for k in ("namespace", "name", "args"))
        and all(isinstance(fields[k], str) and fields[k] for k in ("namespace", "name"))
    )
    if valid:
        assert request == Request(fields["namespace"], fields["name"], fields["id"], fields["args"])
    else:
        assert request is None
