"""The original Qt client's session, replayed message for message
(``original-client.md``) against the real daemon over wss: what it sends, byte for
byte, and what it reads back in the ``original`` dialect. A spec client on the same
daemon keeps the events.rst shapes."""

import json
import time

import pytest

from tests.compat.test_connecting import WSS_CONFIG, insecure_context
from tests.integration.harness import BASE_CONFIG, Client
from tests.integration.test_auth import TOKEN, config

D = "Fri Nov 27 10:00:00 UTC 2026"


def compact(message):
    """What QJsonDocument(...).toJson(QJsonDocument::Compact) writes: sorted keys, no
    spaces."""
    return json.dumps(message, sort_keys=True, separators=(",", ":"))


IDENTIFY = '{"args":"","id":"sysadm_client_identify","name":"identify","namespace":"rpc"}'
PING = '{"namespace":"rpc","name":"query","id":"sysadm_client_ping","args":""}'


def auth(user, password):
    return compact({"args": {"password": password, "username": user},
                    "id": "sysadm-client-auth-auto", "name": "auth", "namespace": "rpc"})


def auth_token(token):
    return compact({"args": {"token": token}, "id": "sysadm-client-auth-auto",
                    "name": "auth_token", "namespace": "rpc"})


def subscribe(args):
    return compact({"args": args, "id": "sysadm-client-event-auto", "name": "subscribe",
                    "namespace": "events"})


AUTH_CLEAR = compact({"args": "", "id": "sysadm-client-auth-auto", "name": "auth_clear",
                      "namespace": "rpc"})


class QtClient(Client):
    """The harness client sending Origin: sysadm-client and exact message texts."""

    def __init__(self, url, origin="sysadm-client"):
        kwargs = {"ssl": insecure_context()} if url.startswith("wss:") else {}
        super().__init__(url, origin=origin, **kwargs)

    def ask(self, text, request_id, timeout=10):
        """Send ``text`` as it is; the reply with ``request_id``."""
        self.send(text)
        return self.reply(request_id, timeout)


def lp_config(base, log_dir, **server):
    return config(base, server=server) + f"""
[source:life-preserver]
backend = lpreserver
log_dir = {log_dir}
poll_interval = 0.1
"""


def start(make_daemon, tmp_path, base=WSS_CONFIG, **server):
    logs = tmp_path / "lpreserver"
    logs.mkdir()
    (logs / "lpreserver.log").write_text("")
    daemon = make_daemon(lp_config(base, logs, **server), ticker=False, start=False)
    daemon.add_user("admin", "admin-secret-pw", "full")
    daemon.add_user("viewer", "viewer-secret-pw", "limited")
    daemon.start()
    daemon.wait_for_log(r"life-preserver: using the lpreserver backend")
    return daemon, logs / "lpreserver.log"


def log_line(path, message):
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{D}: {message}\n")


def signed_in(url, user="admin", password="admin-secret-pw", **kwargs):
    client = QtClient(url, **kwargs)
    reply = client.ask(auth(user, password), "sysadm-client-auth-auto")
    assert reply["name"] == "response", reply
    return client, reply["args"][0]


@pytest.fixture
def qt(make_daemon, tmp_path):
    return start(make_daemon, tmp_path)


def test_the_qt_client_session(qt):
    """identify, a refused call before sign-in ("401"), password sign-in, one subscribe
    per source with args a string, the events it reads, keep-alive, sign-out."""
    daemon, lp_log = qt
    client = QtClient(daemon.url)
    try:
        reply = client.ask(IDENTIFY, "sysadm_client_identify")
        assert reply["name"] == "response" and reply["args"]["type"] == "server"

        refused = client.ask(subscribe("system-state"), "sysadm-client-event-auto")
        assert refused["namespace"] == "error" and refused["args"]["code"] == "401"
        wrong = client.ask(auth("admin", "wrong"), "sysadm-client-auth-auto")
        assert wrong["name"] == "error" and wrong["args"]["code"] == "401"

        reply = client.ask(auth("admin", "admin-secret-pw"), "sysadm-client-auth-auto")
        assert reply["name"] == "response"
        assert isinstance(reply["args"], list) and len(reply["args"]) >= 2
        assert TOKEN.match(reply["args"][0])

        for source in ("system-state", "life-preserver", "dispatcher"):
            reply = client.ask(subscribe(source), "sysadm-client-event-auto")
            assert reply == {"namespace": "events", "name": "response",
                             "id": "sysadm-client-event-auto", "args": {"subscribe": source}}
        state = client.next_event("system-state", timeout=15)
        assert state["id"] == "" and state["namespace"] == "events"
        assert "hostname" in state["args"] and "priority" in state["args"]

        log_line(lp_log, "Creating snapshot on tank/data")
        event = client.next_event("life-preserver", timeout=15)
        assert event == {"namespace": "events", "name": "life-preserver", "id": "", "args": {
            "message": f"{D}: New snapshot of tank/data", "priority": "1 - Information",
            "class": "snapshot"}}

        ping = client.ask(PING, "sysadm_client_ping")
        assert ping["name"] == "response" and ping["args"]["events/subscribe"] == "read"
        assert client.ask(IDENTIFY, "sysadm_client_identify")["name"] == "response"

        cleared = client.ask(AUTH_CLEAR, "sysadm-client-auth-auto")
        assert cleared["name"] == "response"
        after = client.ask(PING, "sysadm_client_ping")
        assert after["name"] == "error" and after["args"]["code"] == "401"
    finally:
        client.close()


