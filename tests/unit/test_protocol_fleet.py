"""The fleet's wire format: names that are one subject token, headers, presence,
the server-asserted sender, the credentials file."""

import json

import pytest

from sysadmd.protocol import fleet as wire


@pytest.mark.parametrize("name", ["nas1", "web-01", "db_2", "A" * 64])
def test_fleet_names_are_one_subject_token(name):
    assert wire.check_host(name) == name
    assert wire.events_subject(name, "dispatcher") == f"sysadm.{name}.events.dispatcher"


@pytest.mark.parametrize("name", ["", "nas1.example.org", "web*", "a>", "a b", "A" * 65, None])
def test_other_names_are_refused_everywhere_a_subject_is_made(name):
    for make in (wire.check_host, wire.presence_subject, wire.rpc_subject,
                 lambda n: wire.events_subject(n, "dispatcher")):
        with pytest.raises(ValueError):
            make(name)


def test_filters_and_defaults():
    assert wire.events_filter() == "sysadm.*.events.>"
    assert wire.events_filter("nas1", "system-state") == "sysadm.nas1.events.system-state"
    assert wire.host_from_hostname("nas1.example.org") == "nas1"
    assert wire.host_from_hostname("wéb 1") == "w-b-1"
    assert wire.host_of("sysadm.nas1.events.dispatcher") == "nas1" and wire.host_of("other") is None


def test_event_headers_say_where_the_source_stands_and_number_only_numbered_events():
    numbered = wire.event_headers("nas1", "dispatcher", "e1", 7)
    assert numbered == {"Sysadm-Host": "nas1", "Sysadm-Source": "dispatcher", "Sysadm-Epoch": "e1",
                        "Sysadm-Seq": "7", "Nats-Msg-Id": "nas1/dispatcher/e1/7"}
    gap = wire.event_headers("nas1", "dispatcher", "e2", 120, numbered=False)
    assert "Nats-Msg-Id" not in gap and wire.event_position(gap) == ("e2", 120)
    assert wire.event_position({}) is None and wire.event_position({"Sysadm-Epoch": "e", "Sysadm-Seq": "x"}) is None


def test_presence_is_up_until_three_intervals_pass_or_it_says_goodbye():
    message = json.loads(wire.presence("nas1", "nas1.example.org", "0.1.0", True, 100.0, 200.0, 10, {"priority": "3 - Warning"}))
    assert message["state"] == {"priority": "3 - Warning"} and message["since"] == 100.0
    assert wire.is_up(message, 230.0) and not wire.is_up(message, 231.0)
    goodbye = json.loads(wire.presence("nas1", "nas1", "0.1.0", False, 100.0, 200.0, 10))
    assert not wire.is_up(goodbye, 200.0)


def test_the_sender_is_read_from_the_servers_request_info_only():
    info = json.dumps({"acc": "SYSADM", "user": "ops", "kind": "Client"})
    assert wire.requester({wire.REQUEST_INFO: info}) == ("SYSADM", "ops")
    for headers in (None, {}, {wire.REQUEST_INFO: "{"}, {wire.REQUEST_INFO: json.dumps({"acc": "X"})},
                    {wire.REQUEST_INFO: json.dumps({"user": ""})}, {"user": "ops"}):
        assert wire.requester(headers) is None


def test_credentials_round_trip_and_mistakes_say_what():
    text = wire.format_credentials("nas1", "s3cret")
    assert wire.parse_credentials(text) == ("nas1", "s3cret")
    with pytest.raises(ValueError, match="no password line"):
        wire.parse_credentials("user nas1\n")
    with pytest.raises(ValueError, match="line 2"):
        wire.parse_credentials("user nas1\npasword x\n")
