"""Each source's numbered log: numbering, the file across restarts, expiry, compaction."""

import os
import stat

import pytest
from twisted.internet import task

from sysadmd.events.retention import (
    CLOSED,
    ENTRY_OVERHEAD,
    MAGIC,
    Retention,
    SourceLog,
    boot_id,
)

BIG = 10**9


def payload(seq):
    return b'{"n":%d}' % seq


@pytest.fixture
def clock():
    clock = task.Clock()
    clock.advance(1000)
    return clock



def open_log(clock, path, retain_events=BIG, retain_seconds=BIG, retain_bytes=BIG):
    return SourceLog("ticker", path, clock, retain_events, retain_seconds, retain_bytes)


def fill(source_log, count):
    for _ in range(count):
        seq = source_log.head + 1
        source_log.append(seq, payload(seq))


def seqs(entries):
    return [entry[0] for entry in entries]


def file_lines(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def open_fds_on(path):
    """How many of this process's descriptors are open on ``path``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found += 1
        except OSError:
            continue
    return found


@pytest.fixture(params=["memory", "file"])
def where(request, tmp_path):
    """Where a log lives: nowhere (path None) or a file in a fresh directory."""
    return None if request.param == "memory" else str(tmp_path / "events" / "ticker.log")


def test_numbering_starts_at_one_and_entries_hold_time_and_payload(clock, where):
    """A new log has head 0 and first_available 1; appends are kept oldest first."""
    source_log = open_log(clock, where)
    assert (source_log.head, source_log.first_available, list(source_log.entries)) == (0, 1, [])
    assert len(source_log.epoch) == 16 and int(source_log.epoch, 16) >= 0
    fill(source_log, 2)
    clock.advance(5)
    fill(source_log, 1)
    assert list(source_log.entries) == [(1, 1000, payload(1)), (2, 1000, payload(2)), (3, 1005, payload(3))]
    assert (source_log.head, source_log.first_available) == (3, 1)
    assert source_log.bytes == sum(len(payload(s)) + ENTRY_OVERHEAD for s in (1, 2, 3))


def test_two_logs_get_different_epochs(clock, where):
    """Each new log gets its own random epoch."""
    other = None if where is None else where + ".other"
    assert open_log(clock, where).epoch != open_log(clock, other).epoch


def test_in_memory_retention_writes_no_file(clock, tmp_path):
    """Retention without a state dir keeps logs in memory only: nothing appears on disk."""
    retention = Retention(clock, None, 3, 60, BIG)
    source_log = retention.open("ticker")
    fill(source_log, 5)
    assert seqs(source_log.entries) == [3, 4, 5]
    assert retention.logs == {"ticker": source_log}
    retention.close()
    assert list(tmp_path.iterdir()) == []


def test_file_and_directory_are_private(clock, tmp_path):
    """The events directory is created 0700 and the log file 0600, also after a rewrite."""
    retention = Retention(clock, str(tmp_path), 2, BIG, BIG)
    fill(retention.open("ticker"), 3)
    path = tmp_path / "events" / "ticker.log"
    assert stat.S_IMODE(os.stat(tmp_path / "events").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    retention.close()
    Retention(clock, str(tmp_path)).open("ticker").close()  # a reopen rewrites the file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_reopen_keeps_epoch_head_and_entries(clock, tmp_path):
    """A restart on the same state dir keeps the epoch, the numbering and the entries."""
    retention = Retention(clock, str(tmp_path))
    first = retention.open("ticker")
    fill(first, 4)
    retention.close()
    second = Retention(clock, str(tmp_path)).open("ticker")
    assert (second.epoch, second.head) == (first.epoch, 4)
    assert [(s, p) for s, _, p in second.entries] == [(s, payload(s)) for s in (1, 2, 3, 4)]
    assert second.bytes == first.bytes
    fill(second, 1)
    assert second.head == 5
    second.close()


def test_close_releases_the_file(clock, tmp_path):
    """Retention.close closes every log's descriptor; the log stays readable."""
    retention = Retention(clock, str(tmp_path))
    fill(retention.open("a"), 1)
    fill(retention.open("b"), 1)
    path_a = tmp_path / "events" / "a.log"
    assert open_fds_on(path_a) == 1
    retention.close()
    assert open_fds_on(path_a) == 0 and open_fds_on(tmp_path / "events" / "b.log") == 0
    assert Retention(clock, str(tmp_path)).open("a").head == 1


@pytest.mark.parametrize("cut", [1, 5, "before-newline"])
def test_torn_last_line_is_dropped_and_numbering_continues(clock, tmp_path, cut):
    """A last line without its newline (killed mid-write) is cut; numbering goes on from the
    last whole line."""
    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path)
    fill(source_log, 3)
    source_log.close()
    # A killed daemon never writes the clean stop's last line: take it off.
    size = os.path.getsize(path) - len(CLOSED + b"\n")
    keep = size - 1 if cut == "before-newline" else size - len(b"3 1000.000 " + payload(3) + b"\n") + cut
    os.truncate(path, keep)
    reopened = open_log(clock, path)
    assert (reopened.epoch, reopened.head) == (source_log.epoch, 2)
    assert seqs(reopened.entries) == [1, 2]
    fill(reopened, 1)
    reopened.close()
    again = open_log(clock, path)
    assert [(s, p) for s, _, p in again.entries] == [(1, payload(1)), (2, payload(2)), (3, payload(3))]
    assert file_lines(path)[-1] == b""  # the file holds whole lines only


