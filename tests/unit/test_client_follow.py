"""Streaming a job's output from its events: only what is new is printed, including
across logs the daemon capped with a marker."""

import pytest

from sysadmd.client.follow import JobFollower, exit_status, new_output, split_log


def marker(n):
    return f"[... {n} bytes left out ...]\n"


def test_only_the_new_part_of_a_growing_log_is_new():
    assert new_output(0, "one\n") == ("one\n", 4, 0)
    assert new_output(4, "one\ntwo\n") == ("two\n", 8, 0)
    assert new_output(8, "one\ntwo\n") == ("", 8, 0)


def test_positions_count_bytes_so_multibyte_text_is_continued_exactly():
    text = "héllo\n"
    printed = len(text.encode())
    assert new_output(printed, text + "wörld\n") == ("wörld\n", printed + 7, 0)


def test_a_capped_log_continues_where_the_last_print_ended():
    # 100 bytes were printed; the new event cut the first 90 and keeps the tail from byte 90.
    full = "".join(f"{i:09d}\n" for i in range(20))  # 200 bytes
    assert new_output(100, marker(90) + full[90:]) == (full[100:], 200, 0)
    assert split_log(marker(90) + full[90:]) == (90, full[90:].encode())


def test_output_lost_to_the_cap_is_reported_not_guessed():
    full = "x" * 50 + "y" * 50
    assert new_output(20, marker(50) + full[50:]) == ("y" * 50, 100, 30)


def test_a_log_shorter_than_what_was_printed_prints_nothing():
    assert new_output(10, "short") == ("", 10, 0)


def details(state, logs, codes=None, current=None, **flags):
    commands = list(logs)
    d = {"state": state, "process_id": "j", "cmd_list": commands}
    d.update({c: text for c, text in logs.items() if text is not None})
    d.update({"return_codes/" + c: str(code) for c, code in (codes or {}).items()})
    if current:
        d["current_cmd"] = current
    d.update({k: "true" for k in flags})
    return {"state": state, "process_id": "j", "process_details": d}


def follow(events):
    out, notes = [], []
    follower = JobFollower("j", out.append, notes.append)
    done = [follower.event(e) for e in events]
    return follower, "".join(out), notes, done


def test_follower_streams_each_command_once_in_order_and_stops_at_finished():
    events = [
        {"state": "pending", "process_id": "j"},
        details("running", {"echo a": "a\n", "sh b": None}, current="echo a"),
        details("running", {"echo a": "a\n", "sh b": "b1\n"}, {"echo a": 0}, current="sh b"),
        details("running", {"echo a": "a\n", "sh b": "b1\nb2\n"}, {"echo a": 0}, current="sh b"),
        details("finished", {"echo a": "a\n", "sh b": "b1\nb2\nb3\n"}, {"echo a": 0, "sh b": 4}),
    ]
    follower, out, notes, done = follow(events)
    assert out == "a\nb1\nb2\nb3\n"
    assert notes == ["$ echo a", "$ sh b"]
    assert done == [False, False, False, False, True]
    assert follower.return_code == 4 and follower.flags == []


def test_follower_ignores_other_jobs_and_does_not_label_single_commands():
    other = details("finished", {"echo z": "z\n"}, {"echo z": 0})
    other["process_id"] = other["process_details"]["process_id"] = "other"
    follower, out, notes, done = follow([other, details("finished", {"echo a": "a\n"}, {"echo a": 0})])
    assert out == "a\n" and notes == [] and done == [False, True]


def test_follower_reports_a_gap_in_a_capped_log():
    events = [
        details("running", {"yes": "y\n" * 5}, current="yes"),
        details("finished", {"yes": marker(100) + "y\n" * 3}, {"yes": -15}, killed=True),
    ]
    follower, out, notes, _ = follow(events)
    assert out == "y\n" * 8
    assert notes == ["[... 90 bytes of output not shown ...]"]
    assert follower.return_code == -15 and follower.flags == ["killed"]


def test_a_job_killed_while_pending_has_no_return_code():
    follower, out, _, done = follow([details("finished", {"sleep 1": None}, killed=True)])
    assert done == [True] and out == "" and follower.return_code is None


@pytest.mark.parametrize("code, status", [(0, 0), (3, 3), (255, 255), (300, 255), (-1, 129), (-9, 137), (-15, 143), (-200, 255)])
def test_exit_status_maps_return_codes_like_a_shell(code, status):
    assert exit_status(code) == status
