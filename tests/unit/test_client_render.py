"""What ``sysadm`` prints for each kind of event (shapes from the events reference), and
its tables."""

import re
import time

import pytest

from sysadmd.client import render

WHEN = time.mktime((2024, 5, 1, 12, 30, 5, 0, 0, -1))
STAMP = "2024-05-01 12:30:05"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def event(name, args):
    return {"namespace": "events", "name": name, "id": "none", "args": args}


RUNNING = {
    "state": "running",
    "process_id": "job7",
    "process_details": {
        "state": "running",
        "process_id": "job7",
        "time_started": "2024-05-01T12:30:00.000+02:00",
        "cmd_list": ["pkg update", "pkg upgrade -y"],
        "pkg update": "Updating...\n",
        "return_codes/pkg update": "0",
        "current_cmd": "pkg upgrade -y",
    },
}
FINISHED = {
    "state": "finished",
    "process_id": "job7",
    "process_details": {
        "state": "finished",
        "process_id": "job7",
        "time_started": "2024-05-01T12:30:00.000+02:00",
        "time_finished": "2024-05-01T12:31:00.000+02:00",
        "cmd_list": ["pkg update", "pkg upgrade -y"],
        "pkg update": "Updating...\n",
        "pkg upgrade -y": "done\n",
        "return_codes/pkg update": "0",
        "return_codes/pkg upgrade -y": "2",
    },
}
SYSTEM_STATE = {
    "hostname": "nas1",
    "hostnamechanged": "true",
    "zpools": {
        "tank": {"size": "107G", "alloc": "13.1G", "free": "93.9G", "frag": "6%", "expandsz": "-",
                 "dedup": "1.00x", "altroot": "-", "capacity": "12%", "health": "ONLINE",
                 "priority": "0 - Information"},
        "backup": {"size": "1T", "alloc": "950G", "free": "74G", "frag": "30%", "expandsz": "-",
                   "dedup": "1.00x", "altroot": "-", "capacity": "92%", "health": "DEGRADED",
                   "priority": "9 - Urgent"},
    },
    "priority": "9 - Urgent",
}


def line(name, args, colour=False):
    return render.event_line(event(name, args), when=WHEN, colour=colour)


def columns(text):
    """time, source, priority, message of an uncoloured line."""
    match = re.match(r"(\S+ \S+)  (\S+)\s+(.{15})  (.*)\Z", text)
    assert match, text
    return match.group(1), match.group(2), match.group(3).strip(), match.group(4)


def test_dispatcher_pending_line_names_the_job_and_state():
    assert columns(line("dispatcher", {"state": "pending", "process_id": "job7"})) == (
        STAMP, "dispatcher", "-", "job job7 pending")


def test_dispatcher_running_line_shows_the_current_command_and_its_position():
    assert columns(line("dispatcher", RUNNING))[3] == "job job7 running pkg upgrade -y (2/2)"


def test_dispatcher_finished_line_shows_the_last_return_code_and_flags():
    assert columns(line("dispatcher", FINISHED))[3] == "job job7 finished (exit 2)"
    killed = {"state": "finished", "process_id": "k",
              "process_details": {"state": "finished", "process_id": "k", "cmd_list": ["sleep 60"],
                                  "return_codes/sleep 60": "-15", "killed": "true"}}
    assert columns(line("dispatcher", killed))[3] == "job k finished (exit -15, killed)"
    never = {"state": "finished", "process_id": "p",
             "process_details": {"state": "finished", "process_id": "p", "cmd_list": ["true"], "killed": "true"}}
    assert columns(line("dispatcher", never))[3] == "job p finished (no command ran, killed)"


def test_dispatcher_class_event_shows_its_event_system():
    args = dict(RUNNING, event_system="sysadm/pkg", extra_field="x")
    assert columns(line("dispatcher", args))[3] == "[sysadm/pkg] job job7 running pkg upgrade -y (2/2)"


def test_life_preserver_line_has_priority_class_and_message():
    args = {"message": "snapshot tank@auto-1 created", "priority": "3 - Warning", "class": "snapshot"}
    assert columns(line("life_preserver", args)) == (
        STAMP, "life-preserver", "3 - Warning", "[snapshot] snapshot tank@auto-1 created")


def test_system_state_line_has_host_pools_and_overall_priority():
    assert columns(line("system_state", SYSTEM_STATE)) == (
        STAMP, "system-state", "9 - Urgent",
        "host nas1 (host name changed): backup DEGRADED 92%, tank ONLINE 12%")


def test_system_state_without_top_level_priority_uses_the_highest_pool():
    args = {k: v for k, v in SYSTEM_STATE.items() if k != "priority"}
    assert columns(line("system_state", args))[2] == "9 - Urgent"
    assert columns(line("system_state", {"hostname": "h", "zpools": {}}))[3] == "host h: no pools"


