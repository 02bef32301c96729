"""The two wire dialects: choosing one per connection, and what the ``original`` one
changes (event frames, error codes, subscribe replies) while ``spec`` stays as it was."""

import json

import pytest

from sysadmd.channel.outbound import DROP, Outbound
from sysadmd.events.hub import EventHub
from sysadmd.lifepreserver.mapping import date_of, map_line
from sysadmd.protocol import envelope
from sysadmd.protocol.dialect import (
    ORIGINAL,
    SPEC,
    WithOriginal,
    choose,
    original_frame,
)
from sysadmd.protocol.framing import prepare_text
from sysadmd.server.browser import (
    BrowserRules,
    hide_application_origin,
    is_application_origin,
)
from tests.unit.test_hub import SpyPrepare, prepare  # noqa: F401 (prepare is a fixture)
from tests.unit.test_protocol import Daemon
from tests.unit.wsfake import parse_frames


def outbound(dialect, written):
    queue = Outbound(written.append, prepare_text, 1 << 20, DROP, lambda: None)
    queue.dialect = dialect
    return queue


def decoded(prepared):
    [(_, payload)] = parse_frames(prepared.payloadHybi)
    return json.loads(payload)


# Choosing


@pytest.mark.parametrize("setting, origin, dialect", [
    ("auto", "sysadm-client", ORIGINAL),
    ("auto", "sysadm-server", ORIGINAL),
    ("auto", None, SPEC),
    ("auto", "https://dash.example.org", SPEC),
    ("auto", "other-tool", SPEC),
    ("spec", "sysadm-client", SPEC),
    ("original", None, ORIGINAL),
    ("original", "https://dash.example.org", ORIGINAL),
])
def test_auto_chooses_original_for_the_original_clients_origins(setting, origin, dialect):
    """auto: original for sysadm-client and sysadm-server only; spec and original force."""
    assert choose(setting, origin) == dialect


def test_original_error_frames_carry_the_code_as_a_string():
    """Only an error's code changes; the input frame is left alone."""
    frame = envelope.error("x", 401, "Authenticate first.")
    assert original_frame(frame)["args"] == {
        "code": "401", "message": "Unauthorized", "details": "Authenticate first."}
    assert frame["args"]["code"] == 401
    reply = {"namespace": "rpc", "name": "response", "id": 1, "args": {"code": 5}}
    assert original_frame(reply) is reply


# The hub: one spec encoding, the original form only on demand, once


@pytest.fixture
def hub(prepare):
    hub = EventHub(prepare)
    hub.add_source("system-state", "system_state", replay_last=True)
    hub.add_source("life-preserver", "life_preserver", replay_last=True)
    hub.add_source("dispatcher", "dispatcher", replay_last=False)
    return hub


def test_spec_subscribers_never_cause_an_original_encoding(hub, prepare):
    """With spec subscribers only, one payload and one frame per event, as before."""
    written = []
    sinks = [outbound(SPEC, written) for _ in range(3)]
    hub.subscribe(sinks[0], ["system-state"])
    hub.subscribe(sinks[1], ["system-state"])
    hub.subscribe(sinks[2], ["system-state"])
    hub.publish("system-state", {"hostname": "nas1"})
    assert len(prepare.calls) == 1
    epoch = hub.channel("system-state").log.epoch.encode()
    assert prepare.calls[0] == (b'{"namespace":"events","name":"system_state","id":"none","args":{"hostname":"nas1"},'
                                b'"seq":1,"epoch":"' + epoch + b'"}')
    assert hub.channel("system-state").last._original is None
    assert [decoded(p) for p in written] == [json.loads(prepare.calls[0])] * 3


def test_original_subscribers_share_one_original_frame_named_after_the_subscription(hub, prepare):
    """Original-dialect frames are named after the subscription with "id": "", built
    once per event whatever the number of such subscribers."""
    written = []
    for dialect in (SPEC, ORIGINAL, ORIGINAL):
        hub.subscribe(outbound(dialect, written), ["system-state", "dispatcher"])
    hub.publish("system-state", {"hostname": "nas1", "zpools": {}})
    hub.publish("dispatcher", {"state": "running"})
    assert len(prepare.calls) == 4
    # subscribers are a set: compare without order
    frames = sorted((decoded(p) for p in written), key=json.dumps)
    state = {"hostname": "nas1", "zpools": {}}
    # Numbered in the spec dialect only.
    numbers = {name: {"seq": 1, "epoch": hub.channel(name).log.epoch} for name in ("system-state", "dispatcher")}
    assert frames == sorted([
        {"namespace": "events", "name": "system_state", "id": "none", "args": state, **numbers["system-state"]},
        {"namespace": "events", "name": "system-state", "id": "", "args": state},
        {"namespace": "events", "name": "system-state", "id": "", "args": state},
        {"namespace": "events", "name": "dispatcher", "id": "none", "args": {"state": "running"},
         **numbers["dispatcher"]},
        {"namespace": "events", "name": "dispatcher", "id": "", "args": {"state": "running"}},
        {"namespace": "events", "name": "dispatcher", "id": "", "args": {"state": "running"}},
    ], key=json.dumps)
    event = hub.channel("system-state").last
    assert event.original is event.original and event.original.original is event.original


