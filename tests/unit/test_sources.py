"""SourcesService: each event source's failures stay its own, and stop really waits. And
SourcePlugin, the plugin object of the built-in sources, with their shared options."""

import pytest
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher
from twisted.plugin import IPlugin
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sysadmd.config.options import Option, integer
from sysadmd.events.context import SourceContext
from sysadmd.events.hub import EventHub
from sysadmd.events.plugin import SourcePlugin, command_timeout, program
from sysadmd.events.sources import RETRY_CAP, STOP_TIMEOUT, SourcesService
from sysadmd.interfaces import IEventSource, IEventSourceFactory
from sysadmd.protocol.framing import prepare_text
from sysadmd.taps.sections import load_daemon_config


@implementer(IEventSource)
class FakeSource:
    """A source whose start/stop results the test controls.

    ``start_results`` is consumed one per start attempt: an Exception is raised, a
    Deferred is returned as is, None means ``defer.succeed(None)``.
    """

    config_section = "unused"

    def __init__(self, name, clock, start_results=(), stop_result=None, replay_last=False):
        self.name = name
        self.frame_name = name.replace("-", "_")
        self.replay_last = replay_last
        self.config_section = "source:" + name
        self._clock = clock
        self.start_results = list(start_results)
        self.stop_result = stop_result
        self.start_times = []
        self.publish = None
        self.stopped = 0

    def start(self, publish):
        self.start_times.append(self._clock.seconds())
        self.publish = publish
        result = self.start_results.pop(0) if self.start_results else None
        if isinstance(result, Exception):
            raise result
        return result if result is not None else defer.succeed(None)

    def stop(self):
        self.stopped += 1
        return self.stop_result if self.stop_result is not None else defer.succeed(None)


class FakeFactory:
    """Builds a prepared source, or raises."""

    options = {}

    def __init__(self, name, source=None, error=None):
        self.name = name
        self.source = source
        self.error = error
        self.contexts = []

    def build(self, context):
        self.contexts.append(context)
        if self.error is not None:
            raise self.error
        return self.source


class Sink:
    def __init__(self):
        self.events = []

    def send_event(self, event):
        self.events.append(event)


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def hub():
    return EventHub(prepare_text)


@pytest.fixture
def log_events():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _service(clock, hub, factories, sources="all", source_options=None):
    options = source_options if source_options is not None else {name: {} for name in factories}
    config = load_daemon_config(text=f"[events]\nsources = {sources}\n", source_options=options)
    return SourcesService(clock, hub, factories, config)


def _logged_about(log_events, name):
    return [e for e in log_events if e.get("source") == name]


def test_build_failure_disables_that_source_and_others_still_start(clock, hub, log_events):
    """A factory whose build raises is logged with its name; the others run."""
    good = FakeSource("good", clock)
    service = _service(
        clock,
        hub,
        {"bad": FakeFactory("bad", error=RuntimeError("no zpool")), "good": FakeFactory("good", good)},
    )
    service.startService()
    assert hub.names() == ["good"]
    assert good.start_times == [0]
    failures = [e for e in _logged_about(log_events, "bad") if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)


def test_build_returning_a_non_source_disables_it_with_a_logged_error(clock, hub, log_events):
    """Something that does not provide IEventSource is refused, naming the source."""
    good = FakeSource("good", clock)
    service = _service(
        clock, hub, {"odd": FakeFactory("odd", source=object()), "good": FakeFactory("good", good)}
    )
    service.startService()
    assert hub.names() == ["good"]
    errors = _logged_about(log_events, "odd")
    assert errors and "problem" in errors[0]
    assert good.start_times == [0]


def test_build_gets_context_with_reactor_and_parsed_section(clock, hub):
    """The factory is given the injected reactor and its own parsed [source:NAME] keys."""
    factory = FakeFactory("one", FakeSource("one", clock))
    config = load_daemon_config(
        text="[source:one]\nsize = 5\n",
        source_options={"one": {"size": Option("1", integer(0), "doc")}},
    )
    SourcesService(clock, hub, {"one": factory}, config).startService()
    (context,) = factory.contexts
    assert context.reactor is clock
    assert context.config == {"size": 5}


