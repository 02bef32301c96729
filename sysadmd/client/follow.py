"""A dispatcher job's output, streamed from its ``running`` and ``finished`` events.

Each event's ``process_details`` holds every command's log so far (``"<command>":
"<text>"``), so only the part not printed yet is new. An event's log may be capped: it
then starts with ``[... N bytes left out ...]`` and holds the tail, and the bytes before
the tail are counted in N. Positions are therefore counted in bytes of the whole log, so
a capped log is continued exactly where the last print ended; when more was left out
than was printed, the gap is reported instead of guessed.
"""

import re

_MARKER = re.compile(r"\A\[\.\.\. (\d+) bytes left out \.\.\.\]\n")
FLAGS = ("killed", "timed_out", "interrupted")


def split_log(text):
    """``(left_out, body_bytes)`` of a log from an event."""
    match = _MARKER.match(text)
    if match:
        return int(match.group(1)), text[match.end():].encode("utf-8")
    return 0, text.encode("utf-8")


def new_output(printed, text):
    """What of ``text`` (a log from an event) is new after ``printed`` bytes of that log
    were shown: ``(new_text, printed_now, skipped_bytes)``."""
    left_out, body = split_log(text)
    total = left_out + len(body)
    if total <= printed:
        return "", printed, 0
    start = printed - left_out
    skipped = 0
    if start < 0:
        skipped, start = -start, 0
    return body[start:].decode("utf-8", "replace"), total, skipped


def return_code_of(details):
    """The last return code in ``details`` (in command order), as an int, or None."""
    if not isinstance(details, dict):
        return None
    code = None
    commands = details.get("cmd_list") if isinstance(details.get("cmd_list"), list) else []
    for command in commands:
        value = details.get("return_codes/" + str(command))
        if value is not None:
            try:
                code = int(value)
            except (TypeError, ValueError):
                continue
    return code


def exit_status(code):
    """A process exit status for a job's return code: 0-255 as is; -N (killed by signal N,
    or -1 for a command that could not start) as 128+N like a shell; above 255: 255."""
    if code < 0:
        return min(128 - code, 255)
    return min(code, 255)


def end_status(job_id, code, flags, error):
    """The exit status of a command that followed job ``job_id`` to its end: its last
    return code ``code`` (None: no command ran) through :func:`exit_status`, 1 when
    nothing ran. Unless the job succeeded, says how it ended through ``error`` (one
    line), naming ``flags`` (killed, timed_out, interrupted)."""
    flags = ", ".join(flag.replace("_", " ") for flag in flags)
    if code is None:
        error(f"job {job_id} ended before any command ran" + (f" ({flags})" if flags else ""))
        return 1
    if code != 0 or flags:
        error(f"job {job_id} finished with return code {code}" + (f" ({flags})" if flags else ""))
    return exit_status(code)


class JobFollower:
    """Writes the new output of job ``job_id`` as its events arrive.

    ``write`` gets output text (stdout); ``note`` gets status lines (stderr): the command
    about to show output when the job has several, and gaps in capped logs.
    """

    def __init__(self, job_id, write, note):
        self.job_id = job_id
        self._write = write
        self._note = note
        self._printed = {}
        self._last_command = None
        self.state = None
        self.details = None

    @property
    def finished(self):
        """True once the finished event arrived."""
        return self.state == "finished"

    def event(self, args):
        """Take one dispatcher event's args; returns True when it was this job's
        finished event."""
        if not isinstance(args, dict) or args.get("process_id") != self.job_id:
            return False
        self.state = args.get("state", self.state)
        details = args.get("process_details")
        if isinstance(details, dict) and details.get("state") != "pending":
            self.details = details
            self._show(details)
        return self.finished

    def _show(self, details):
        commands = details.get("cmd_list") if isinstance(details.get("cmd_list"), list) else []
        for command in commands:
            log = details.get(command)
            if not isinstance(log, str):
                continue
            text, printed, skipped = new_output(self._printed.get(command, 0), log)
            self._printed[command] = printed
            if not text:
                continue
            if len(commands) > 1 and command != self._last_command:
                self._note(f"$ {command}")
            self._last_command = command
            if skipped:
                self._note(f"[... {skipped} bytes of output not shown ...]")
            self._write(text)

    @property
    def return_code(self):
        """The job's last return code, or None (nothing ran)."""
        return return_code_of(self.details)

    @property
    def flags(self):
        """Which of killed, timed out, interrupted apply."""
        details = self.details or {}
        return [flag for flag in FLAGS if details.get(flag) == "true"]
