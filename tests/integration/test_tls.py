"""wss with a certificate the daemon generates itself (``[server] tls_generate``)."""

import hashlib
import os
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from websockets.exceptions import InvalidHandshake

from tests.integration.harness import Client
from tests.integration.test_auth import config, granted

TLS_CONFIG = config(server={"listen": "ssl:0:interface=127.0.0.1", "tls_generate": "yes"})
FINGERPRINT = r"TLS certificate (\S+) has fingerprint (SHA256:[0-9A-F:]+)"


def colon_hex(digest):
    return "SHA256:" + ":".join(f"{byte:02X}" for byte in digest)


@pytest.fixture
def wss_daemon(make_daemon):
    d = make_daemon(TLS_CONFIG, start=False)
    d.add_user("admin", "admin-secret-pw")
    return d.start()


def tls_paths(daemon):
    tls_dir = os.path.join(daemon.state_dir, "tls")
    return os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")


def test_certificate_and_key_are_generated_with_a_private_key_file(wss_daemon):
    assert wss_daemon.url.startswith("wss://127.0.0.1:")
    cert_path, key_path = tls_paths(wss_daemon)
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    with open(cert_path, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    match = wss_daemon.wait_for_log(FINGERPRINT)
    assert match.group(1) == cert_path
    assert match.group(2) == colon_hex(cert.fingerprint(hashes.SHA256()))
    wss_daemon.wait_for_log(r"generated a self-signed TLS certificate .* fingerprint "
                            + match.group(2))
    with open(key_path) as handle:
        assert "PRIVATE KEY" in handle.read()
    assert "PRIVATE KEY" not in wss_daemon.log_text()


def test_client_trusting_the_certificate_file_speaks_wss(wss_daemon):
    cert_path, _ = tls_paths(wss_daemon)
    context = ssl.create_default_context(cafile=cert_path)
    c = Client(wss_daemon.url, ssl=context)
    try:
        reply = c.call("rpc", "identify")
        assert reply["name"] == "response" and reply["args"]["type"] == "server"
        granted(c.login("admin", "admin-secret-pw"))
        assert c.call("rpc", "query")["name"] == "response"
    finally:
        c.close()


def test_client_pinning_the_logged_fingerprint_speaks_wss(wss_daemon):
    logged = wss_daemon.wait_for_log(FINGERPRINT).group(2)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    c = Client(wss_daemon.url, ssl=context)
    try:
        der = c.ws.socket.getpeercert(binary_form=True)
        assert colon_hex(hashlib.sha256(der).digest()) == logged
        assert c.call("rpc", "identify")["name"] == "response"
    finally:
        c.close()


def test_client_not_trusting_the_certificate_is_refused(wss_daemon):
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(wss_daemon.url, ssl=ssl.create_default_context())


def test_plain_ws_client_gets_no_answer_from_a_wss_port(wss_daemon):
    with pytest.raises((InvalidHandshake, OSError, TimeoutError)):
        Client(wss_daemon.url.replace("wss://", "ws://", 1), open_timeout=3)


def test_restart_keeps_the_generated_certificate(wss_daemon):
    cert_path, key_path = tls_paths(wss_daemon)
    first = wss_daemon.wait_for_log(FINGERPRINT).group(2)
    with open(key_path, "rb") as handle:
        key = handle.read()
    wss_daemon.stop()
    wss_daemon.start()
    assert wss_daemon.wait_for_log(FINGERPRINT).group(2) == first
    assert "generated a self-signed" not in wss_daemon.log_text()
    with open(key_path, "rb") as handle:
        assert handle.read() == key
    c = Client(wss_daemon.url, ssl=ssl.create_default_context(cafile=cert_path))
    try:
        assert c.call("rpc", "identify")["name"] == "response"
    finally:
        c.close()
