"""A job's run as its observer sees it, and formatting times for the dispatcher's jobs
(finding executables: test_process.py)."""

import os
import time

import pytest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sysadmd.dispatcher.events import iso_time
from sysadmd.dispatcher.job import Job
from sysadmd.dispatcher.runner import JobRun
from sysadmd.interfaces import IJobObserver
from tests.unit.dispatcher_fakes import make_dispatcher
from tests.unit.process_fakes import FakeProcessReactor


@pytest.fixture
def timezone():
    """Set TZ for the test (and restore it)."""
    before = os.environ.get("TZ")

    def set_tz(name):
        os.environ["TZ"] = name
        time.tzset()

    yield set_tz
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def test_iso_time_is_local_time_with_its_offset_to_the_millisecond(timezone):
    """Local time, milliseconds (truncated, as isoformat does), and the UTC offset of
    that moment (summer and winter differ)."""
    timezone("UTC")
    assert iso_time(0) == "1970-01-01T00:00:00.000+00:00"
    assert iso_time(1.9996) == "1970-01-01T00:00:01.999+00:00"
    timezone("America/New_York")
    assert iso_time(1_700_000_000.25) == "2023-11-14T17:13:20.250-05:00"
    assert iso_time(1_690_000_000) == "2023-07-22T00:26:40.000-04:00"
    timezone("Asia/Kolkata")
    assert iso_time(0.5) == "1970-01-01T05:30:00.500+05:30"


@implementer(IJobObserver)
class RecordingObserver:
    """What a run reports, in order."""

    def __init__(self):
        self.calls = []

    def command_started(self, job, index):
        self.calls.append(("started", index))

    def command_output(self, job, index):
        self.calls.append(("output", index, job.logs[index].body()))

    def command_finished(self, job, index, return_code):
        self.calls.append(("finished", index, return_code))

    def job_finished(self, job):
        self.calls.append(("job_finished",))


def a_run(commands, **kwargs):
    reactor = FakeProcessReactor()
    observer = RecordingObserver()
    job = Job(1, "j", commands, "no_queue")
    run = JobRun(reactor, job, {"PATH": "/usr/bin:/bin"}, "/", 5.0, 1000, observer, **kwargs)
    return reactor, observer, job, run


def test_every_observer_provides_the_interface(tmp_path):
    """The dispatcher's JobProgress and this test's observer are IJobObservers."""
    reactor, dispatcher, events = make_dispatcher(tmp_path)
    assert verifyObject(IJobObserver, dispatcher._progress)
    assert verifyObject(IJobObserver, RecordingObserver())


def test_a_run_reports_each_command_then_the_job_to_its_observer():
    """started, output (after it is in the log), finished for each command in order;
    job_finished once; done fires with the job."""
    reactor, observer, job, run = a_run(["echo one", "echo two"])
    done = []
    run.done.addCallback(done.append)
    run.start()
    reactor.processes[0].write(b"one\n")
    reactor.processes[0].exit(0)
    reactor.processes[1].exit(0)
    assert observer.calls == [
        ("started", 0), ("output", 0, "one\n"), ("finished", 0, 0),
        ("started", 1), ("finished", 1, 0), ("job_finished",),
    ]
    assert done == [job] and job.current is None


def test_a_run_refuses_an_observer_without_the_interface():
    """Duck typing is not enough: the observer must declare IJobObserver."""

    class Duck:
        def command_started(self, job, index):
            pass

    with pytest.raises(TypeError):
        JobRun(FakeProcessReactor(), Job(1, "j", ["true"], "q"), {}, "/", 5.0, 1000, Duck())
