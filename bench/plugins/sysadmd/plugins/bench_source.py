"""The ``bench`` event source: system_state-shaped events at a controlled rate.

Installed out of tree, as a third party would: ``bench/plugins`` goes on the daemon's
PYTHONPATH (this directory has no ``__init__.py``). Every event is shaped like a
``system_state`` event, with a send timestamp and a sequence number in front::

    {"t": <time.monotonic_ns() at publish>, "n": <1, 2, ...>, "hostname": "...",
     "hostnamechanged": "false", "zpools": {"<pool>": {...}, ...}, "priority": "..."}

``t`` is CLOCK_MONOTONIC, the clock Node's ``process.hrtime`` reads too, so a load client
on the same machine gets the delivery latency by subtraction. Published at a rate, ``t``
is when the event was due on the schedule (the run's start plus ``k / rate``), so time
spent behind schedule counts; at saturation it is the moment of publishing.

Pacing (the same :class:`Pacer` drives the bench/baselines servers, so every server
publishes the same events on the same schedule):

- ``rate`` > 0: events are due at ``rate`` per second from the start of a run; each
  wake-up publishes every event due by then (so an overloaded server catches up in
  batches, as a real one would), then sleeps until the next is due.
- ``rate`` = 0: as fast as possible, for saturation: ``burst`` events per reactor turn,
  one turn after another (``callLater(0)``, so the reactor writes to the sockets between
  bursts).

A run ends after ``count`` events or ``duration`` seconds (0 = no limit). With
``control`` set the source stays idle until that file exists and then follows the JSON
object in it (``{"run": <any>, "rate": .., "burst": .., "count": .., "duration": ..}``,
missing keys from the config), starting a new run whenever the file's contents change; a
``"rate"`` of -1 stops the current run. ``bench/run.py`` drives it that way, so one daemon
and one set of subscribers serve several measurements.
"""

import json
import os
import time

from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from sysadmd.config.options import Option, integer, number, string
from sysadmd.interfaces import IEventSource, IEventSourceFactory

FRAME_NAME = "bench"
CONTROL_POLL = 0.05
SETTINGS_KEYS = ("rate", "burst", "count", "duration", "pools")

_POOL = {
    "size": "107G",
    "alloc": "13.1G",
    "free": "93.9G",
    "frag": "6%",
    "expandsz": "-",
    "dedup": "1.00x",
    "altroot": "-",
    "capacity": "12%",
    "health": "ONLINE",
    "priority": "2 - Information",
}


def event_args(n, pools, t=None):
    """One event's args: a system_state event with ``t`` (default: now) and ``n`` first
    (the load client reads ``t`` at a fixed offset without parsing the whole frame)."""
    return {
        "t": time.monotonic_ns() if t is None else t,
        "n": n,
        "hostname": "bench-host.example.org",
        "hostnamechanged": "false",
        "zpools": {f"pool{i}": dict(_POOL) for i in range(pools)},
        "priority": "2 - Information",
    }