def test_args_with_an_original_form_are_spec_for_spec_and_original_for_original(hub):
    """A WithOriginal is encoded as its spec args; its original args go to the original
    dialect (e.g. a life-preserver message with its log line's date)."""
    spec, original = [], []
    hub.subscribe(outbound(SPEC, spec), "life-preserver")
    hub.subscribe(outbound(ORIGINAL, original), "life-preserver")
    hub.publish("life-preserver", WithOriginal({"message": "m"}, {"message": "D: m"}))
    assert decoded(spec[0])["args"] == {"message": "m"}
    assert decoded(original[0])["args"] == {"message": "D: m"}


def test_unencodable_original_args_fall_back_to_the_spec_args(hub):
    written = []
    hub.subscribe(outbound(ORIGINAL, written), "life-preserver")
    hub.publish("life-preserver", {"message": "m"}, original={"message": float("nan")})
    assert decoded(written[0])["args"] == {"message": "m"}


def test_original_replies_and_notices_carry_string_codes_and_drop_notices_empty_ids():
    written = []
    queue = outbound(ORIGINAL, written)
    queue.send_frame(envelope.error(None, 401, "Your session expired."))
    assert decoded(written[0])["args"]["code"] == "401"
    queue.pauseProducing()
    queue.limit = 0
    hub = EventHub(prepare_text)
    hub.add_source("dispatcher", "dispatcher", False)
    hub.subscribe(queue, "dispatcher")
    hub.publish("dispatcher", {"state": "running"})
    queue.resumeProducing()
    assert decoded(written[-1]) == {"namespace": "events", "name": "dropped", "id": "",
                                    "args": {"count": 1}}


# The events calls, through a real protocol


def original_peer(daemon):
    peer = daemon.signed_in(origin="sysadm-client")
    assert peer.protocol.channel.dialect == ORIGINAL
    return peer


def test_original_subscribe_answers_with_the_last_name_and_skips_unknown_ones():
    daemon = Daemon()
    daemon.hub.add_source("system-state", "system_state", True)
    peer = original_peer(daemon)
    peer.request("events", "subscribe", "demo", "a")
    assert peer.messages() == [{"namespace": "events", "name": "response", "id": "a",
                                "args": {"subscribe": "demo"}}]
    peer.request("events", "subscribe", ["system-state", "nosuch", "demo"], "b")
    assert peer.messages()[0]["args"] == {"subscribe": "demo"}
    assert daemon.hub.subscriptions(peer.protocol.channel.outbound) == ["demo", "system-state"]
    peer.request("events", "subscribe", ["nosuch"], "c")
    assert peer.messages()[0]["args"] == {}
    peer.request("events", "subscribe", 7, "d")
    assert peer.messages()[0]["args"]["code"] == "400"
    peer.request("events", "unsubscribe", ["demo", "nosuch"], "e")
    assert peer.messages()[0]["args"] == {"unsubscribe": "demo"}


def test_original_subscribing_again_resends_the_cached_event():
    daemon = Daemon()
    peer = original_peer(daemon)
    daemon.hub.publish("demo", {"n": 1})
    peer.request("events", "subscribe", "demo", "a")
    first = peer.messages()
    peer.request("events", "subscribe", "demo", "b")
    second = peer.messages()
    event = {"namespace": "events", "name": "demo", "id": "", "args": {"n": 1}}
    assert first[1] == second[1] == event


def test_spec_subscribe_is_unchanged():
    """The default dialect: list reply, unknown names a 400 with a number, no resend."""
    daemon = Daemon()
    peer = daemon.signed_in()
    assert peer.protocol.channel.dialect == SPEC
    daemon.hub.publish("demo", {"n": 1})
    peer.request("events", "subscribe", "demo", "a")
    assert [m["name"] for m in peer.messages()] == ["response", "demo_frame"]
    peer.request("events", "subscribe", "demo", "b")
    assert peer.messages() == [{"namespace": "events", "name": "response", "id": "b",
                                "args": {"subscribe": ["demo"]}}]
    peer.request("events", "subscribe", ["demo", "nosuch"], "c")
    assert peer.messages()[0]["args"]["code"] == 400