def test_failed_start_is_retried_with_exponential_backoff_capped(clock, hub, log_events):
    """Start failures retry after 1, 2, 4, ... seconds, never more than RETRY_CAP apart."""
    failures = 9
    source = FakeSource(
        "flaky",
        clock,
        start_results=[defer.fail(RuntimeError("not yet")) for _ in range(failures)],
    )
    service = _service(clock, hub, {"flaky": FakeFactory("flaky", source)})
    service.startService()
    clock.pump([1] * 300)
    delays = [b - a for a, b in zip(source.start_times, source.start_times[1:])]
    assert delays == [1, 2, 4, 8, 16, 32, RETRY_CAP, RETRY_CAP, RETRY_CAP]
    assert service._running["flaky"].started  # the tenth attempt succeeded
    logged = [e for e in _logged_about(log_events, "flaky") if "log_failure" in e]
    assert len(logged) == failures
    assert [e["delay"] for e in logged[:7]] == [1, 2, 4, 8, 16, 32, RETRY_CAP]


def test_retry_happens_exactly_at_the_delay(clock, hub):
    """The first retry is not earlier than 1 s after the failure."""
    source = FakeSource("flaky", clock, start_results=[RuntimeError("raised synchronously")])
    service = _service(clock, hub, {"flaky": FakeFactory("flaky", source)})
    service.startService()
    clock.advance(0.999)
    assert source.start_times == [0]
    clock.advance(0.001)
    assert source.start_times == [0, 1]


def test_successful_start_resets_backoff(clock, hub):
    """After a success, a later failure's retries start again at 1 s."""
    source = FakeSource("flaky", clock, start_results=[RuntimeError("a"), RuntimeError("b"), None])
    service = _service(clock, hub, {"flaky": FakeFactory("flaky", source)})
    service.startService()
    clock.advance(1)
    clock.advance(2)
    assert source.start_times == [0, 1, 3]
    running = service._running["flaky"]
    assert running.started
    assert running.attempts == 0


def test_failed_start_logs_name_and_other_sources_unaffected(clock, hub, log_events):
    """One source failing to start does not stop the others starting."""
    bad = FakeSource("bad", clock, start_results=[RuntimeError("boom")])
    good = FakeSource("good", clock)
    service = _service(clock, hub, {"bad": FakeFactory("bad", bad), "good": FakeFactory("good", good)})
    service.startService()
    assert good.start_times == [0]
    assert hub.names() == ["bad", "good"]  # still subscribable while it retries
    assert any("log_failure" in e for e in _logged_about(log_events, "bad"))
    assert any(e.get("log_format", "").endswith("started") for e in _logged_about(log_events, "good"))


def test_stop_cancels_pending_retry(clock, hub):
    """Stopping the service stops the retry loop."""
    source = FakeSource("flaky", clock, start_results=[RuntimeError("x")] * 3)
    service = _service(clock, hub, {"flaky": FakeFactory("flaky", source)})
    service.startService()
    service.stopService()
    clock.advance(1000)
    assert source.start_times == [0]
    assert clock.getDelayedCalls() == []


def test_start_failing_after_stop_is_not_retried(clock, hub):
    """A start that fails once the service is stopping schedules nothing."""
    pending = defer.Deferred()
    source = FakeSource("slow", clock, start_results=[pending])
    service = _service(clock, hub, {"slow": FakeFactory("slow", source)})
    service.startService()
    service.stopService()
    pending.errback(RuntimeError("too late"))
    assert clock.getDelayedCalls() == []
    assert source.start_times == [0]


