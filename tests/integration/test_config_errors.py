"""Configuration mistakes stop the real daemon with readable lines and a non-zero exit."""

import socket
import subprocess

from tests.integration.harness import TWISTD


def run_twistd(tmp_path, config_text, *extra, cwd=None):
    path = tmp_path / "bad.ini"
    path.write_text(config_text)
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", str(path), *extra],
        capture_output=True, text=True, timeout=60, cwd=cwd or str(tmp_path),
    )
    return path, result


def test_every_error_of_a_file_is_reported_together(tmp_path):
    path, result = run_twistd(
        tmp_path,
        f"[server]\nstate_dir = {tmp_path}/state\nmax_message_bytes = lots\n"
        "idle_timeout = -5\nlisten_on = 80\n"
        "[events]\nslow_subscriber = maybe\n"
        "[nonsense]\nx = 1\n"
        "[source:nosuchsource]\ninterval = 5\n",
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [line for line in lines if line.startswith(f"sysadmd: {path}: [")], result.stderr
    text = result.stderr
    assert f"{path}: [server] max_message_bytes: 'lots' is not a whole number" in text
    assert f"{path}: [server] idle_timeout:" in text
    assert f"{path}: [server] listen_on: unknown key" in text
    assert f"{path}: [events] slow_subscriber: 'maybe' is not one of: drop, disconnect" in text
    assert f"{path}: [nonsense]: unknown section" in text
    assert f"{path}: [source:nosuchsource]: no event source of that name is installed" in text
    assert len(lines) == 6
    assert "Traceback" not in result.stderr + result.stdout


def test_unwritable_state_dir_names_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path, result = run_twistd(tmp_path, f"[server]\nstate_dir = {blocker}/state\n")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"sysadmd: {path}: [server] state_dir: cannot create {blocker}/state: Not a directory"
    ]


def test_endpoint_that_cannot_bind_is_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        path, result = run_twistd(
            tmp_path,
            f"[server]\nstate_dir = {tmp_path}/state\nlisten = tcp:{port}:interface=127.0.0.1\n"
            "[auth]\nbackends = users\n",
        )
    finally:
        taken.close()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sysadmd: {path}: [server] listen: cannot listen on tcp:{port}")
    assert "Traceback" not in result.stderr


def test_invalid_endpoint_string(tmp_path):
    path, result = run_twistd(
        tmp_path, f"[server]\nstate_dir = {tmp_path}/state\nlisten = bogus:1234\n"
    )
    assert result.returncode != 0
    assert f"sysadmd: {path}: [server] listen: invalid endpoint 'bogus:1234'" in result.stderr


def test_set_override_errors_name_the_command_line(tmp_path):
    path, result = run_twistd(
        tmp_path, f"[server]\nstate_dir = {tmp_path}/state\n", "--set", "server.idle_timeout=abc"
    )
    assert result.returncode != 0
    assert "[server] idle_timeout: 'abc' is not a number" in result.stderr


def test_unreadable_ini_syntax(tmp_path):
    path, result = run_twistd(tmp_path, "this is not an ini file\n")
    assert result.returncode != 0
    assert f"sysadmd: {path}: is not a valid ini file" in result.stderr


def test_missing_config_file(tmp_path):
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "sysadmd", "--config", str(tmp_path / "nope.ini")],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )
    assert result.returncode != 0
    assert f"sysadmd: {tmp_path}/nope.ini: cannot read: No such file or directory" in result.stderr


def test_listen_option_replaces_configured_endpoints(make_daemon, tmp_path):
    d = make_daemon(start=False)
    d.extra_args = ["--listen", r"tcp6:0:interface=\:\:1"]
    d.start()
    d.wait_for_log(r"ready")
    # Only the command line's endpoint: the config file's 127.0.0.1 one is replaced.
    assert len(d.urls) == 1 and d.urls[0].startswith("ws://[::1]:"), d.urls
