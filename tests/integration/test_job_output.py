"""A job's output, read (``output``) and followed (``job-output``) through the real daemon,
with real child processes: live, resumed after a disconnect, after a kill -9 of the
daemon, and past ``max_output_bytes``."""

import os
import signal
import sys
import time

from tests.fixtures.gated_printer import line
from tests.integration.harness import BASE_CONFIG, Client
from tests.integration.procscan import kill_all

PRINTER = os.path.join(os.path.dirname(__file__), "..", "fixtures", "gated_printer.py")


def login(daemon, user="admin", password="admin-secret-pw"):
    """A client of ``daemon`` signed in as ``user``."""
    client = Client(daemon.url)
    assert client.login(user, password)["name"] == "response"
    return client


def printer(gate, total, before, interval=0.1):
    """The command line of the gated printer (see tests/fixtures/gated_printer.py)."""
    return f"{sys.executable} {os.path.abspath(PRINTER)} {gate} {total} {before} {interval}"


def expected(total):
    """Every stdout and stderr line of the printer, in order, with its stream."""
    return [("stderr" if n % 5 == 0 else "stdout", line(n)) for n in range(1, total + 1)]


def output(client, job_id, **args):
    """rpc/dispatcher output; returns the reply's args."""
    reply = client.call("rpc", "dispatcher", dict(args, action="output", job_id=job_id))
    assert reply["name"] == "response", reply
    return reply["args"]


def follow(client, job_id, offset=0):
    """Subscribe ``client`` to the job's output from ``offset``."""
    reply = client.call("events", "subscribe", [{"name": "job-output", "job_id": job_id, "offset": offset}])
    assert reply["name"] == "response" and reply["args"] == {"subscribe": ["job-output"]}, reply


class Received:
    """What a follower was sent, checked as it arrives: each event starts where the last
    ended (no byte twice, none missing)."""

    def __init__(self, offset=0):
        self.position = offset
        self.chunks = []
        self.events = []
        self.gaps = []

    def take(self, client, timeout=20):
        """Read one job_output (or gap) event; returns its args."""
        frame = client.next_event(timeout=timeout)
        if frame["name"] == "gap":
            args = frame["args"]
            assert args["missed_from"] == self.position, args
            self.gaps.append(args)
            self.position = args["missed_to"]
            return self.take(client, timeout)
        assert frame["name"] == "job_output", frame
        args = frame["args"]
        assert args["offset"] == self.position, (args["offset"], self.position)
        for chunk in args["chunks"]:
            assert chunk["offset"] == self.position
            self.position += len(chunk["data"].encode("utf-8"))
            self.chunks.append((chunk["command"], chunk["stream"], chunk["data"]))
        assert args["next_offset"] == self.position
        self.events.append(args)
        return args

    def until(self, client, done, timeout=30):
        """Read events until ``done(self)``."""
        deadline = time.monotonic() + timeout
        while not done(self):
            assert time.monotonic() < deadline, "timed out waiting for output"
            self.take(client, timeout=max(0.1, deadline - time.monotonic()))

    def text(self, stream=None):
        """The received text (of one stream)."""
        return "".join(data for _, s, data in self.chunks if stream in (None, s))

    @property
    def eof(self):
        """True once the final event came."""
        return bool(self.events) and self.events[-1]["eof"]


def merged(lines):
    """``lines`` as output returns them: adjacent text of one stream in one chunk."""
    chunks = []
    for stream, text in lines:
        if chunks and chunks[-1][0] == stream:
            chunks[-1] = (stream, chunks[-1][1] + text)
        else:
            chunks.append((stream, text))
    return chunks


def by_stream(lines, stream):
    return "".join(text for s, text in lines if s == stream)