@pytest.mark.parametrize("header", [
    b"",
    b"not a log\n",
    MAGIC + b"0123456789ABCDEF 0\n",   # an epoch must be lower-case hex
    MAGIC + b"0123456789abcdef\n",     # no base
    MAGIC + b"0123456789abcdef -1\n",  # base not a number
    b"sysadmd-events 2 0123456789abcdef 0\n",
])
def test_unreadable_header_starts_a_new_epoch_with_a_warning(clock, tmp_path, log_events, header):
    """A header that cannot be read means the log is lost: a new epoch from seq 1, logged."""
    path = str(tmp_path / "events" / "ticker.log")
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(header + b"7 1000.000 " + payload(7) + b"\n")
    source_log = open_log(clock, path)
    assert (source_log.head, list(source_log.entries)) == (0, [])
    assert len(source_log.epoch) == 16 and source_log.epoch != "0123456789abcdef"
    assert any("cannot be read" in e.get("log_format", "") and e.get("path") == path for e in log_events)
    fill(source_log, 1)
    source_log.close()
    assert open_log(clock, path).epoch == source_log.epoch


def test_expiry_by_count(clock, where):
    """Beyond retain_events the oldest entries go; head is unchanged."""
    source_log = open_log(clock, where, retain_events=3)
    fill(source_log, 7)
    assert seqs(source_log.entries) == [5, 6, 7]
    assert (source_log.head, source_log.first_available) == (7, 5)


def test_expiry_by_seconds(clock, where):
    """Entries older than retain_seconds go at the next append or expire(); exactly that
    old stays."""
    source_log = open_log(clock, where, retain_seconds=10)
    fill(source_log, 2)
    clock.advance(10)
    fill(source_log, 1)
    assert seqs(source_log.entries) == [1, 2, 3]
    clock.advance(0.5)
    source_log.expire()
    assert seqs(source_log.entries) == [3]
    clock.advance(10)
    source_log.expire()
    assert (list(source_log.entries), source_log.bytes) == ([], 0)
    assert (source_log.head, source_log.first_available) == (3, 4)


def test_expiry_by_bytes(clock, where):
    """Payload bytes plus the per-entry overhead stay within retain_bytes."""
    per_entry = len(payload(1)) + ENTRY_OVERHEAD
    source_log = open_log(clock, where, retain_bytes=2 * per_entry + 1)
    fill(source_log, 5)
    assert seqs(source_log.entries) == [4, 5]
    assert source_log.bytes == 2 * per_entry
    source_log.append(6, b"x" * (3 * per_entry))  # bigger than the limit alone
    assert (list(source_log.entries), source_log.bytes, source_log.first_available) == ([], 0, 7)


def test_since_edge_cases(clock, where):
    """since(seq) gives the retained entries after seq: everything retained for an old seq,
    nothing at or past the head."""
    source_log = open_log(clock, where, retain_events=3)
    assert source_log.since(0) == []
    fill(source_log, 6)  # retained 4, 5, 6
    assert seqs(source_log.since(0)) == [4, 5, 6]
    assert seqs(source_log.since(2)) == [4, 5, 6]
    assert seqs(source_log.since(3)) == [4, 5, 6]
    assert seqs(source_log.since(4)) == [5, 6]
    assert seqs(source_log.since(5)) == [6]
    assert source_log.since(6) == []
    assert source_log.since(60) == []


def test_first_available_is_head_plus_one_when_nothing_is_kept(clock, where):
    """With every entry expired, first_available is head + 1 and since() is empty."""
    source_log = open_log(clock, where, retain_seconds=1)
    fill(source_log, 4)
    clock.advance(2)
    source_log.expire()
    assert (source_log.first_available, source_log.since(0), source_log.since(3)) == (5, [], [])


