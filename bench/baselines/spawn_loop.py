"""Dispatcher baseline: a bare ``spawnProcess`` loop, ``--concurrency`` children at once.

Runs ``--jobs`` commands the way the dispatcher spawns one (argv without a shell, an
explicit minimal environment, stdin /dev/null, stdout and stderr read) and waits for each
``processEnded``; nothing is queued, stored or published. Prints one JSON line.

    python bench/baselines/spawn_loop.py [--jobs 1000] [--concurrency 8] [--command true]
"""

import argparse
import json
import os
import shutil
import time

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol

DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


class Child(ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()
        self.output = 0

    def outReceived(self, data):
        self.output += len(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--command", default="true")
    options = parser.parse_args()
    executable = shutil.which(options.command)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/"}
    state = {"started": 0, "finished": 0, "failed": 0, "t0": None}
    done = defer.Deferred()

    def launch():
        state["started"] += 1
        child = Child()
        reactor.spawnProcess(child, executable, [options.command], env=dict(env), path="/",
                             childFDs={0: DEVNULL, 1: "r", 2: "r"})
        child.ended.addCallback(ended)

    def ended(code):
        state["finished"] += 1
        state["failed"] += code != 0
        if state["started"] < options.jobs:
            launch()
        elif state["finished"] == options.jobs:
            done.callback(time.monotonic() - state["t0"])

    def start():
        state["t0"] = time.monotonic()
        times = os.times()
        state["cpu0"] = times.user + times.system
        for _ in range(min(options.concurrency, options.jobs)):
            launch()

    def report(elapsed):
        times = os.times()
        print(json.dumps({"jobs": options.jobs, "failed": state["failed"], "elapsed_s": elapsed,
                          "jobs_per_s": options.jobs / elapsed,
                          "cpu_seconds": times.user + times.system - state["cpu0"]}), flush=True)
        reactor.stop()

    done.addCallback(report)
    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
