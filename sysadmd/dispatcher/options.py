"""The ``[dispatcher]`` ini section: queues, timeouts, logs and history."""

from sysadmd.config.options import Option, integer, number, string, words
from sysadmd.dispatcher.output import HEAD_BYTES
from sysadmd.dispatcher.queue import parse_queues


def output_limit(text):
    """``max_output_bytes``: 0, or at least twice the head that is always kept."""
    value = integer(0)(text)
    if 0 < value < 2 * HEAD_BYTES:
        raise ValueError(f"must be 0 (no limit) or at least {2 * HEAD_BYTES}")
    return value


DISPATCHER = {
    "queues": Option(
        "no_queue:0 pkg_queue:1 iocage_queue:1",
        parse_queues,
        "Job queues as NAME:MAX_RUNNING pairs (0 = unlimited), each first in, first out; "
        "jobs that name no queue go to no_queue (else the first listed).",
    ),
    "max_processes": Option(
        "64",
        integer(1),
        "Jobs running at once over all queues, unlimited ones included (each runs one "
        "process at a time, with two pipes and its output file); jobs beyond it wait, in order, for one to end.",
    ),
    "default_timeout": Option(
        "0", number(0), "Seconds a job may run before it is stopped (0 = no limit); a job's own timeout wins."
    ),
    "kill_grace": Option(
        "5", number(0), "Seconds from SIGTERM to SIGKILL when a job is killed, times out or the daemon stops."
    ),
    "update_interval": Option(
        "1", number(0), "Least seconds between two running events of one job caused by its output."
    ),
    "event_log_bytes": Option(
        "65536", integer(0), "Bytes of each command's log in events: the tail, after a marker saying how much was left out."
    ),
    "store_log_bytes": Option(
        "10485760", integer(1), "Bytes of each command's log kept in history and returned by the log action (the tail)."
    ),
    "history_days": Option("30", number(0), "Days finished jobs stay in history, with their output files (0 = forever)."),
    "max_output_bytes": Option(
        "67108864",
        output_limit,
        "Bytes of each job's output kept in its file (<state_dir>/output); beyond it the middle "
        "is dropped: the first 1 MiB and the newest output stay, and the dropped bytes are "
        "counted (0 = keep everything; else at least 2097152).",
    ),
    "output_batch_bytes": Option(
        "16384", integer(1), "Most bytes of output in one job_output event sent to a follower."
    ),
    "output_batch_ms": Option(
        "100", number(0), "Most milliseconds output waits before it is sent to its followers (in a smaller event)."
    ),
    "env_passthrough": Option(
        "", words, "Daemon environment variables passed to commands besides PATH, LANG and HOME."
    ),
    "cwd": Option("/", string, "Working directory of commands."),
}
