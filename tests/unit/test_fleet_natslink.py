"""NatsLink without a server: what it drops on a disconnection, and who it tells."""

import asyncio

import nats.aio.client

from sysadmd.fleet.natslink import NatsLink


class Listener:
    def __init__(self):
        self.calls = []

    def nats_up(self):
        self.calls.append("up")

    def nats_down(self):
        self.calls.append("down")


def test_nats_py_still_keeps_its_unsent_buffer_where_natslink_drops_it():
    """NatsLink clears nats-py's private buffer: a nats-py that renames it fails here."""
    client = nats.aio.client.Client()
    assert client._pending == [] and client._pending_data_size == 0


def test_a_disconnection_drops_what_nats_py_would_send_after_reconnecting_and_tells_listeners():
    link = NatsLink(None, ["nats://127.0.0.1:4222"], "m1", "pw", "m1")
    link.nc = nats.aio.client.Client()
    link.nc._pending = [b"HPUB sysadm.m1.events.dispatcher ...\r\n"]
    link.nc._pending_data_size = 40
    listener = Listener()
    link.add_listener(listener)
    link._tell(True)
    asyncio.run(link._disconnected())
    assert link.nc._pending == [] and link.nc._pending_data_size == 0
    assert listener.calls == ["up", "down"] and link.up is False
