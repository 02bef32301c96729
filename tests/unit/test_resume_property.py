"""Resume as a property (hypothesis): events are published on two sources while clients
disconnect, resume, stall and overflow, the clock runs (retention small enough to expire)
and the daemon restarts. For every client, what it received is exactly the published
sequence, each event once, in order, except ranges announced by a gap.

The range a gap announces (README, "Resuming after a reconnect"): ``overflow`` is
``missed_from..missed_to``; ``expired`` is ``missed_from..head`` (the source's current
state follows, not the retained events ``first_available..head``); ``epoch_changed`` is
``1..head`` in the gap's (new) epoch, ``missed_from`` counting in the old one.
"""

import collections
import json
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.logger import globalLogPublisher

from sysadmd.channel.outbound import DROP, Outbound
from sysadmd.events import resume
from sysadmd.events.hub import EventHub
from sysadmd.events.retention import Retention
from sysadmd.protocol.framing import prepare_text

MAX_EXAMPLES = 1000
CLIENTS = 3
SOURCES = {"alpha": "alpha_frame", "beta": "beta_frame"}  # alpha replays its last event
SOURCE_OF = {frame: name for name, frame in SOURCES.items()}


class Client:
    """One client across its connections: what it was sent, decoded, and what it knows."""

    def __init__(self):
        self.outbound = None
        self.written = []
        self.received = collections.defaultdict(list)  # (source, epoch) -> [(seq, args)]
        self.announced = collections.defaultdict(list)  # (source, epoch) -> [(first, last)]
        self.last_seen = {}  # source -> (epoch, seq)
        self.expect = {}  # source -> the seq this connection must send next (None: any)

    def read(self, reasons):
        """Decode what the daemon wrote since the last read; check each connection's
        stream of a source is contiguous, overflow gaps included."""
        for prepared in self.written:
            frame = json.loads(prepared.payload)
            if frame["name"] == "gap":
                self._gap(frame["args"], reasons)
            elif "seq" in frame:
                source = SOURCE_OF[frame["name"]]
                seq, epoch = frame["seq"], frame["epoch"]
                expected = self.expect.get(source)
                assert expected is None or seq == expected, (source, seq, expected)
                self.expect[source] = seq + 1
                self.received[source, epoch].append((seq, frame["args"]))
                self.last_seen[source] = (epoch, seq)
        self.written.clear()

    def _gap(self, args, reasons):
        source, epoch, reason = args["source"], args["epoch"], args["reason"]
        reasons[reason] += 1
        assert 1 <= args["first_available"] <= args["head"] + 1, args
        if reason == "overflow":
            first, last = args["missed_from"], args["missed_to"]
            assert first <= last <= args["head"], args
            expected = self.expect.get(source)
            assert expected is None or first == expected, (args, expected)
            self.expect[source] = last + 1
        elif reason == "expired":
            first, last = args["missed_from"], args["head"]
            assert self.last_seen[source] == (epoch, first - 1), (args, self.last_seen)
            assert first < args["first_available"], args
            self.expect[source] = None
        else:
            assert reason == "epoch_changed", args
            assert self.last_seen[source][0] != epoch, args
            first, last = 1, args["head"]
            self.expect[source] = None
        self.announced[source, epoch].append((first, last))


class Daemon:
    """A hub over a (persisted or in-memory) retention, with the clients' connections."""

    def __init__(self, config, state_dir, clock):
        self.config, self.state_dir, self.clock = config, state_dir, clock
        self.published = {}  # (source, epoch, seq) -> args
        self.count = 0
        self.start()

    def start(self):
        retention_dir = self.state_dir if self.config["persist"] else None
        self.retention = Retention(self.clock, retention_dir, self.config["retain_events"],
                                   self.config["retain_seconds"], self.config["retain_bytes"])
        self.hub = EventHub(prepare_text, self.retention)
        self.hub.add_source("alpha", SOURCES["alpha"], replay_last=True)
        self.hub.add_source("beta", SOURCES["beta"], replay_last=False)

    def publish(self, source, pad):
        self.count += 1
        args = {"n": self.count, "pad": "x" * pad}
        self.hub.publish(source, args)
        log = self.hub.channel(source).log
        self.published[source, log.epoch, log.head] = args

    def connect(self, client):
        """A new connection subscribing to both sources, resuming where it can."""
        client.outbound = Outbound(client.written.append, prepare_text, self.config["limit"], DROP,
                                   lambda: None)
        args = []
        client.expect = {}
        for source in SOURCES:
            if source in client.last_seen:
                epoch, seq = client.last_seen[source]
                args.append({"name": source, "since": seq, "epoch": epoch})
                same = epoch == self.hub.channel(source).log.epoch
                client.expect[source] = seq + 1 if same else None
            else:
                args.append(source)
                client.expect[source] = None
        names, resumes = resume.parse(args)
        names, replay = self.hub.subscribe(client.outbound, names, resumes=resumes)
        replay()

    def disconnect(self, client):
        self.hub.drop(client.outbound)
        client.outbound.stopProducing()
        client.outbound = None

    def restart(self, torn):
        """Stop (connections lost, logs closed), maybe leave a torn line, start again."""
        before = {s: (self.hub.channel(s).log.epoch, self.hub.channel(s).log.head) for s in SOURCES}
        self.retention.close()
        if torn and self.config["persist"]:
            for source in SOURCES:
                with open(f"{self.state_dir}/events/{source}.log", "ab") as f:
                    f.write(b'999 1.000 {"namespace":"ev')
        self.start()
        if self.config["persist"]:  # a restart keeps each epoch and its numbering
            assert before == {s: (self.hub.channel(s).log.epoch, self.hub.channel(s).log.head)
                              for s in SOURCES}