def test_a_follower_sees_lines_while_the_job_runs_and_resumes_from_its_offset(daemon, tmp_path):
    """The first lines reach a follower while the job waits on a file; a follower that
    disconnects and comes back with its last offset gets every byte once."""
    gate = tmp_path / "gate"
    admin = login(daemon)
    viewer = login(daemon, "viewer", "viewer-secret-pw")
    try:
        reply = admin.call("rpc", "dispatcher", {"action": "run", "printer": printer(gate, 30, 5)})
        assert reply["args"] == {"started": ["printer"]}
        # A limited user follows, as it may read logs.
        follow(viewer, "printer")
        first = Received()
        first.until(viewer, lambda r: r.text().count("\n") >= 5)
        # Everything the command wrote before the gate, while it is still running.
        assert not gate.exists()
        assert first.events[-1]["state"] == "running" and not first.events[-1]["eof"]
        assert first.text("stdout") == by_stream(expected(5), "stdout")
        assert first.text("stderr") == line(5)
        assert all(command == 0 for command, _, _ in first.chunks)
        viewer.close()

        gate.touch()
        time.sleep(0.5)  # more output while nobody follows (not needed for correctness)
        again = login(daemon, "viewer", "viewer-secret-pw")
        try:
            follow(again, "printer", first.position)
            rest = Received(first.position)
            rest.until(again, lambda r: r.eof)
        finally:
            again.close()
        final = rest.events[-1]
        assert final["state"] == "finished" and final["return_codes"] == {"0": 0}
        whole = first.chunks + rest.chunks
        lines = expected(30)
        for stream in ("stdout", "stderr"):
            assert "".join(d for _, s, d in whole if s == stream) == by_stream(lines, stream)
        # Coalesced: fewer events than lines after the gate (a line every 100 ms, 100 ms batches
        # would allow one per line; the catch-up of the lines written meanwhile is one event).
        assert len(rest.events) < 25
        # output reads the same bytes, in order, with the streams interleaved as written.
        read = output(admin, "printer", offset=0, limit=1 << 20)
        assert read["offset"] == 0 and read["eof"] is True and read["dropped_bytes"] == 0
        assert [(c["stream"], c["data"]) for c in read["chunks"]] == merged(lines)
        assert read["next_offset"] == rest.position
    finally:
        admin.close()
        kill_all(str(gate))


def test_output_survives_a_kill_9_of_the_daemon(daemon, make_daemon, tmp_path):
    """kill -9 the daemon while a job prints: after the restart, output returns every byte
    written before the kill, and the job is interrupted."""
    gate = tmp_path / "never"
    admin = login(daemon)
    try:
        admin.call("rpc", "dispatcher", {"action": "run", "victim": printer(gate, 50, 12, 0.01)})
        deadline = time.monotonic() + 20
        while output(admin, "victim")["next_offset"] < len("".join(t for _, t in expected(12)).encode()):
            assert time.monotonic() < deadline, "the job never printed"
            time.sleep(0.05)
        admin.close()
        daemon.stop(signal.SIGKILL)
    finally:
        kill_all(str(gate))
    restarted = make_daemon()  # same state directory
    client = login(restarted)
    try:
        read = output(client, "victim")
        assert [(c["stream"], c["data"]) for c in read["chunks"]] == merged(expected(12))
        assert read["eof"] is True and read["state"] == "finished" and read["interrupted"] is True
        log = client.call("rpc", "dispatcher", {"action": "log", "job_id": "victim"})["args"]
        assert log["interrupted"] == "true"
        command = printer(gate, 50, 12, 0.01)
        # log reads the same file: the partial log of the command is no longer lost.
        assert log[command] == "".join(t for _, t in expected(12))
        # A follower of the finished job gets it all and the final event at once.
        follow(client, "victim")
        received = Received()
        received.until(client, lambda r: r.eof)
        assert received.text() == "".join(t for _, t in expected(12))
    finally:
        client.close()


LIMITED_OUTPUT = BASE_CONFIG + """
[dispatcher]
max_output_bytes = 2097152
output_batch_bytes = 65536
"""


