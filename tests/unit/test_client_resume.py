"""``sysadmd.client.resume``: positions, the lines gap frames become, heads checks."""

import pytest

from sysadmd.client.resume import Positions, parse_since


def gap_args(reason, missed_from, first_available, head, **more):
    return dict(source="dispatcher", epoch="e1", missed_from=missed_from,
                first_available=first_available, head=head, reason=reason, **more)


def test_a_source_is_subscribed_by_name_until_a_position_is_known():
    """No position: the name; a position: since, with the epoch only when known."""
    positions = Positions({"ticker": (5, None)})
    assert positions.subscription("dispatcher") == "dispatcher"
    assert positions.subscription("ticker") == {"name": "ticker", "since": 5}
    positions.accept({"name": "ticker", "seq": 6, "epoch": "e1"}, "ticker")
    assert positions.subscription("ticker") == {"name": "ticker", "since": 6, "epoch": "e1"}


@pytest.mark.parametrize("args, line", [
    (gap_args("expired", 120, 121, 900), "dispatcher: missed event 120 (expired: the daemon keeps only 121-900)"),
    (gap_args("expired", 120, 901, 900), "dispatcher: missed events 120-900 (expired: the daemon keeps none)"),
    (gap_args("reset", 120, 1, 3), "dispatcher: missed events from 120 (reset); showing its current state"),
    ({"source": "dispatcher", "reason": "expired"},
     "dispatcher: the daemon says events were missed (expired); it sent no usable numbers"),
])
def test_gap_lines_for_edge_cases(args, line):
    """One event, nothing kept, an unknown reason and missing numbers each give one clear
    line, and none of them asks to fetch anything."""
    assert Positions().gap(args) == (line, False)


def test_after_a_gap_the_next_numbered_event_is_the_new_position():
    """After an expired gap the state event (seq = head) is shown once, then positions
    move on from it."""
    positions = Positions({"dispatcher": (119, "e1")})
    positions.gap(gap_args("expired", 120, 341, 900))
    frame = {"name": "dispatcher", "seq": 900, "epoch": "e1"}
    assert positions.accept(frame, "dispatcher") is True
    assert positions.accept(frame, "dispatcher") is False
    assert positions.subscription("dispatcher") == {"name": "dispatcher", "since": 900, "epoch": "e1"}


def test_heads_of_sources_without_a_position_or_not_numbers_are_ignored():
    """Only a known position can be behind; odd heads frames change nothing."""
    positions = Positions({"ticker": (5, "e1")})
    for heads in ({"dispatcher": 9}, {"ticker": "9"}, ["ticker"], {"dispatcher": 9}):
        assert positions.behind(heads) == []
    assert positions.behind({"ticker": 9}) == []
    assert positions.behind({"ticker": 9}) == [
        ("ticker", "ticker: events 6-9 never arrived (the daemon is at 9); fetching them again")]


def test_since_accepts_an_optional_epoch():
    """SOURCE=SEQ and SOURCE=SEQ@EPOCH; a message naming the format otherwise."""
    assert parse_since("life-preserver=12") == ("life-preserver", 12, None)
    assert parse_since("dispatcher=0@9f1c2a") == ("dispatcher", 0, "9f1c2a")
    with pytest.raises(ValueError, match=r"'dispatcher:5' is not SOURCE=SEQ or SOURCE=SEQ@EPOCH \(e.g. dispatcher=812\)"):
        parse_since("dispatcher:5")