configs = st.fixed_dictionaries({
    "persist": st.booleans(),
    "retain_events": st.integers(2, 8),
    "retain_seconds": st.sampled_from([5, 30]),
    "retain_bytes": st.sampled_from([1000, 100_000]),
    "limit": st.sampled_from([700, 1500, 4000]),
})
# A step: (kind, client, source, pad, count, seconds, torn); each kind reads what it needs.
KINDS = ["publish"] * 6 + ["burst"] * 2 + ["disconnect", "connect", "pause", "pause", "resume",
                                          "advance", "restart"]
step = st.tuples(st.sampled_from(KINDS), st.integers(0, CLIENTS - 1), st.sampled_from(sorted(SOURCES)),
                 st.integers(0, 150), st.integers(2, 8), st.sampled_from([1, 4, 11]), st.booleans())
scenarios = st.tuples(configs, st.integers(20, 70).flatmap(lambda n: st.lists(step, min_size=n, max_size=n)))


def run(config, steps, reasons):
    """Play ``steps`` against a daemon built from ``config``, then check every client."""
    failures = []

    def observer(event):  # the hub logs, and swallows, what a sink raised
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    with tempfile.TemporaryDirectory() as state_dir:
        clock = task.Clock()
        daemon = Daemon(config, state_dir, clock)
        clients = [Client() for _ in range(CLIENTS)]
        try:
            for client in clients:
                daemon.connect(client)
            for kind, who, source, pad, count, seconds, torn in steps:
                target = clients[who]
                if kind == "publish":
                    daemon.publish(source, pad)
                elif kind == "burst":
                    for _ in range(count):
                        daemon.publish(source, pad)
                elif kind == "advance":
                    clock.advance(seconds)
                elif kind == "restart":
                    connected = [c for c in clients if c.outbound is not None]
                    for client in connected:
                        daemon.disconnect(client)
                    daemon.restart(torn)
                    for client in connected:
                        daemon.connect(client)
                elif kind == "connect":
                    if target.outbound is None:
                        daemon.connect(target)
                elif target.outbound is not None:
                    {"disconnect": lambda: daemon.disconnect(target),
                     "pause": target.outbound.pauseProducing,
                     "resume": target.outbound.resumeProducing}[kind]()
                for client in clients:
                    client.read(reasons)
            # Settle: everyone connected and reading, one more event per source reaches all.
            for client in clients:
                if client.outbound is None:
                    daemon.connect(client)
                elif client.outbound.paused:
                    client.outbound.resumeProducing()
                client.read(reasons)
            for source in SOURCES:
                daemon.publish(source, 0)
            for client in clients:
                client.read(reasons)
                for source in SOURCES:
                    log = daemon.hub.channel(source).log
                    assert client.last_seen[source] == (log.epoch, log.head), (source, client.last_seen)
        finally:
            daemon.retention.close()
            globalLogPublisher.removeObserver(observer)
    assert failures == []
    for client in clients:
        check_client(client, daemon.published)


def check_client(client, published):
    """Per source and epoch: seqs strictly increasing, payloads as published, and every
    seq between the first and last received either received or announced by a gap."""
    for (source, epoch), events in client.received.items():
        seqs = [seq for seq, _ in events]
        assert all(a < b for a, b in zip(seqs, seqs[1:])), (source, seqs)
        for seq, args in events:
            assert published[source, epoch, seq] == args, (source, seq)
        got = set(seqs)
        ranges = client.announced[source, epoch]
        unexplained = [s for s in range(seqs[0], seqs[-1] + 1)
                       if s not in got and not any(lo <= s <= hi for lo, hi in ranges)]
        assert unexplained == [], (source, unexplained, ranges)


def test_resume_delivers_every_event_once_in_order_except_announced_gaps():
    """Random publishes, disconnects, resumes, stalls, clock steps and restarts: each
    client gets the published sequence exactly, each event once, in order, minus gaps."""
    examples = []
    reasons = collections.Counter()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(scenarios)
    def check(scenario):
        examples.append(scenario)
        run(*scenario, reasons)

    check()
    print(f"resume property: {len(examples)} examples, gaps seen: {dict(reasons)}")
    assert len(examples) >= MAX_EXAMPLES
    # The scenarios must reach every kind of gap, or the property says little.
    assert set(reasons) == {"overflow", "expired", "epoch_changed"}, reasons
