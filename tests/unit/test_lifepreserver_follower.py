"""LogFollower on real files: complete lines, truncation, rotation, restart."""

import os
import shutil

import pytest

from sysadmd.lifepreserver.follower import LogFollower


def line(n):
    return f"Fri Nov 27 10:00:{n:02d} UTC 2026: Creating snapshot on tank/ds{n}"


@pytest.fixture
def log(tmp_path):
    return tmp_path / "lpreserver.log"


def append(path, text):
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def follower_for(path, **kwargs):
    return LogFollower(str(path), str(path) + ".old", **kwargs)


def test_first_start_skips_existing_lines_but_not_a_partial_one(log):
    append(log, line(1) + "\n" + line(2) + "\nhalf")
    follower = follower_for(log)
    assert follower.read_lines() == []
    append(log, " a line\n" + line(3) + "\n")
    assert follower.read_lines() == ["half a line", line(3)]


def test_from_start_reads_everything(log):
    append(log, line(1) + "\n")
    assert follower_for(log, from_end=False).read_lines() == [line(1)]


def test_only_complete_lines_are_returned(log):
    log.write_text("")
    follower = follower_for(log)
    append(log, line(1)[:10])
    assert follower.read_lines() == []
    append(log, line(1)[10:])
    assert follower.read_lines() == []
    append(log, "\r\n" + line(2)[:5])
    assert follower.read_lines() == [line(1)]
    append(log, line(2)[5:] + "\n")
    assert follower.read_lines() == [line(2)]
    assert follower.read_lines() == []


def test_a_missing_file_is_read_from_its_start_when_it_appears(log):
    follower = follower_for(log)
    assert follower.read_lines() == []
    append(log, line(1) + "\n")
    assert follower.read_lines() == [line(1)]


def test_truncation_starts_over(log):
    append(log, line(1) + "\n" + line(2) + "\n")
    follower = follower_for(log)
    append(log, line(3) + "\n")
    assert follower.read_lines() == [line(3)]
    log.write_text(line(4) + "\n")
    assert follower.read_lines() == [line(4)]


def test_rewritten_file_longer_than_the_offset_is_noticed(log):
    append(log, line(1) + "\n")
    follower = follower_for(log, from_end=False)
    assert follower.read_lines() == [line(1)]
    # Truncated and regrown past our offset between two reads, same inode.
    with open(log, "r+", encoding="utf-8") as f:
        f.truncate(0)
        f.write(line(5) + "\n" + line(6) + "\n")
    assert follower.read_lines() == [line(5), line(6)]


def test_lpreserver_rotation_loses_nothing(log):
    """Copy to .old, truncate, start with "Rotate Logfile": unread lines come from .old."""
    append(log, line(1) + "\n")
    follower = follower_for(log)
    append(log, line(2) + "\n" + line(3) + "\n")
    shutil.copy(log, str(log) + ".old")
    with open(log, "w", encoding="utf-8") as f:
        f.write("Fri Nov 27 11:00:00 UTC 2026: Rotate Logfile\n" + line(4) + "\n")
    assert follower.read_lines() == [
        line(2), line(3), "Fri Nov 27 11:00:00 UTC 2026: Rotate Logfile", line(4)
    ]
    append(log, line(5) + "\n")
    assert follower.read_lines() == [line(5)]


def test_a_stale_old_file_is_not_read(log):
    (log.parent / "lpreserver.log.old").write_text("ancient\n" * 50)
    append(log, line(1) + "\n")
    follower = follower_for(log, from_end=False)
    assert follower.read_lines() == [line(1)]
    log.write_text(line(2) + "\n")
    assert follower.read_lines() == [line(2)]


def test_rename_rotation_loses_nothing(log):
    append(log, line(1) + "\n")
    follower = follower_for(log)
    append(log, line(2) + "\n")
    os.rename(log, str(log) + ".old")
    append(log, line(3) + "\n")
    assert follower.read_lines() == [line(2), line(3)]


def test_deleted_then_recreated(log):
    append(log, line(1) + "\n")
    follower = follower_for(log)
    os.unlink(log)
    assert follower.read_lines() == []
    append(log, line(2) + "\n")
    assert follower.read_lines() == [line(2)]


def test_restart_from_a_saved_position_neither_replays_nor_loses(log):
    append(log, line(1) + "\n")
    first = follower_for(log)
    append(log, line(2) + "\n" + line(3)[:7])
    assert first.read_lines() == [line(2)]
    saved = first.position()
    # Down: the partial line is completed and more is written.
    append(log, line(3)[7:] + "\n" + line(4) + "\n")
    second = follower_for(log, position=saved)
    assert second.read_lines() == [line(3), line(4)]


def test_restart_after_a_rotation_while_down(log):
    append(log, line(1) + "\n")
    first = follower_for(log)
    append(log, line(2) + "\n")
    assert first.read_lines() == [line(2)]
    saved = first.position()
    append(log, line(3) + "\n")
    shutil.copy(log, str(log) + ".old")
    log.write_text("Rotate Logfile\n" + line(4) + "\n")
    second = follower_for(log, position=saved)
    assert second.read_lines() == [line(3), "Rotate Logfile", line(4)]


def test_max_bytes_reads_in_chunks_with_more_set(log):
    log.write_text("")
    follower = follower_for(log, max_bytes=100)
    lines = [f"line {n:03d} " + "x" * 20 for n in range(20)]
    append(log, "\n".join(lines) + "\n")
    got = []
    while True:
        got += follower.read_lines()
        if not follower.more:
            break
    assert got == lines


def test_an_overlong_line_does_not_stall(log):
    log.write_text("")
    follower = follower_for(log, max_bytes=64)
    append(log, "y" * 100 + "\nshort\n")
    got = []
    for _ in range(5):
        got += follower.read_lines()
    assert "".join(got[:-1]) == "y" * 100 and got[-1] == "short"
