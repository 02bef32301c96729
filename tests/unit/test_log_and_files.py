"""Log lines peers cannot forge, private files, and the descriptor reserve (issue 13,
items 3 and 5)."""

import os
import resource
import stat

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.ssl import CertificateOptions
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from sysadmd.config import ConfigError
from sysadmd.dispatcher.database import connect
from sysadmd.server.listening import _RefusingTLSFactory, _TLSListener
from sysadmd.taps.app import check_state_dir, connection_cap
from sysadmd.taps.sections import load_daemon_config
from sysadmd.util.log import Logger, escape_controls


def test_escape_controls():
    assert escape_controls("bob\n2026-01-01 [x] forged\r\x1b[31m\t\x00\x7f\x85\u2028") == (
        "bob\\n2026-01-01 [x] forged\\r\\x1b[31m\\t\\x00\\x7f\\x85\\u2028"
    )
    assert escape_controls(b"a\nb\xff") == "a\\nb\\xff"
    assert escape_controls(["x\ny", ("z\r",)]) == ["x\\ny", ("z\\r",)]
    assert escape_controls(7) == 7 and escape_controls("plain ünïcode") == "plain ünïcode"


class Thing:
    log = Logger()


def test_the_logger_escapes_fields_but_not_its_format_nor_failures():
    events = []
    log = Logger(observer=events.append)
    log.info("user {user}\nsecond line of ours", user="eve\n2026-11-30 [sysadmd] forged")
    try:
        raise ValueError("boom\nline")
    except ValueError:
        log.failure("failed for {origin}", origin="\x1b[2J")
    first, second = events
    assert formatEvent(first) == "user eve\\n2026-11-30 [sysadmd] forged\nsecond line of ours"
    assert formatEvent(second) == "failed for \\x1b[2J"
    assert isinstance(second["log_failure"], Failure)
    assert "boom\nline" in second["log_failure"].getTraceback()


def test_the_logger_keeps_twisteds_namespaces():
    assert Thing.log.namespace == __name__ + ".Thing"
    assert Logger().namespace == __name__
    assert isinstance(Thing().log, Logger)


# Files


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_the_database_and_its_companions_are_0600(tmp_path, open_umask):
    path = str(tmp_path / "dispatcher.sqlite")
    conn = connect(path)
    conn.execute("INSERT INTO jobs (job_id, queue, commands, state) VALUES ('a', 'q', '[]', 'x')")
    assert os.path.exists(path + "-wal") and os.path.exists(path + "-shm")
    for suffix in ("", "-wal", "-shm"):
        assert mode(path + suffix) == 0o600, suffix
    conn.close()


def test_an_older_readable_database_is_narrowed(tmp_path, open_umask):
    path = str(tmp_path / "dispatcher.sqlite")
    connect(path).close()
    for suffix in ("", "-journal"):
        with open(path + suffix, "ab"):
            pass
        os.chmod(path + suffix, 0o644)
    connect(path).close()
    assert mode(path) == 0o600 and mode(path + "-journal") == 0o600


def state_config(path):
    return load_daemon_config(text=f"[server]\nstate_dir = {path}\n")


def test_the_state_dir_is_created_0700(tmp_path, open_umask):
    errors = []
    check_state_dir(state_config(tmp_path / "state"), errors)
    assert errors == [] and mode(tmp_path / "state") == 0o700


def test_an_existing_state_dir_we_own_is_narrowed_and_logged(tmp_path):
    (tmp_path / "state").mkdir()
    os.chmod(tmp_path / "state", 0o755)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        check_state_dir(state_config(tmp_path / "state"), [])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert mode(tmp_path / "state") == 0o700
    assert any("narrowed from mode 0755 to 0700" in formatEvent(e) for e in events)


# The descriptor reserve


def test_the_connection_cap_is_the_descriptor_limit_minus_the_reserve():
    config = load_daemon_config(text="")
    assert config["server"]["reserved_descriptors"] == 320
    assert connection_cap(config, (1024, 4096)) == 704
    assert connection_cap(config, (resource.RLIM_INFINITY,) * 2) is None
    with pytest.raises(ConfigError) as error:
        connection_cap(config, (260, 260))
    assert "reserved_descriptors" in str(error.value)


def test_tls_ports_close_a_refused_connection_at_once_too():
    class Refusing(ServerFactory):
        def buildProtocol(self, addr):
            return None if addr.host == "10.0.0.9" else Protocol()

    factory = _RefusingTLSFactory(CertificateOptions(), False, Refusing())
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.0.9", 1)) is None
    assert factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1)) is not None

    class Reactor:
        def listenTCP(self, *args):
            return args

    listener = _TLSListener(Reactor())
    port, wrapped, backlog, interface = listener.listenSSL(1, Refusing(), CertificateOptions(), 7, "::1")
    assert isinstance(wrapped, _RefusingTLSFactory) and (port, backlog, interface) == (1, 7, "::1")
