"""The directory of job output files (``<state_dir>/output``): one
:class:`~sysadmd.dispatcher.output.OutputFile` per job that ran, named by the job's
sequence number (unique for ever, unlike its id).

Running jobs' files are open for appending; finished jobs' files are opened for reading
on demand and a few are kept open (their offsets scanned once) for clients reading or
following them. Files are removed with their job's history record.
"""

import errno
import os
from collections import OrderedDict

from sysadmd.dispatcher.output import HEAD_BYTES, OutputFile, command_logs
from sysadmd.util.files import make_private_dirs
from sysadmd.util.log import Logger

OUTPUT_DIR = "output"
SUFFIX = ".out"
# Finished jobs' files kept scanned for readers and followers.
KEEP_OPEN = 16


class OutputDirectory:
    """Output files in ``directory`` (None: none are kept; unit tests of other parts);
    ``max_bytes`` is ``[dispatcher] max_output_bytes`` (0: no limit)."""

    log = Logger()

    def __init__(self, directory, max_bytes=0, head_bytes=HEAD_BYTES):
        self.directory = directory
        self.max_bytes = max_bytes
        self.head_bytes = head_bytes
        self._writing = {}
        self._readers = OrderedDict()

    def open(self):
        """Make the directory (mode 0700) if needed, and remove what a rewrite cut short
        by a crash left; raises OSError when the directory cannot be made."""
        if self.directory is None:
            return
        make_private_dirs(self.directory)
        for name in os.listdir(self.directory):
            if name.endswith(SUFFIX + ".tmp"):
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass

    def path(self, seq):
        """The output file of job ``seq``."""
        return os.path.join(self.directory, f"{seq}{SUFFIX}")

    def start(self, job):
        """Create ``job``'s file as it starts; None (logged) when it cannot be created:
        the job still runs, its output then reaches only its events and log."""
        if self.directory is None:
            return None
        try:
            output = OutputFile.create(self.path(job.seq), self.max_bytes, self.head_bytes)
        except OSError as e:
            self.log.error(
                "job {job_id}: its output file cannot be created ({error}); its output "
                "will not be kept beyond its events", job_id=job.job_id, error=str(e))
            return None
        self._writing[job.seq] = output
        return output

    def writing(self, seq):
        """The open file of running job ``seq``, or None."""
        return self._writing.get(seq)

    def finished(self, job):
        """``job`` ended: its file is closed for writing and kept for its readers."""
        output = self._writing.pop(job.seq, None)
        if output is None:
            return
        output.close()
        if output.write_error is not None:
            self.log.warn(
                "job {job_id}: {dropped} bytes of its output could not be kept: {error}",
                job_id=job.job_id, dropped=output.dropped, error=str(output.write_error))
        self._keep(job.seq, output)

    def reader(self, seq):
        """The :class:`OutputFile` of job ``seq`` for reading (open for appending while it
        runs); None when it has none (it never ran, or its file is gone)."""
        output = self._writing.get(seq) or self._readers.get(seq)
        if output is not None:
            if seq in self._readers:
                self._readers.move_to_end(seq)
            return output
        if self.directory is None:
            return None
        try:
            output = OutputFile.open(self.path(seq))
        except OSError as e:
            if e.errno != errno.ENOENT:
                self.log.warn("output file of job #{seq} cannot be read: {error}", seq=seq, error=str(e))
            return None
        self._keep(seq, output)
        return output

    def _keep(self, seq, output):
        self._readers[seq] = output
        self._readers.move_to_end(seq)
        while len(self._readers) > KEEP_OPEN:
            _, evicted = self._readers.popitem(last=False)
            evicted.release()

    def logs(self, seq, commands, cap):
        """``{index: (text, left_out)}`` of job ``seq`` (see
        :func:`~sysadmd.dispatcher.output.command_logs`), or None without a file. Blocking:
        call it off the reactor thread."""
        if self.directory is None:
            return None
        try:
            return command_logs(self.path(seq), commands, cap)
        except OSError:
            return None

    def remove(self, seqs):
        """Delete the files of jobs ``seqs`` (their records were pruned)."""
        if self.directory is None:
            return
        for seq in seqs:
            reader = self._readers.pop(seq, None)
            if reader is not None:
                reader.release()
            try:
                os.unlink(self.path(seq))
            except FileNotFoundError:
                pass
            except OSError as e:
                self.log.warn("cannot remove output file of job #{seq}: {error}", seq=seq, error=str(e))

    def close(self):
        """Close every file (the daemon stops)."""
        for output in [*self._writing.values(), *self._readers.values()]:
            output.close()
            output.release()
        self._writing.clear()
        self._readers.clear()
