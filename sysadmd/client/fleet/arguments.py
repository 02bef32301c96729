"""The ``sysadm fleet`` command line: its subcommands, ``--since WHEN`` and ``--hosts GLOB``.

Nothing here imports nats-py, so ``sysadm --help`` and every other command work without it.
"""

import argparse
import datetime
import fnmatch
import re
import time
from dataclasses import dataclass
from typing import Optional

from sysadmd.protocol import fleet as wire

DEFAULT_MAX_AGE = 7 * 86400
DEFAULT_MAX_BYTES = 1 << 30
DEFAULT_DUPLICATE_WINDOW = 120
DEFAULT_WAIT_TIMEOUT = 600.0

_DURATION = re.compile(r"\A(\d+(?:\.\d+)?)([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class Start:
    """Where ``watch`` starts in the stream: ``policy`` is ``new``, ``all``, ``time``
    (the first message stored at or after ``time``, an aware datetime) or ``seq`` (stream
    sequence ``seq``, inclusive)."""

    policy: str
    time: Optional[datetime.datetime] = None
    seq: Optional[int] = None


def parse_when(text, now=None):
    """The :class:`Start` of ``--since WHEN``: ``new``, ``all``, a duration back from
    ``now`` (``90s``, ``10m``, ``2h``, ``1d``), an ISO-8601 time (local time when it names
    no zone) or ``seq:N``; ValueError saying what is accepted."""
    text = text.strip()
    if text in ("new", "all"):
        return Start(text)
    if text.startswith("seq:"):
        number = text[4:]
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{text!r}: seq:N needs a stream sequence of at least 1")
        return Start("seq", seq=int(number))
    match = _DURATION.match(text)
    if match:
        now = time.time() if now is None else now
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return Start("time", time=datetime.datetime.fromtimestamp(now - seconds, datetime.timezone.utc))
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not new, all, a duration (10m, 2h, 1d), an ISO-8601 time or seq:N"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without a zone is the local time
    return Start("time", time=moment.astimezone(datetime.timezone.utc))


def parse_globs(text):
    """The host patterns of ``--hosts`` (comma-separated globs, fnmatch syntax)."""
    globs = [part.strip() for part in text.split(",") if part.strip()]
    if not globs:
        raise ValueError("--hosts needs at least one host name or glob")
    return globs


def host_matches(host, globs):
    """Whether ``host`` matches one of ``globs`` (all hosts when ``globs`` is None)."""
    return globs is None or any(fnmatch.fnmatchcase(host, glob) for glob in globs)


def subject_host(globs):
    """The host token to filter a subject on: the host itself when ``globs`` names exactly
    one host without wildcards (the server then filters), else ``*``."""
    if globs and len(globs) == 1 and not _GLOB_CHARACTERS & set(globs[0]):
        try:
            return wire.check_host(globs[0])
        except ValueError:
            pass
    return "*"


def _argument_type(parse, what):
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = what  # argparse names the type in its messages
    return convert


def _seconds(text):
    value = float(text)
    if value <= 0:
        raise ValueError(f"{text} is not a positive number of seconds")
    return int(value) if value.is_integer() else value


def _job_seconds(text):
    value = float(text)
    if value < 0:
        raise ValueError(f"{text} is not a number of seconds (0 = no limit)")
    return int(value) if value.is_integer() else value


def _bytes(text):
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a number of bytes (at least 1)")
    return value


def _source(text):
    return wire.check_source(text)


def _connection_options(parser):
    # SUPPRESS at both levels: a subparser's defaults would overwrite what was given before
    # its command (``sysadm fleet --nats URL hosts``); absent options are read with getattr.
    group = parser.add_argument_group("NATS connection")
    quiet = {"default": argparse.SUPPRESS}
    group.add_argument("--nats", action="append", metavar="URL",
                       help="a NATS server (repeatable; default nats://127.0.0.1:4222; tls://... for TLS)", **quiet)
    group.add_argument("--nats-user", metavar="USER", help="the NATS user (default: none)", **quiet)
    group.add_argument("--nats-password-file", metavar="PATH",
                       help="read the NATS password from PATH (else from SYSADM_NATS_PASSWORD)", **quiet)
    group.add_argument("--nats-ca", metavar="PATH", help="the CA certificates that sign the NATS server's (tls://)", **quiet)
    group.add_argument("--config", metavar="PATH", help="defaults file (default ~/.config/sysadm/client.ini, [fleet])", **quiet)


def add_parser(subparsers):
    """Add ``fleet`` and its subcommands to ``sysadm``'s subparsers."""
    description = "Many machines through NATS JetStream (README: Running a fleet)."
    fleet = subparsers.add_parser("fleet", help=description, description=description)
    _connection_options(fleet)
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common)
    sub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)

    def command(name, help_text):
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    def hosts_option(parser, required=False):
        parser.add_argument("--hosts", type=_argument_type(parse_globs, "hosts"), metavar="GLOB", required=required,
                            help="only these machines (fleet names; globs, comma-separated: 'web*,db1')")

    p = command("setup", "Create or update the streams SYSADM_EVENTS and SYSADM_PRESENCE (needs stream-admin rights).")
    p.add_argument("--max-age", type=_argument_type(_seconds, "seconds"), default=DEFAULT_MAX_AGE, metavar="SECONDS",
                   help=f"keep events this long (default {DEFAULT_MAX_AGE}: 7 days)")
    p.add_argument("--max-bytes", type=_argument_type(_bytes, "bytes"), default=DEFAULT_MAX_BYTES, metavar="N",
                   help=f"keep at most this many bytes of events (default {DEFAULT_MAX_BYTES}: 1 GiB)")
    p.add_argument("--duplicate-window", type=_argument_type(_seconds, "seconds"), default=DEFAULT_DUPLICATE_WINDOW,
                   metavar="SECONDS", help=f"drop an event published again within this time (default {DEFAULT_DUPLICATE_WINDOW})")
    p = command("hosts", "Every machine that ever sent presence: up or down, since when, its priority.")
    p.add_argument("--json", action="store_true")
    p = command("watch", "Follow the events of many machines, one line each, prefixed with the host.")
    p.add_argument("sources", nargs="*", type=_argument_type(_source, "source"), metavar="SOURCE",
                   help="event sources (default: all)")
    hosts_option(p)
    p.add_argument("--since", type=_argument_type(parse_when, "when"), default=Start("new"), metavar="WHEN",
                   help="new (default), all, a duration back (10m, 2h, 1d), an ISO-8601 time, or seq:N")
    p.add_argument("--json", action="store_true",
                   help='print {"host", "stream_seq", "event"} per line')
    p = command("run", "Run a job on every machine that is up and matches --hosts; wait for each to finish.")
    hosts_option(p, required=True)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("commands", nargs="+", metavar="CMD")
    p.add_argument("--queue", metavar="Q", help="dispatcher queue (default no_queue)")
    p.add_argument("--timeout", type=_argument_type(_job_seconds, "seconds"), metavar="S",
                   help="seconds before the job is stopped (0 = none)")
    p.add_argument("--wait-timeout", type=_argument_type(_seconds, "seconds"), default=DEFAULT_WAIT_TIMEOUT, metavar="S",
                   help=f"seconds to wait for every machine's job to finish (default {DEFAULT_WAIT_TIMEOUT:g})")
    p = command("state", "Each machine's last system state: priority, host name, pools.")
    hosts_option(p)
    p.add_argument("--json", action="store_true")
    return fleet
