"""``make conformance``: the Autobahn|Testsuite fuzzing client against sysadmd.

    .venv/bin/python conformance/run.py [--runs off,on] [--cases '1.*,9.1.1'] [--keep]

For each run (compression off, then on) this starts the real daemon under twistd on
127.0.0.1 port 0 with ``[server] conformance_echo = yes`` (the daemon's own factory,
protocol class, options and limits, echoing every message) and ``max_message_bytes``
raised to 16 MiB, because section 9 sends messages that large. It runs ``wstest -m
fuzzingclient`` against it, reads the JSON report and fails on any case whose behaviour
is not OK, NON-STRICT or INFORMATIONAL; UNIMPLEMENTED is accepted only for the
compression sections (12.*, 13.*) of the run without compression. ``wstest`` itself
exits 0 whatever the results, so the report is the only verdict.

The suite runs on Python 2.7 only. It is installed in ``build/autobahn/venv``, a
virtualenv of the pyenv Python 2.7 (``$PYTHON27`` overrides the path), with its
dependencies pinned to the versions its own sdist requires (read from the sdist's
``requires.txt``); what those pins leave open is pinned in ``constraints-py27.txt``.
Reports stay in ``build/autobahn/reports/<run>/`` (index.html for a browser).
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "autobahn")
VENV = os.path.join(BUILD, "venv")
SUITE = "autobahntestsuite"
SUITE_VERSION = "25.10.1"
# The last virtualenv that runs on Python 2.7.
VIRTUALENV = "virtualenv==20.15.1"
PYTHON27 = os.environ.get("PYTHON27", os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python"))
CONSTRAINTS = os.path.join(HERE, "constraints-py27.txt")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
COMPRESSION_SECTIONS = ("12.", "13.")
RUN_TIMEOUT = 90 * 60

CONFIG = """\
[server]
listen = tcp:0:interface=127.0.0.1
state_dir = {state_dir}
conformance_echo = yes
compression = {compression}
max_message_bytes = {max_message_bytes}

[auth]
backends = users

[events]
# The echo mode routes no request; event sources would only add noise to the log.
sources =
"""

LISTENING = re.compile(r"sysadmd listening on (ws://\S+)")
READY = re.compile(r"sysadmd \S+ ready")


def say(text=""):
    print(text, flush=True)


def run(argv, **kwargs):
    """Run a command, showing it; its output goes to ours."""
    say("$ " + " ".join(argv))
    subprocess.run(argv, check=True, **kwargs)


# -- installing the suite -------------------------------------------------------------


def suite_requirements(sdist):
    """The suite's own pinned requirements, from its sdist's egg-info ``requires.txt``."""
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".egg-info/requires.txt"))
        text = tar.extractfile(member).read().decode("utf-8")
    requirements = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):  # extras sections: not needed
            break
        if line:
            if "==" not in line:
                raise SystemExit(f"conformance: {SUITE} requires {line!r} without a pinned version")
            requirements.append(line)
    return requirements


def install_suite():
    """Create the Python 2.7 virtualenv with the suite, again whenever the suite's
    version or the constraints change."""
    stamp = os.path.join(VENV, f".installed-{SUITE}-{SUITE_VERSION}")
    with open(CONSTRAINTS) as f:
        constraints = f.read()
    try:
        with open(stamp) as f:
            if f.read() == constraints:
                return
    except OSError:
        pass
    if not os.access(PYTHON27, os.X_OK):
        raise SystemExit(
            f"conformance: no Python 2.7 at {PYTHON27} (the suite runs on 2.7 only; set PYTHON27)"
        )
    say(f"Installing {SUITE} {SUITE_VERSION} in {VENV} (Python 2.7)")
    shutil.rmtree(VENV, ignore_errors=True)
    if subprocess.run([PYTHON27, "-m", "virtualenv", "--version"], capture_output=True).returncode:
        run([PYTHON27, "-m", "pip", "install", "-q", VIRTUALENV])
    run([PYTHON27, "-m", "virtualenv", "-q", VENV])
    pip = [os.path.join(VENV, "bin", "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    downloads = os.path.join(BUILD, "downloads")
    os.makedirs(downloads, exist_ok=True)
    # pip 20.3 (the last for 2.7) fails on `download` here; the sdist is the same file
    # whichever pip fetches it.
    run([sys.executable, "-m", "pip", "-q", "download", "--no-deps", "--no-binary", ":all:",
         "-d", downloads, f"{SUITE}=={SUITE_VERSION}"])
    sdist = os.path.join(downloads, f"{SUITE}-{SUITE_VERSION}.tar.gz")
    requirements = suite_requirements(sdist)
    say(f"{SUITE} {SUITE_VERSION} requires: {' '.join(requirements)}")
    # The sdist's setup.py reads a requirements.txt the sdist does not ship (it would
    # install with no dependencies at all), so the pins are installed explicitly.
    run(pip + ["install", "-c", CONSTRAINTS] + requirements)
    run(pip + ["install", "--no-deps", sdist])
    run(pip + ["check"])
    with open(stamp, "w") as f:
        f.write(constraints)


# -- the daemon -----------------------------------------------------------------------


class Daemon:
    """``twistd -n sysadmd`` in conformance mode, its log kept in a file."""

    def __init__(self, workdir, compression, max_message_bytes):
        self.workdir = workdir
        os.makedirs(os.path.join(workdir, "state"), exist_ok=True)
        self.config = os.path.join(workdir, "sysadmd.ini")
        with open(self.config, "w") as f:
            f.write(
                CONFIG.format(
                    state_dir=os.path.join(workdir, "state"),
                    compression="yes" if compression else "no",
                    max_message_bytes=max_message_bytes,
                )
            )
        self.log_path = os.path.join(workdir, "sysadmd.log")
        self.lines = []
        self.url = None
        self._ready = threading.Event()
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", self.config],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60) or self.process.poll() is not None or self.url is None:
            self.stop()
            raise SystemExit("conformance: sysadmd did not start:\n" + "".join(self.lines))
        return self.url

    def _read(self):
        with open(self.log_path, "w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                match = LISTENING.search(line)
                if match and self.url is None:
                    self.url = match.group(1)
                if READY.search(line):
                    self._ready.set()
        self._ready.set()

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tracebacks(self):
        return sum(1 for line in self.lines if "Traceback (most recent call last)" in line)


# -- one run --------------------------------------------------------------------------


def section(case_id):
    return case_id.split(".", 1)[0]


def acceptable(case_id, behavior, compression):
    if behavior in PASSING:
        return True
    return behavior == "UNIMPLEMENTED" and not compression and case_id.startswith(COMPRESSION_SECTIONS)


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def judge(index, agent, compression, outdir):
    """(per-section counts, failures) from wstest's index.json."""
    results = index[agent]
    sections = {}
    failures = []
    for case_id in sorted(results, key=case_key):
        result = results[case_id]
        behavior = result["behavior"]
        counts = sections.setdefault(section(case_id), {})
        counts[behavior] = counts.get(behavior, 0) + 1
        if not acceptable(case_id, behavior, compression):
            detail = ""
            try:
                with open(os.path.join(outdir, result["reportfile"])) as f:
                    report = json.load(f)
                detail = report.get("result", "")
            except (OSError, ValueError, KeyError):
                pass
            failures.append((case_id, behavior, result.get("behaviorClose"), detail))
    return sections, failures