def test_subscribing_again_resends_the_cached_event(qt):
    """The original server sent a source's last event on every subscribe."""
    daemon, lp_log = qt
    client, _ = signed_in(daemon.url)
    try:
        client.ask(subscribe("life-preserver"), "sysadm-client-event-auto")
        log_line(lp_log, "Finished replication task on tank/data -> backup.example.org")
        first = client.next_event("life-preserver", timeout=15)
        reply = client.ask(subscribe("life-preserver"), "sysadm-client-event-auto")
        assert reply["args"] == {"subscribe": "life-preserver"}
        assert client.next_event("life-preserver", timeout=5) == first
        assert first["args"]["message"] == (
            f"{D}: Finished replication for tank/data to backup.example.org")
    finally:
        client.close()


def test_a_list_with_an_unknown_name_subscribes_the_rest(qt):
    """Unknown names are skipped; the reply names the last known one."""
    daemon, _ = qt
    client, _ = signed_in(daemon.url)
    try:
        reply = client.ask(subscribe(["system-state", "no-such-source", "dispatcher"]),
                           "sysadm-client-event-auto")
        assert reply["args"] == {"subscribe": "dispatcher"}
        assert client.next_event("system-state", timeout=15)["id"] == ""
        only_unknown = client.ask(subscribe(["no-such-source"]), "sysadm-client-event-auto")
        assert only_unknown["name"] == "response" and only_unknown["args"] == {}
    finally:
        client.close()


def test_a_token_signs_in_a_new_connection(qt):
    """The client reconnects with auth_token; the reply is the same array."""
    daemon, _ = qt
    first, token = signed_in(daemon.url)
    first.close()
    client = QtClient(daemon.url)
    try:
        reply = client.ask(auth_token(token), "sysadm-client-auth-auto")
        assert reply["name"] == "response" and reply["args"][0] == token
    finally:
        client.close()


def dispatcher_run(job_id, command):
    return compact({"args": {"action": "run", job_id: command}, "id": "qt-run",
                    "name": "dispatcher", "namespace": "rpc"})


def test_a_full_user_runs_a_dispatcher_job_and_reads_its_events(qt):
    """Dispatcher events keep their name, with "id": ""; a limited user gets "403"."""
    daemon, _ = qt
    client, _ = signed_in(daemon.url)
    viewer, _ = signed_in(daemon.url, "viewer", "viewer-secret-pw")
    try:
        client.ask(subscribe("dispatcher"), "sysadm-client-event-auto")
        reply = client.ask(dispatcher_run("qtjob", "echo hello"), "qt-run")
        assert reply["args"] == {"started": ["qtjob"]}
        deadline = time.monotonic() + 30
        states = []
        while "finished" not in states:
            event = client.next_event("dispatcher", timeout=max(0.1, deadline - time.monotonic()))
            assert event["id"] == "" and event["args"]["process_id"] == "qtjob"
            states.append(event["args"]["state"])
        details = event["args"]["process_details"]
        assert details["state"] == "finished" and details["cmd_list"] == ["echo hello"]
        assert details["echo hello"] == "hello\n" and details["time_finished"]
        refused = viewer.ask(dispatcher_run("viewerjob", "echo no"), "qt-run")
        assert refused["name"] == "error" and refused["args"]["code"] == "403"
    finally:
        client.close()
        viewer.close()


def test_a_spec_client_beside_it_keeps_the_spec_shapes(qt):
    """Same daemon, same event: a client without Origin reads events.rst's frame."""
    daemon, lp_log = qt
    original, _ = signed_in(daemon.url)
    spec = Client(daemon.url, ssl=insecure_context())
    try:
        assert spec.login("admin", "admin-secret-pw")["name"] == "response"
        reply = spec.call("events", "subscribe", "life-preserver")
        assert reply["args"] == {"subscribe": ["life-preserver"]}
        original.ask(subscribe("life-preserver"), "sysadm-client-event-auto")
        log_line(lp_log, "Creating snapshot on tank/spec")
        args = {"message": "New snapshot of tank/spec", "priority": "1 - Information",
                "class": "snapshot"}
        event = spec.next_event("life_preserver", timeout=15)
        assert {k: event[k] for k in ("namespace", "name", "id", "args")} == {
            "namespace": "events", "name": "life_preserver", "id": "none", "args": args}
        assert sorted(event) == ["args", "epoch", "id", "name", "namespace", "seq"]  # numbered, spec only
        theirs = original.next_event("life-preserver", timeout=15)
        assert theirs["args"] == dict(args, message=f"{D}: New snapshot of tank/spec")
        assert "seq" not in theirs and "epoch" not in theirs
        unknown = spec.call("events", "subscribe", ["no-such-source"])
        assert unknown["args"]["code"] == 400
    finally:
        original.close()
        spec.close()


def test_dialect_spec_forces_spec_for_the_qt_client(make_daemon, tmp_path):
    daemon, _ = start(make_daemon, tmp_path, base=BASE_CONFIG, dialect="spec")
    client, _ = signed_in(daemon.url)
    try:
        reply = client.ask(subscribe("system-state"), "sysadm-client-event-auto")
        assert reply["args"] == {"subscribe": ["system-state"]}
        assert client.next_event("system_state", timeout=15)["id"] == "none"
        assert client.ask(subscribe(["nope"]), "sysadm-client-event-auto")["args"]["code"] == 400
    finally:
        client.close()


def test_dialect_original_forces_original_for_everyone(make_daemon, tmp_path):
    daemon, _ = start(make_daemon, tmp_path, base=BASE_CONFIG, dialect="original")
    client = Client(daemon.url)  # no Origin at all
    try:
        assert client.call("rpc", "query")["args"]["code"] == "401"
        assert client.login("admin", "admin-secret-pw")["name"] == "response"
        assert client.call("events", "subscribe", "system-state")["args"] == {
            "subscribe": "system-state"}
        assert client.next_event("system-state", timeout=15)["id"] == ""
    finally:
        client.close()