def test_file_is_compacted_once_it_holds_many_expired_entries(clock, tmp_path):
    """Appending far beyond retain_events rewrites the file: it never holds more than
    2 * retained + 1000 entries, and it reopens to the same log."""
    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path, retain_events=5)
    longest = 0
    for _ in range(2500):
        fill(source_log, 1)
        longest = max(longest, len(file_lines(path)) - 2) if source_log.head % 50 == 0 else longest
    entries_on_disk = len(file_lines(path)) - 2  # less the header and the final ""
    assert entries_on_disk < 1100 and longest <= 2 * 5 + 1001
    source_log.close()
    reopened = open_log(clock, path, retain_events=5)
    assert (reopened.epoch, reopened.head, seqs(reopened.entries)) == (source_log.epoch, 2500, [2496, 2497, 2498, 2499, 2500])
    assert len(file_lines(path)) == 5 + 2


def test_reopen_after_everything_expired_continues_after_the_old_head(clock, tmp_path):
    """With every entry expired (also while down), the header keeps the head: a reopen
    numbers on from it, in the same epoch."""
    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path, retain_seconds=10)
    fill(source_log, 3)
    source_log.close()
    clock.advance(11)  # expired while the daemon was down
    reopened = open_log(clock, path, retain_seconds=10)
    assert (reopened.epoch, reopened.head, list(reopened.entries)) == (source_log.epoch, 3, [])
    assert file_lines(path)[0] == MAGIC + source_log.epoch.encode() + b" 3 " + boot_id()
    reopened.close()
    again = open_log(clock, path, retain_seconds=10)
    fill(again, 1)
    assert (again.epoch, seqs(again.entries)) == (source_log.epoch, [4])


def test_unreadable_middle_line_leaves_a_contiguous_log(clock, tmp_path):
    """A damaged line inside the file is skipped at reopen, yet the retained entries stay
    contiguous (what since() and resume rely on): seq 3 after a lost seq 2 is not hidden."""
    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path)
    fill(source_log, 4)
    source_log.close()
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"\n2 1000.000 ", b"\nxx 1000.000 "))
    reopened = open_log(clock, path)
    assert reopened.head == 4
    assert seqs(reopened.entries) == list(range(reopened.first_available, 5))
    assert seqs(reopened.since(2)) == [3, 4]


def test_a_log_left_open_across_a_machine_restart_starts_a_new_epoch(clock, tmp_path, log_events):
    """A log not closed by a clean stop and written in an earlier boot (another boot id in
    its header) may have lost unsynced events: a new epoch, numbered from 1, with a
    warning; the same log closed cleanly keeps its epoch across the restart."""
    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path)
    fill(source_log, 3)
    source_log.close()
    with open(path, "rb") as f:
        data = f.read()
    header, _, body = data.partition(b"\n")
    earlier_boot = header.rsplit(b" ", 1)[0] + b" " + b"0" * 32
    with open(path, "wb") as f:
        f.write(earlier_boot + b"\n" + body)
    clean = open_log(clock, path)
    assert (clean.epoch, clean.head) == (source_log.epoch, 3)
    clean.close()
    with open(path, "rb") as f:
        header, _, body = f.read().partition(b"\n")
    assert body.endswith(CLOSED + b"\n")
    with open(path, "wb") as f:  # as if the machine lost power: no clean stop's line
        f.write(header.rsplit(b" ", 1)[0] + b" " + b"0" * 32 + b"\n" + body[: -len(CLOSED + b"\n")])
    lost = open_log(clock, path)
    assert lost.epoch != source_log.epoch and lost.head == 0
    assert any("not closed before the machine restarted" in e.get("log_format", "") for e in log_events)
    lost.close()



def test_a_log_that_cannot_be_written_goes_on_in_memory_under_a_new_epoch(clock, tmp_path, monkeypatch, log_events):
    """When an append fails (a full disk), the event is still numbered and kept, under a
    new epoch (the file no longer holds what clients get), with an error logged; once the
    file can be written again (after RETRY_SECONDS) it is rewritten whole and a restart
    finds the new epoch and every event since the failure."""
    from sysadmd.events import retention

    path = str(tmp_path / "events" / "ticker.log")
    source_log = open_log(clock, path)
    fill(source_log, 2)
    old_epoch = source_log.epoch
    real_write = os.write

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(retention.os, "write", full)
    seq, frame = source_log.record(lambda seq, epoch: b'{"seq":%d,"epoch":"%s"}' % (seq, epoch.encode()))
    assert seq == 3 and source_log.epoch != old_epoch
    assert frame == b'{"seq":3,"epoch":"%s"}' % source_log.epoch.encode()
    assert seqs(source_log.entries) == [3]
    assert any("cannot be written" in e.get("log_format", "") for e in log_events)
    monkeypatch.setattr(retention.os, "write", real_write)
    clock.advance(retention.RETRY_SECONDS - 1)
    fill(source_log, 1)  # too soon to retry: memory only
    clock.advance(2)
    fill(source_log, 1)  # retried: the file is whole again
    source_log.close()
    reopened = open_log(clock, path)
    assert (reopened.epoch, seqs(reopened.entries)) == (source_log.epoch, [3, 4, 5])
    reopened.close()
