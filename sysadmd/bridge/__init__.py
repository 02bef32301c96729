"""The bridge: a relay that clients and servers both connect out to (``twistd sysadm-bridge``),
and the daemon's side of it (``[bridge]`` in sysadmd).

- ``wire``: the frames both sides exchange (the protocol is described there);
- ``registry``: who may reach whom (pure logic, no I/O);
- ``server``: the bridge's WebSocket protocol and factory, built on ``sysadmd.server``;
- ``schema`` and ``tap``: the bridge's configuration and twistd wiring;
- ``urls``, ``keys``, ``relayed``, ``link`` and ``links``: the daemon's outgoing links to
  bridges, with one :class:`sysadmd.channel.session.Session` per relayed client.
"""