def one_run(name, compression, cases, keep, max_message_bytes=MAX_MESSAGE_BYTES):
    outdir = os.path.join(BUILD, "reports", name)
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    workdir = tempfile.mkdtemp(prefix=f"sysadmd-conformance-{name}-")
    daemon = Daemon(workdir, compression, max_message_bytes)
    url = daemon.start()
    say()
    say(f"== run {name}: compression {'on' if compression else 'off'}; sysadmd echoing on {url}")
    say(f"   max_message_bytes = {max_message_bytes} for this run (default 65536): section 9 sends messages of up to 16 MiB")
    agent = f"sysadmd-{name}"
    spec = {
        "outdir": outdir,
        "servers": [{"agent": agent, "url": url}],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    spec_path = os.path.join(workdir, "fuzzingclient.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=2)
    started = time.monotonic()
    wstest_log = os.path.join(outdir, "wstest.log")
    try:
        with open(wstest_log, "w") as log:
            subprocess.run(
                [os.path.join(VENV, "bin", "wstest"), "-m", "fuzzingclient", "-s", spec_path],
                cwd=workdir, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT, check=False,
            )
    except subprocess.TimeoutExpired:
        say(f"   wstest did not finish within {RUN_TIMEOUT} s")
    elapsed = time.monotonic() - started
    status = daemon.stop()
    shutil.copy(daemon.log_path, os.path.join(outdir, "sysadmd.log"))
    tracebacks = daemon.tracebacks()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        with open(os.path.join(outdir, "index.json")) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        say(f"   no report from wstest ({e}); its output is in {wstest_log}")
        return False
    sections, failures = judge(index, agent, compression, outdir)
    behaviors = sorted({b for counts in sections.values() for b in counts})
    say(f"   {sum(sum(c.values()) for c in sections.values())} cases in {elapsed:.0f} s; report: {outdir}/index.html")
    header = ["section"] + behaviors
    widths = [max(7, len(h)) for h in header]
    say("   " + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for name_ in sorted(sections, key=int):
        row = [name_] + [str(sections[name_].get(b, "")) for b in behaviors]
        say("   " + "  ".join(v.rjust(w) for v, w in zip(row, widths)))
    totals = ["all"] + [str(sum(c.get(b, 0) for c in sections.values())) for b in behaviors]
    say("   " + "  ".join(v.rjust(w) for v, w in zip(totals, widths)))
    ok = True
    if failures:
        ok = False
        say(f"   FAILED: {len(failures)} case(s)")
        for case_id, behavior, close, detail in failures:
            say(f"     {case_id}: {behavior} (close: {close}) {detail}")
    if status != 0:
        ok = False
        say(f"   FAILED: sysadmd exited with status {status} after the run")
    if tracebacks:
        ok = False
        say(f"   FAILED: sysadmd logged {tracebacks} traceback(s); see {outdir}/sysadmd.log")
    say(f"   run {name}: {'PASSED' if ok else 'FAILED'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="off,on", help="which runs: off, on or off,on (compression)")
    parser.add_argument("--cases", default="*", help="comma-separated case patterns (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep each run's state directory")
    parser.add_argument(
        "--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES,
        help="[server] max_message_bytes for the runs (default 16 MiB; less fails section 9)",
    )
    args = parser.parse_args(argv)
    install_suite()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not runs or any(r not in ("off", "on") for r in runs):
        parser.error("--runs takes off, on or off,on")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results = {}
    for name in runs:
        results[f"compression-{name}"] = one_run(
            f"compression-{name}", name == "on", cases, args.keep, args.max_message_bytes
        )
    say()
    for name, ok in results.items():
        say(f"{name}: {'PASSED' if ok else 'FAILED'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
