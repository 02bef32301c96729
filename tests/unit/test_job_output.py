"""A job's output file (``sysadmd.dispatcher.output``), reading it (``output``) and
following it (``sysadmd.dispatcher.follow``), with the fake process reactor."""

import errno
import json
import os

import pytest
from zope.interface.verify import verifyObject

from sysadmd.dispatcher import follow as follow_module
from sysadmd.dispatcher import output as output_module
from sysadmd.dispatcher.output import (
    MAGIC,
    RECORD,
    STDERR,
    STDOUT,
    OutputFile,
    command_logs,
)
from sysadmd.dispatcher.outputs import OutputDirectory
from sysadmd.interfaces import IEventStream
from sysadmd.protocol.envelope import RequestError
from tests.unit.dispatcher_fakes import make_dispatcher, result_of

DAY = 86400.0


def text_of(piece):
    return [(c.command, c.stream, c.offset, c.data) for c in piece.chunks]


def test_chunks_are_addressed_by_offset_and_merged_per_command_and_stream(tmp_path):
    """Adjacent bytes of one command's stream come back as one chunk at its offset."""
    f = OutputFile.create(str(tmp_path / "1.out"))
    f.append(0, STDOUT, b"ab")
    f.append(0, STDOUT, b"cd")
    f.append(0, STDERR, b"E")
    f.append(1, STDOUT, b"xyz")
    assert f.end == 8 and f.dropped == 0
    assert text_of(f.read(0, 100)) == [(0, 1, 0, b"abcd"), (0, 2, 4, b"E"), (1, 1, 5, b"xyz")]
    # From the middle of a chunk, limited: offsets are raw bytes.
    piece = f.read(3, 3)
    assert (piece.offset, piece.next_offset) == (3, 6)
    assert text_of(piece) == [(0, 1, 3, b"d"), (0, 2, 4, b"E"), (1, 1, 5, b"x")]
    assert text_of(f.read(8, 10)) == [] and f.read(8, 10).next_offset == 8
    # Another reader (a restarted daemon) sees the same.
    again = OutputFile.open(str(tmp_path / "1.out"))
    assert again.end == 8 and text_of(again.read(0, 100)) == text_of(f.read(0, 100))
    assert [c.wire() for c in f.read(4, 1).chunks] == [{"command": 0, "stream": "stderr", "offset": 4, "data": "E"}]


def test_a_read_never_ends_inside_a_character_unless_final(tmp_path):
    """A limit or the written end inside a UTF-8 character moves the end back to its
    start; once the job ended (final) the bytes are given as they are."""
    f = OutputFile.create(str(tmp_path / "1.out"))
    euro = "€".encode()  # 3 bytes
    f.append(0, STDOUT, b"a" + euro[:2])
    piece = f.read(0, 100)
    assert piece.next_offset == 1 and piece.chunks[0].data == b"a"
    f.append(0, STDOUT, euro[2:] + b"b")
    piece = f.read(0, 2)
    assert piece.next_offset == 1
    piece = f.read(1, 100)
    assert piece.chunks[0].wire()["data"] == "€b" and piece.next_offset == 5
    g = OutputFile.create(str(tmp_path / "2.out"))
    g.append(0, STDOUT, b"a" + euro[:2])
    assert g.read(0, 100, final=True).next_offset == 3
    assert g.read(0, 100, final=True).chunks[0].wire()["data"] == "a\ufffd"


def test_a_record_torn_by_a_crash_is_ignored(tmp_path):
    """A record cut short (the daemon killed while writing) is left out; the ones before
    it are read."""
    path = str(tmp_path / "1.out")
    f = OutputFile.create(path)
    f.append(0, STDOUT, b"kept\n")
    f.close()
    with open(path, "ab") as raw:
        raw.write(RECORD.pack(5, 100, 0, STDOUT) + b"only part")
    again = OutputFile.open(path)
    assert again.end == 5 and text_of(again.read(0, 100)) == [(0, 1, 0, b"kept\n")]
    assert command_logs(path, 1, 100) == {0: ("kept\n", 0)}