def test_original_errors_before_sign_in_have_string_codes():
    daemon = Daemon()
    peer = daemon.peer(origin="sysadm-client")
    peer.request("events", "subscribe", "demo", "a")
    [reply] = peer.messages()
    assert reply["name"] == "error" and reply["args"]["code"] == "401"


def test_the_dialect_setting_forces_one_dialect():
    assert Daemon(dialect="spec").peer(origin="sysadm-client").protocol.channel.dialect == SPEC
    assert Daemon(dialect="original").peer().protocol.channel.dialect == ORIGINAL


def test_a_channel_refuses_an_unknown_dialect():
    peer = Daemon().peer()
    with pytest.raises(ValueError):
        peer.protocol.channel.dialect = "klingon"
    assert peer.protocol.channel.dialect == SPEC


# Origins that are not URLs


@pytest.mark.parametrize("origin, application", [
    ("sysadm-client", True), ("sysadm-server", True), ("null", False), ("NULL", False),
    ("https://x.example", False), ("file://", False), ("chrome-extension://abc", False),
])
def test_application_origins_are_the_values_that_are_not_urls(origin, application):
    assert is_application_origin(origin) is application


def test_browser_rules_accept_application_origins_and_keep_the_rest():
    rules = BrowserRules(["127.0.0.1"], [])
    assert rules.refusal("127.0.0.1:12150", "sysadm-client", True) is None
    assert rules.refusal("127.0.0.1:12150", "null", False) == "Origin not allowed"
    assert rules.refusal("127.0.0.1:12150", "https://evil.example", True) == "Origin not allowed"
    assert rules.refusal("evil.example", "sysadm-client", True) == "Host not allowed"


def test_hide_application_origin_only_takes_out_one_complete_non_url_origin():
    head = b"GET / HTTP/1.1\r\nHost: h\r\nOrigin: sysadm-client\r\nSec-WebSocket-Version: 13\r\n\r\n"
    assert hide_application_origin(head) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Version: 13\r\n\r\n", "sysadm-client")
    assert hide_application_origin(head[:-2]) == (head[:-2], None)
    url = head.replace(b"sysadm-client", b"http://h")
    assert hide_application_origin(url) == (url, None)
    twice = head.replace(b"Host: h\r\n", b"Host: h\r\nOrigin: x\r\n")
    assert hide_application_origin(twice) == (twice, None)
    other = head.replace(b"Origin", b"Sec-WebSocket-Origin")
    assert hide_application_origin(other) == (other, None)


@pytest.mark.parametrize("origin, status", [
    ("sysadm-client", 101), ("sysadm-server", 101), ("some-tool", 101),
    # null: refused by Autobahn (400) as it always was
    ("null", 400), ("http://evil.example", 403), ("http://127.0.0.1:12150", 101),
])
def test_the_handshake_accepts_origins_that_are_not_urls(origin, status):
    assert Daemon().peer(origin=origin).status == status


# Life Preserver: the date of the log line, in the original dialect only


def test_life_preserver_original_messages_begin_with_the_log_lines_date():
    line = "Fri Nov 27  10:00:00 UTC 2026: Creating snapshot on tank/data"
    assert date_of(line) == "Fri Nov 27 10:00:00 UTC 2026"
    args = map_line(line).event
    assert args == {"message": "New snapshot of tank/data", "priority": "1 - Information",
                    "class": "snapshot"}
    assert args.original == dict(args, message="Fri Nov 27 10:00:00 UTC 2026: New snapshot of tank/data")
    assert envelope.encode(args) == envelope.encode(dict(args))
    undated = map_line("Creating snapshot on tank/data").event
    assert type(undated) is dict and date_of("Creating snapshot") is None


def test_a_spec_queue_keeps_the_plain_send_event():
    """The hub's hottest path (once per subscriber and event) has no dialect test for
    spec queues: only an original queue swaps in its own send_event, and back."""
    queue = outbound(SPEC, [])
    assert "send_event" not in vars(queue)
    queue.dialect = ORIGINAL
    assert "send_event" in vars(queue)
    queue.dialect = SPEC
    assert "send_event" not in vars(queue)