def test_start_that_never_fires_blocks_nobody_and_stop_still_completes(clock, hub):
    """A hanging start delays neither other sources nor (beyond the stop timeout) stop."""
    hanging = FakeSource("hang", clock, start_results=[defer.Deferred()], stop_result=defer.Deferred())
    good = FakeSource("good", clock)
    service = _service(clock, hub, {"hang": FakeFactory("hang", hanging), "good": FakeFactory("good", good)})
    service.startService()
    assert good.start_times == [0]
    stopped = service.stopService()
    assert not stopped.called
    clock.advance(STOP_TIMEOUT - 0.1)
    assert not stopped.called
    clock.advance(0.1)
    assert stopped.called
    assert stopped.result is None
    assert hanging.stopped == 1 and good.stopped == 1


def test_stop_timeout_is_logged_with_source_name(clock, hub, log_events):
    """A source that does not stop in time is logged by name; stop still completes."""
    hanging = FakeSource("hang", clock, stop_result=defer.Deferred())
    service = _service(clock, hub, {"hang": FakeFactory("hang", hanging)})
    service.startService()
    stopped = service.stopService()
    clock.advance(STOP_TIMEOUT)
    assert stopped.called
    assert any("log_failure" in e for e in _logged_about(log_events, "hang"))


def test_stop_fires_only_after_every_source_stop_fires(clock, hub):
    """stopService's Deferred waits for each source's stop Deferred."""
    first, second = defer.Deferred(), defer.Deferred()
    a = FakeSource("a", clock, stop_result=first)
    b = FakeSource("b", clock, stop_result=second)
    service = _service(clock, hub, {"a": FakeFactory("a", a), "b": FakeFactory("b", b)})
    service.startService()
    stopped = service.stopService()
    assert not stopped.called
    first.callback(None)
    assert not stopped.called
    second.callback(None)
    assert stopped.called
    assert clock.getDelayedCalls() == []  # the stop timeouts were cancelled


def test_stop_failure_is_logged_and_does_not_fail_stop(clock, hub, log_events):
    """A source whose stop errbacks is logged; the service still stops cleanly."""
    broken = FakeSource("broken", clock, stop_result=defer.fail(RuntimeError("stuck")))
    service = _service(clock, hub, {"broken": FakeFactory("broken", broken)})
    service.startService()
    stopped = service.stopService()
    assert stopped.called and stopped.result is None
    assert any("log_failure" in e for e in _logged_about(log_events, "broken"))


def test_publish_reaches_hub_subscribers(clock, hub):
    """The publish function given to start delivers to the hub under the source's name."""
    source = FakeSource("one", clock)
    _service(clock, hub, {"one": FakeFactory("one", source)}).startService()
    sink = Sink()
    hub.subscribe(sink, "one")
    source.publish({"n": 1})
    assert len(sink.events) == 1
    assert hub.channel("one").published == 1


@pytest.mark.parametrize(
    "bad_args",
    [{"x": object()}, {(1, 2): "tuple key"}, {"s": {1, 2}}, {"b": b"bytes"}],
    ids=["object", "tuple-key", "set", "bytes"],
)
def test_publish_of_unencodable_value_is_logged_and_dropped_never_raises(
    clock, hub, log_events, bad_args
):
    """An event that cannot be JSON-encoded is dropped and logged by source; later ones flow."""
    source = FakeSource("one", clock)
    _service(clock, hub, {"one": FakeFactory("one", source)}).startService()
    sink = Sink()
    hub.subscribe(sink, "one")
    assert source.publish(bad_args) is None
    source.publish({"n": 2})
    assert len(sink.events) == 1
    errors = [e for e in _logged_about(log_events, "one") if "problem" in e]
    assert len(errors) == 1
    assert errors[0]["failures"] == 1


def test_publish_of_circular_or_too_deep_value_is_dropped(clock, hub):
    """Circular references and absurd nesting are also dropped, not raised."""
    source = FakeSource("one", clock)
    _service(clock, hub, {"one": FakeFactory("one", source)}).startService()
    circular = {}
    circular["self"] = circular
    deep = []
    for _ in range(100000):
        deep = [deep]
    source.publish(circular)
    source.publish({"deep": deep})
    assert hub.channel("one").published == 0