def test_not_an_output_file_is_refused(tmp_path):
    path = tmp_path / "x.out"
    path.write_bytes(b"something else")
    with pytest.raises(OSError):
        OutputFile.open(str(path))


def numbered(size, width=16):
    """``size`` bytes of lines naming their own offset."""
    return b"".join(b"%0*d\n" % (width - 1, n) for n in range(0, size, width))


def test_past_max_bytes_the_middle_is_dropped_keeping_the_head_and_the_newest(tmp_path):
    """The head and at least half the budget of newest output stay, at their offsets; the
    hole is counted as dropped; a read inside it starts at the next kept byte."""
    path = str(tmp_path / "1.out")
    f = OutputFile.create(path, max_bytes=8192, head_bytes=1024)
    data = numbered(64 * 1024)
    for start in range(0, len(data), 1000):
        f.append(0, STDOUT, data[start:start + 1000])
        assert f.kept <= 8192 and f.end == min(start + 1000, len(data))
    assert f.end == len(data)
    assert f.kept + f.dropped == f.end
    assert f.kept >= 1024 + (8192 - 1024) // 2
    head = f.read(0, 1 << 20)
    assert head.offset == 0 and head.chunks[0].data == data[:head.next_offset]
    assert head.next_offset == 2000  # the first 1024 bytes, their last record whole
    tail = f.read(head.next_offset, 1 << 20)
    assert tail.offset == head.next_offset + f.dropped
    assert tail.chunks[0].data == data[tail.offset:] and tail.next_offset == len(data)
    # The file holds what was kept, nothing more (plus framing).
    assert os.path.getsize(path) < 8192 + 64 * RECORD.size + len(MAGIC)
    reopened = OutputFile.open(path)
    assert (reopened.end, reopened.dropped) == (f.end, f.dropped)
    # A reader holding the old file open while it is rewritten keeps a consistent copy:
    # every read after the rewrite finds the bytes at their offsets.
    assert not os.path.exists(path + ".tmp")


def test_a_failed_write_loses_only_its_bytes_counted_as_dropped(tmp_path, monkeypatch):
    """A full disk: the chunk is lost and counted; what follows is kept at its offset."""
    f = OutputFile.create(str(tmp_path / "1.out"))
    f.append(0, STDOUT, b"first ")
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output_module.os, "write", full)
    assert f.append(0, STDOUT, b"lost ").errno == errno.ENOSPC
    monkeypatch.setattr(output_module.os, "write", real_write)
    f.append(0, STDOUT, b"last")
    assert (f.end, f.dropped) == (15, 5)
    first = f.read(0, 100)
    assert text_of(first) == [(0, 1, 0, b"first ")]
    assert text_of(f.read(first.next_offset, 100)) == [(0, 1, 11, b"last")]


def test_command_logs_are_each_commands_tail_with_what_was_left_out(tmp_path):
    """Each command's stdout and stderr in order, its last ``cap`` bytes, and how many
    bytes of it came before."""
    path = str(tmp_path / "1.out")
    f = OutputFile.create(path)
    f.append(0, STDOUT, b"hello ")
    f.append(0, STDERR, b"oops ")
    f.append(0, STDOUT, b"world")
    f.append(2, STDOUT, b"third")
    assert command_logs(path, 3, 100) == {0: ("hello oops world", 0), 2: ("third", 0)}
    assert command_logs(path, 3, 7) == {0: ("s world", 9), 2: ("third", 0)}


# -- the dispatcher: output and job-output ------------------------------------------------


class Sink:
    """An outgoing queue that records frames and can stop taking them."""

    def __init__(self):
        self.frames = []
        self.paused = False
        self.queued_bytes = 0
        self.closed = False
        self.waiters = []

    def send_frame(self, frame):
        self.frames.append(frame)

    def send_payload(self, payload):
        self.frames.append(json.loads(payload))

    def when_drained(self, callback):
        self.waiters.append(callback)

    def resume(self):
        self.paused = False
        waiters, self.waiters = self.waiters, []
        for callback in waiters:
            callback()

    def events(self, name="job_output"):
        return [f["args"] for f in self.frames if f["name"] == name]

    def data(self):
        return "".join(c["data"] for e in self.events() for c in e["chunks"])