def test_bridge_dropped_and_plugin_events():
    assert columns(line("bridge", {"available_connections": ["a1", "b2"]}))[3] == "available connections: a1, b2"
    assert columns(line("dropped", {"count": 12}))[3] == "12 events were dropped (this client read too slowly)"
    assert columns(line("ticker", {"n": 3, "pad": ""})) == (STAMP, "ticker", "-", '{"n":3,"pad":""}')
    assert columns(line("uptime", {"message": "up 3 days", "priority": "1 - Information"}))[2:] == (
        "1 - Information", "up 3 days")


@pytest.mark.parametrize("priority, code", [
    ("1 - Information", "32"), ("4 - Warning", "33"), ("7 - Critical", "31"), ("10 - Urgent", "1;37;41"),
    ("5/warning", "33"), ("8", "31"),
])
def test_priorities_are_coloured_by_category_only_when_asked(priority, code):
    args = {"message": "m", "priority": priority, "class": "snapshot"}
    coloured = line("life_preserver", args, colour=True)
    assert f"\x1b[{code}m{priority}" in coloured
    assert ANSI.sub("", coloured) == line("life_preserver", args)
    assert "\x1b" not in line("life_preserver", args)


def test_unknown_priority_is_not_coloured():
    assert "\x1b" not in line("life_preserver", {"message": "m", "priority": "soon"}, colour=True)


def test_state_table_lists_pools_with_health_capacity_and_priority():
    text = render.state_text(SYSTEM_STATE)
    lines = text.splitlines()
    assert lines[0] == "hostname: nas1 (changed)"
    assert lines[1] == "priority: 9 - Urgent"
    assert lines[3].split() == ["POOL", "HEALTH", "CAPACITY", "SIZE", "ALLOC", "FREE", "PRIORITY"]
    assert lines[4].split() == ["backup", "DEGRADED", "92%", "1T", "950G", "74G", "9", "-", "Urgent"]
    assert lines[5].split() == ["tank", "ONLINE", "12%", "107G", "13.1G", "93.9G", "0", "-", "Information"]
    # columns line up
    assert lines[4].index("92%") == lines[3].index("CAPACITY") == lines[5].index("12%")


def test_state_table_colours_keep_the_columns_aligned():
    plain = render.state_text(SYSTEM_STATE)
    coloured = render.state_text(SYSTEM_STATE, colour=True)
    assert "\x1b[1;37;41m9 - Urgent\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == plain


def test_state_without_pools_says_so():
    assert render.state_text({"hostname": "h", "zpools": {}, "priority": "0 - Information"}).splitlines() == [
        "hostname: h", "priority: 0 - Information", "no ZFS pools"]


def test_jobs_table_orders_running_before_pending_by_position():
    reply = {"jobs": {"pkg_queue": {"b": {"commands": ["pkg upgrade"], "state": "pending", "queue_position": "2"},
                                    "a": {"commands": ["pkg update"], "state": "running", "queue_position": "0"},
                                    "c": {"commands": ["x"], "state": "pending", "queue_position": "1"}},
                      "no_queue": {}}}
    lines = render.jobs_text(reply).splitlines()
    assert lines[0].split() == ["ID", "QUEUE", "STATE", "POSITION", "COMMANDS"]
    assert [l.split()[0] for l in lines[1:]] == ["a", "c", "b"]
    assert render.jobs_text({"jobs": {"no_queue": {}}}) == "no jobs pending or running"


def test_history_table_shows_exit_and_flags():
    reply = {"history": [
        {"process_id": "k", "queue": "no_queue", "state": "finished", "time_started": "t1", "time_finished": "t2",
         "cmd_list": ["sleep 60"], "return_codes/sleep 60": "-15", "killed": "true"},
    ]}
    lines = render.history_text(reply).splitlines()
    assert lines[1].split() == ["k", "no_queue", "t1", "t2", "-15", "killed", "sleep", "60"]
    assert render.history_text({"history": []}) == "no finished jobs"


def test_log_text_shows_each_command_output_and_code():
    text = render.log_text(FINISHED["process_details"])
    assert text.splitlines() == [
        "job job7: finished",
        "time started: 2024-05-01T12:30:00.000+02:00",
        "time finished: 2024-05-01T12:31:00.000+02:00",
        "$ pkg update", "Updating...", "[exit 0]",
        "$ pkg upgrade -y", "done", "[exit 2]",
    ]


def test_log_text_marks_commands_that_did_not_run():
    details = {"state": "finished", "process_id": "j", "cmd_list": ["false", "echo never"],
               "return_codes/false": "1"}
    assert render.log_text(details).splitlines()[-2:] == ["$ echo never", "[not run]"]