def test_publish_of_nan_is_dropped_and_logged(clock, hub, log_events):
    """NaN cannot be sent as JSON: the event is dropped and logged like any unencodable one."""
    source = FakeSource("one", clock)
    _service(clock, hub, {"one": FakeFactory("one", source)}).startService()
    sink = Sink()
    hub.subscribe(sink, "one")
    source.publish({"load": float("nan")})
    assert sink.events == []
    assert [e for e in _logged_about(log_events, "one") if "problem" in e]


def test_publish_failures_are_rate_limited_in_the_log(clock, hub, log_events):
    """A source failing on every publish logs the 1st, 101st, 201st... failure only."""
    source = FakeSource("one", clock)
    _service(clock, hub, {"one": FakeFactory("one", source)}).startService()
    for _ in range(250):
        source.publish({"x": object()})
    errors = [e for e in _logged_about(log_events, "one") if "problem" in e]
    assert [e["failures"] for e in errors] == [1, 101, 201]


def test_events_sources_setting_restricts_which_run(clock, hub):
    """Only the sources named in ``[events] sources`` are built and started."""
    sources = {name: FakeSource(name, clock) for name in ("a", "b", "c")}
    factories = {name: FakeFactory(name, source) for name, source in sources.items()}
    service = _service(clock, hub, factories, sources="c a")
    service.startService()
    assert hub.names() == ["a", "c"]
    assert factories["b"].contexts == []
    assert sources["a"].start_times == [0] and sources["c"].start_times == [0]
    assert sources["b"].start_times == []


def test_events_sources_all_runs_every_installed_source(clock, hub):
    """The default 'all' runs each discovered factory."""
    factories = {name: FakeFactory(name, FakeSource(name, clock)) for name in ("x", "y")}
    service = _service(clock, hub, factories)
    assert service.enabled_names() == ["x", "y"]
    service.startService()
    assert hub.names() == ["x", "y"]


def test_unknown_name_in_events_sources_is_reported_and_others_start(clock, hub, log_events):
    """A name in ``[events] sources`` that is not installed is logged; the rest start."""
    good = FakeSource("good", clock)
    service = _service(clock, hub, {"good": FakeFactory("good", good)}, sources="missing good")
    service.startService()
    assert good.start_times == [0]
    assert _logged_about(log_events, "missing")


def test_source_plugin_is_a_plugin_that_builds_its_class_from_the_context(clock):
    """SourcePlugin provides IPlugin and IEventSourceFactory; build is from_context."""

    class Built:
        @classmethod
        def from_context(cls, context):
            built = cls()
            built.context = context
            return built

    options = {"zpool_command": program("zpool")}
    plugin = SourcePlugin("built", Built, options)
    assert verifyObject(IPlugin, plugin) and verifyObject(IEventSourceFactory, plugin)
    assert plugin.name == "built" and plugin.options is options
    context = SourceContext(reactor=clock, config={}, state_dir="/tmp")
    assert plugin.build(context).context is context


def test_program_and_command_timeout_options_parse_and_document_alike():
    """A program option needs a value and names the directories commands are searched in;
    command_timeout defaults to 30 s."""
    option = program("zfs")
    assert option.default_value() == "zfs"
    with pytest.raises(ValueError, match="a value is needed"):
        option.parse("  ")
    assert option.doc == (
        "The zfs program: a path, or a name searched in /sbin, /bin, /usr/sbin, /usr/bin, "
        "/usr/local/sbin and /usr/local/bin."
    )
    timeout = command_timeout("a zfs listing")
    assert timeout.default_value() == 30.0
    assert timeout.doc == "Seconds a zfs listing may take before it is killed."
    with pytest.raises(ValueError):
        timeout.parse("0")