def follow(dispatcher, sink, job_id, offset=0):
    start = result_of(dispatcher.followers.follow(sink, {"name": "job-output", "job_id": job_id, "offset": offset}))
    start()


def test_the_followers_provide_the_stream_interface(tmp_path):
    _, dispatcher, _ = make_dispatcher(tmp_path)
    assert verifyObject(IEventStream, dispatcher.followers)
    assert dispatcher.followers.name == "job-output"


def test_output_reads_a_running_job_then_says_eof_with_return_codes(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(tmp_path)
    result_of(dispatcher.submit("j", ["echo first", "echo second"]))
    process = reactor.processes[0]
    process.write(b"out\n")
    process.write(b"err\n", stderr=True)
    read = result_of(dispatcher.read_output("j", 0, 100))
    assert read == {
        "job_id": "j", "offset": 0, "next_offset": 8, "eof": False, "dropped_bytes": 0, "state": "running",
        "chunks": [{"command": 0, "stream": "stdout", "offset": 0, "data": "out\n"},
                   {"command": 0, "stream": "stderr", "offset": 4, "data": "err\n"}],
    }
    process.exit(0)
    reactor.processes[1].write(b"two\n")
    reactor.processes[1].exit(3)
    read = result_of(dispatcher.read_output("j", 8, 100))
    assert read["eof"] is True and read["return_codes"] == {"0": 0, "1": 3}
    assert read["chunks"] == [{"command": 1, "stream": "stdout", "offset": 8, "data": "two\n"}]
    assert result_of(dispatcher.read_output("nope", 0, 100)) is None
    with pytest.raises(ValueError):
        result_of(dispatcher.read_output("j", 13, 100))


def test_log_of_a_running_and_a_finished_job_reads_the_whole_file(tmp_path):
    """Memory keeps only an event's tail (event_log_bytes); log has the whole log from the
    file (up to store_log_bytes), running and finished."""
    reactor, dispatcher, events = make_dispatcher(tmp_path, event_log_bytes=10, store_log_bytes=1000)
    result_of(dispatcher.submit("j", "cat"))
    process = reactor.processes[0]
    process.write(b"0123456789" * 5)
    assert result_of(dispatcher.details("j"))["cat"] == "0123456789" * 5
    process.exit(0)
    assert events[-1]["process_details"]["cat"] == "[... 40 bytes left out ...]\n0123456789"
    assert result_of(dispatcher.details("j"))["cat"] == "0123456789" * 5


def test_a_follower_gets_coalesced_events_then_the_final_one(tmp_path):
    """Less than a batch waits up to batch_ms; a full batch goes at once; the end sends
    the final event with eof and the return codes, and the follow ends."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path, output_batch_bytes=10, output_batch_ms=100)
    result_of(dispatcher.submit("j", "cat"))
    sink = Sink()
    follow(dispatcher, sink, "j")
    assert sink.frames == []
    process = reactor.processes[0]
    process.write(b"abc")
    process.write(b"de")
    assert sink.events() == []
    reactor.advance(0.099)
    assert sink.events() == []
    reactor.advance(0.001)
    assert [e["chunks"][0]["data"] for e in sink.events()] == ["abcde"]
    process.write(b"0123456789ABC")
    # A full batch at once, the rest within batch_ms.
    assert sink.events()[-1]["chunks"][0]["data"] == "0123456789"
    reactor.advance(0.1)
    assert sink.data() == "abcde0123456789ABC"
    process.write(b"!")
    process.exit(2)
    final = sink.events()[-1]
    assert final["eof"] is True and final["return_codes"] == {"0": 2} and final["state"] == "finished"
    assert sink.data() == "abcde0123456789ABC!"
    offsets = [(e["offset"], e["next_offset"]) for e in sink.events()]
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
    assert dispatcher.followers.count() == 0


def test_a_follower_that_stops_reading_is_not_sent_more_and_loses_nothing(tmp_path):
    """While the client's queue holds frames, nothing more is read; then the rest comes."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path, output_batch_bytes=4, output_batch_ms=100)
    result_of(dispatcher.submit("j", "cat"))
    sink = Sink()
    follow(dispatcher, sink, "j")
    sink.paused = True
    process = reactor.processes[0]
    for n in range(100):
        process.write(b"%03d\n" % n)
    reactor.advance(1)
    assert sink.frames == []
    # One wait for the drain, however often output arrived meanwhile.
    assert len(sink.waiters) == 1
    sink.resume()
    # A turn's worth of batches at once, the rest on the next turns, if the client takes them.
    assert len(sink.events()) == 8
    sink.paused = True
    reactor.advance(0)
    assert len(sink.events()) == 8 and len(sink.waiters) == 1
    process.exit(0)
    assert len(sink.events()) == 8
    while sink.waiters:
        sink.resume()
        reactor.advance(0)
    assert sink.data() == "".join("%03d\n" % n for n in range(100))
    assert sink.events()[-1]["eof"] is True


def test_following_a_pending_job_and_a_job_killed_while_pending(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(tmp_path, queues="no_queue:0 pkg_queue:1")
    result_of(dispatcher.submit("blocker", "cat", queue="pkg_queue"))
    result_of(dispatcher.submit("later", "cat", queue="pkg_queue"))
    result_of(dispatcher.submit("never", "cat", queue="pkg_queue"))
    waiting, killed = Sink(), Sink()
    follow(dispatcher, waiting, "later")
    follow(dispatcher, killed, "never")
    assert result_of(dispatcher.read_output("later", 0, 10))["state"] == "pending"
    dispatcher.kill(["never"])
    assert killed.events() == [{"job_id": "never", "offset": 0, "next_offset": 0, "chunks": [], "eof": True,
                                "dropped_bytes": 0, "state": "finished", "return_codes": {},
                                "killed": True}]
    reactor.processes[0].exit(0)
    reactor.processes[1].write(b"hi\n")
    reactor.processes[1].exit(0)
    assert waiting.data() == "hi\n" and waiting.events()[-1]["eof"] is True


def test_a_follower_of_a_dropped_range_gets_a_gap_naming_it(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(
        tmp_path, max_output_bytes=8192, head_bytes=1024, output_batch_bytes=1 << 20)
    result_of(dispatcher.submit("j", "cat"))
    data = numbered(64 * 1024)
    process = reactor.processes[0]
    for start in range(0, len(data), 1000):
        process.write(data[start:start + 1000])
    process.exit(0)
    sink = Sink()
    follow(dispatcher, sink, "j")
    gaps = sink.events("gap")
    assert len(gaps) == 1
    gap = gaps[0]
    assert gap["source"] == "job-output" and gap["job_id"] == "j" and gap["reason"] == "dropped"
    final = sink.events()[-1]
    assert final["eof"] and final["dropped_bytes"] == gap["missed_to"] - gap["missed_from"]
    assert sink.data().encode() == data[:gap["missed_from"]] + data[gap["missed_to"]:]


def test_unfollow_drop_and_subscribing_again(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(tmp_path, output_batch_bytes=1, output_batch_ms=0)
    result_of(dispatcher.submit("a", "cat"))
    result_of(dispatcher.submit("b", "true"))
    sink = Sink()
    follow(dispatcher, sink, "a")
    follow(dispatcher, sink, "b")
    follow(dispatcher, sink, "a", 0)  # again: still one follow of a
    assert dispatcher.followers.count() == 2
    dispatcher.followers.unfollow(sink, {"name": "job-output", "job_id": "a"})
    assert dispatcher.followers.count() == 1
    reactor.processes[0].write(b"for a\n")
    assert sink.frames == []
    dispatcher.followers.drop(sink)
    assert dispatcher.followers.count() == 0
    reactor.processes[1].write(b"for b\n")
    assert sink.frames == []


def test_bad_subscriptions_fail_and_follow_nothing(tmp_path):
    _, dispatcher, _ = make_dispatcher(tmp_path)
    sink = Sink()
    for item, code in [
        ({"name": "job-output"}, 400),
        ({"name": "job-output", "job_id": "x", "offset": -1}, 400),
        ({"name": "job-output", "job_id": "x", "offset": True}, 400),
        ({"name": "job-output", "job_id": "x", "since": 3}, 400),
        ({"name": "job-output", "job_id": "unknown"}, 404),
    ]:
        with pytest.raises(RequestError) as caught:
            result_of(dispatcher.followers.follow(sink, item))
        assert caught.value.code == code
    assert dispatcher.followers.count() == 0


def test_output_files_go_with_their_history_records(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(tmp_path, history_days=30)
    result_of(dispatcher.submit("old", "cat"))
    reactor.processes[0].write(b"x")
    reactor.processes[0].exit(0)
    files = os.listdir(tmp_path / "output")
    assert len(files) == 1
    reactor.advance(31 * DAY)
    assert os.listdir(tmp_path / "output") == []
    assert result_of(dispatcher.read_output("old", 0, 10)) is None


def test_reading_on_with_the_cursor_gives_what_a_fresh_search_gives(tmp_path):
    """A reader going on from its last slice's cursor, across merges, limits, a character
    split by the limit and a rewrite of the file, reads exactly what searching finds."""
    f = OutputFile.create(str(tmp_path / "1.out"), max_bytes=8192, head_bytes=1024)
    data = ("é" * 8000).encode()
    position, cursor, got = 0, None, b""
    for start in range(0, len(data), 700):
        f.append(start % 3, STDOUT if start % 2 else STDERR, data[start:start + 700])
        while True:
            piece = f.read(position, 333, cursor=cursor)
            fresh = f.read(position, 333)
            assert text_of(piece) == text_of(fresh) and piece.next_offset == fresh.next_offset
            if not piece.chunks:
                break
            got += b"".join(c.data for c in piece.chunks)
            position, cursor = piece.next_offset, piece.cursor
    # The file was rewritten on the way (stale cursors), and a reader keeping up lost nothing.
    assert f.dropped > 0
    assert got == data


def test_a_full_batch_is_not_held_back_by_the_timer_of_a_small_one(tmp_path):
    reactor, dispatcher, _ = make_dispatcher(tmp_path, output_batch_bytes=10, output_batch_ms=100)
    result_of(dispatcher.submit("j", "cat"))
    sink = Sink()
    follow(dispatcher, sink, "j")
    process = reactor.processes[0]
    process.write(b"abc")
    assert sink.events() == []
    process.write(b"0123456789")
    assert [e["chunks"][0]["data"] for e in sink.events()] == ["abc0123456"]
    reactor.advance(0.1)
    assert sink.data() == "abc0123456789"


def test_followers_that_keep_up_share_one_read_and_one_encoding(tmp_path, monkeypatch):
    """Two followers at the same offset get the same bytes, encoded once."""
    reactor, dispatcher, _ = make_dispatcher(tmp_path, output_batch_bytes=4, output_batch_ms=100)
    result_of(dispatcher.submit("j", "cat"))
    first, second = Sink(), Sink()
    follow(dispatcher, first, "j")
    follow(dispatcher, second, "j")
    encoded = []
    real = follow_module.envelope.encode
    monkeypatch.setattr(follow_module.envelope, "encode", lambda frame: encoded.append(1) or real(frame))
    process = reactor.processes[0]
    for n in range(10):
        process.write(b"%03d\n" % n)
    process.exit(0)
    assert first.frames == second.frames
    assert first.data() == "".join("%03d\n" % n for n in range(10)) and first.events()[-1]["eof"]
    assert len(encoded) == len(first.frames)


def test_opening_the_directory_makes_it_private_and_clears_cut_rewrites(tmp_path):
    directory = tmp_path / "state" / "output"
    outputs = OutputDirectory(str(directory))
    outputs.open()
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    (directory / "7.out").write_bytes(MAGIC)
    (directory / "7.out.tmp").write_bytes(b"half a rewrite")
    outputs.open()
    assert sorted(os.listdir(directory)) == ["7.out"]
