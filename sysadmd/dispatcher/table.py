"""The dispatcher's job table: which jobs exist in memory now, and finding them.

A job is *live* from ``submit`` until it finishes (its id is unique among live jobs); a
running job also has its :class:`~sysadmd.dispatcher.runner.JobRun`. A finished job stays
here, *saving*, until its finish is committed (later than usual when the state directory
is full), so ``log`` answers from memory rather than from a database row that still says
"running".
"""

from sysadmd.dispatcher.job import DuplicateJob


class JobTable:
    """Live jobs by id, runs by job sequence number, finished jobs being saved by id."""

    def __init__(self):
        self._live = {}
        self._saving = {}
        self._runs = {}

    def reserve(self, jobs):
        """Make ``jobs`` live, all or none: raises :class:`DuplicateJob` naming the ids
        already pending or running."""
        taken = [job.job_id for job in jobs if job.job_id in self._live]
        if taken:
            raise DuplicateJob(f"Already pending or running: {', '.join(taken)}")
        for job in jobs:
            self._live[job.job_id] = job

    def add(self, job):
        """Make one job live (recovered from the last run)."""
        self._live[job.job_id] = job

    def forget(self, job):
        """``job`` is no longer live (it finished, or was never recorded)."""
        if self._live.get(job.job_id) is job:
            del self._live[job.job_id]

    def live(self):
        """The pending and running jobs, in the order they were submitted."""
        return sorted(self._live.values(), key=lambda job: job.seq)

    def started(self, run):
        """``run``'s job is running."""
        self._runs[run.job.seq] = run

    def running(self):
        """How many jobs run now."""
        return len(self._runs)

    def runs(self):
        """The runs of the running jobs."""
        return list(self._runs.values())

    def finished(self, job):
        """``job`` finished: not live, not running; kept until :meth:`saved`."""
        self._runs.pop(job.seq, None)
        self.forget(job)
        self._saving[job.job_id] = job

    def saved(self, job):
        """``job``'s finish is committed (or given up): the database answers for it."""
        if self._saving.get(job.job_id) is job:
            del self._saving[job.job_id]

    def find(self, job_id):
        """The live, or else finished but not yet saved, job named ``job_id``; or None."""
        return self._live.get(job_id) or self._saving.get(job_id)

    def kill(self, job_id):
        """Mark the live job ``job_id`` killed; returns ``(job, its run)`` (the run is None
        while the job is pending), or None when no live job has this id."""
        job = self._live.get(job_id)
        if job is None:
            return None
        job.killed = True
        return job, self._runs.get(job.seq)