def test_past_max_output_bytes_the_middle_is_dropped_and_followers_get_a_gap(make_daemon, tmp_path):
    """6 MiB of output with max_output_bytes = 2 MiB: the first 1 MiB and the newest
    output are kept; a follower from 0 gets the head, a gap naming the dropped range, then
    the rest; the bytes it gets are exactly those of the output at their offsets."""
    daemon = make_daemon(config=LIMITED_OUTPUT, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.start()
    client = login(daemon)
    size = 6 * 1024 * 1024
    # Lines of 64 bytes numbered by their offset: any byte's expected value is known.
    script = ("import sys\nw = sys.stdout.write\n"
              f"for n in range(0, {size}, 64): w('%063d\\n' % n)\n")
    path = tmp_path / "big.py"
    path.write_text(script)
    try:
        client.call("rpc", "dispatcher", {"action": "run", "big": f"{sys.executable} {path}"})
        deadline = time.monotonic() + 30
        while not output(client, "big", limit=1)["state"] == "finished":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        follow(client, "big")
        received = Received()
        received.until(client, lambda r: r.eof, timeout=60)
        assert len(received.gaps) == 1
        gap = received.gaps[0]
        assert gap["reason"] == "dropped" and gap["missed_from"] >= 1024 * 1024
        final = received.events[-1]
        assert final["dropped_bytes"] == gap["missed_to"] - gap["missed_from"]
        assert received.position == size
        kept = size - final["dropped_bytes"]
        assert 1024 * 1024 + 512 * 1024 <= kept <= 2 * 1024 * 1024
        # Every received byte is the output's byte at its offset.
        whole = "".join("%063d\n" % n for n in range(0, size, 64))
        head_end = gap["missed_from"]
        assert received.text() == whole[:head_end] + whole[gap["missed_to"]:]
        # output from inside the dropped range starts at the first kept byte.
        read = output(client, "big", offset=head_end + 10, limit=100)
        assert read["offset"] == gap["missed_to"] and read["chunks"][0]["data"] == whole[gap["missed_to"]:][:100]
    finally:
        client.close()


def test_output_and_job_output_errors(daemon):
    """Unknown jobs, bad offsets and unauthenticated clients get clear errors."""
    admin = login(daemon)
    anonymous = Client(daemon.url)
    try:
        reply = admin.call("rpc", "dispatcher", {"action": "output", "job_id": "nope"})
        assert reply["name"] == "error" and reply["args"]["code"] == 404
        reply = admin.call("rpc", "dispatcher", {"action": "output", "job_id": "x", "offset": -1})
        assert reply["args"]["code"] == 400
        reply = admin.call("events", "subscribe", [{"name": "job-output", "job_id": "nope"}])
        assert reply["name"] == "error" and reply["args"]["code"] == 404
        reply = admin.call("events", "subscribe", [{"name": "job-output", "job_id": "x", "bogus": 1}])
        assert reply["args"]["code"] == 400
        # A bad part fails the whole request: the good name is not subscribed either.
        reply = admin.call("events", "subscribe", ["dispatcher", {"name": "job-output", "job_id": "nope"}])
        assert reply["name"] == "error"
        admin.call("rpc", "dispatcher", {"action": "run", "done": "echo hello"})
        deadline = time.monotonic() + 10
        while not output(admin, "done")["eof"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reply = admin.call("rpc", "dispatcher", {"action": "output", "job_id": "done", "offset": 7})
        assert reply["args"]["code"] == 400 and "past the end" in reply["args"]["details"]
        reply = anonymous.call("rpc", "dispatcher", {"action": "output", "job_id": "done"})
        assert reply["name"] == "error" and reply["args"]["code"] == 401
        reply = anonymous.call("events", "subscribe", [{"name": "job-output", "job_id": "done"}])
        assert reply["name"] == "error" and reply["args"]["code"] == 401
        assert "Traceback" not in daemon.log_text()
    finally:
        admin.close()
        anonymous.close()