class Pacer:
    """Calls ``publish(args)`` on a schedule (see the module docstring).

    ``settings`` holds ``rate``, ``burst``, ``count``, ``duration`` and ``pools``.
    """

    log = Logger()

    def __init__(self, reactor, publish, settings):
        self._reactor = reactor
        self._publish = publish
        self.settings = dict(settings)
        self._call = None
        self._run = None
        self.published = 0

    def start_run(self, **changes):
        """Start a new run (ending the current one) with these settings changed."""
        self.stop_run()
        s = dict(self.settings, **changes)
        if s["rate"] < 0:
            return
        self._run = {
            "rate": float(s["rate"]),
            "burst": max(1, int(s["burst"])),
            "count": int(s["count"]),
            "pools": int(s["pools"]),
            "end": self._reactor.seconds() + s["duration"] if s["duration"] > 0 else None,
            "start": self._reactor.seconds(),
            "start_ns": time.monotonic_ns(),
            "sent": 0,
        }
        self.log.info(
            "bench: run with rate {rate} burst {burst} count {count} duration {duration}",
            rate=s["rate"], burst=s["burst"], count=s["count"], duration=s["duration"],
        )
        self._call = self._reactor.callLater(0, self._tick)

    def stop_run(self):
        """End the current run, if any."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._run is not None:
            self.log.info("bench: run ended after {sent} events", sent=self._run["sent"])
        self._run = None

    def _tick(self):
        self._call = None
        run = self._run
        now = self._reactor.seconds()
        if run["end"] is not None and now >= run["end"]:
            self.stop_run()
            return
        if run["rate"] > 0:
            n = int((now - run["start"]) * run["rate"]) + 1 - run["sent"]
        else:
            n = run["burst"]
        if run["count"]:
            n = min(n, run["count"] - run["sent"])
        publish, pools, first = self._publish, run["pools"], self.published + 1
        if run["rate"] > 0:
            # Stamped with when each event was due, not when it went out: a server that
            # falls behind its schedule shows it in the latency (no coordinated omission).
            start_ns, step, sent = run["start_ns"], 1e9 / run["rate"], run["sent"]
            for k, i in enumerate(range(first, first + n)):
                publish(event_args(i, pools, start_ns + int((sent + k) * step)))
        else:
            for i in range(first, first + n):
                publish(event_args(i, pools))
        self.published += max(n, 0)
        run["sent"] += max(n, 0)
        if run["count"] and run["sent"] >= run["count"]:
            self.stop_run()
            return
        if run["rate"] > 0:
            due = run["start"] + run["sent"] / run["rate"]
            delay = max(0.0, due - self._reactor.seconds())
        else:
            delay = 0
        self._call = self._reactor.callLater(delay, self._tick)


class ControlFile:
    """Polls a JSON control file and starts a :class:`Pacer` run whenever it changes."""

    def __init__(self, reactor, path, pacer):
        self._path = path
        self._pacer = pacer
        self._seen = None
        self._loop = task.LoopingCall(self._poll)
        self._loop.clock = reactor

    def start(self):
        self._loop.start(CONTROL_POLL, now=True)

    def stop(self):
        if self._loop.running:
            self._loop.stop()

    def _poll(self):
        try:
            with open(self._path, "rb") as f:
                data = f.read()
        except OSError:
            return
        if data == self._seen:
            return
        try:
            changes = json.loads(data)
        except ValueError:
            return  # not ours to fix: wait for the next change
        self._seen = data
        self._pacer.start_run(**{k: changes[k] for k in SETTINGS_KEYS if k in changes})


@implementer(IEventSource)
class BenchSource:
    """The event source the daemon runs."""

    name = "bench"
    frame_name = FRAME_NAME
    replay_last = False
    config_section = "source:bench"

    def __init__(self, context):
        self._reactor = context.reactor
        self._config = context.config
        self._pacer = None
        self._control = None

    def start(self, publish):
        settings = {k: self._config[k] for k in SETTINGS_KEYS}
        self._pacer = Pacer(self._reactor, publish, settings)
        if self._config["control"]:
            self._control = ControlFile(self._reactor, self._config["control"], self._pacer)
            self._control.start()
        else:
            self._pacer.start_run()
        return defer.succeed(None)

    def stop(self):
        if self._control is not None:
            self._control.stop()
        if self._pacer is not None:
            self._pacer.stop_run()
        return defer.succeed(None)


@implementer(IPlugin, IEventSourceFactory)
class BenchSourceFactory:
    """The plugin object ``getPlugins`` finds."""

    name = "bench"
    options = {
        "rate": Option("10", number(0), "Events per second (0 = as fast as possible)."),
        "burst": Option("10", integer(1), "Events per reactor turn when rate is 0."),
        "count": Option("0", integer(0), "Events per run (0 = no limit)."),
        "duration": Option("0", number(0), "Seconds per run (0 = no limit)."),
        "pools": Option("2", integer(0), "Pools in each event (its size)."),
        "control": Option("", string, "JSON control file to follow (empty = run at start)."),
    }

    def build(self, context):
        return BenchSource(context)


bench = BenchSourceFactory()


def write_control(path, **settings):
    """Atomically replace the control file (used by bench/run.py)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(settings, f)
    os.replace(tmp, path)
