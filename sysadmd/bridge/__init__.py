"""The bridge: a relay that clients and servers both connect out to (``twistd sysadm-bridge``),
and the daemon's side of it (``[bridge]`` in sysadmd).

- ``wire``: the frames both sides exchange (the protocol is described there);
- ``registry``: who may reach whom (pure logic, no I/O);
- ``auth``: sign-in, and the role a key makes a connection (server keys file or keys file);
- ``server``: the bridge's WebSocket protocol and factory, built on ``sysadmd.server``;
- ``schema`` (and ``sysadmd.taps.bridge``): the bridge's configuration and twistd wiring;
- ``urls``, ``keys``, ``relayed``, ``clients``, ``binding``, ``link`` and ``links``: the
  daemon's outgoing links to bridges, with one :class:`sysadmd.channel.session.Session` per
  relayed client, whose ``rpc/auth_ssl`` is bound to this server's key and the client's
  connection (or, in its encrypted tunnel, to the tunnel);
- ``tunnel``: the daemon's end of relayed clients' encrypted tunnels (the protocol is
  ``sysadmd.protocol.tunnel``);
- ``original``: the original SysAdm way through a bridge (relayed ``auth_ssl`` with
  ``md5_key`` and base64 payloads while ``[bridge] legacy_clients = yes``, raw-RSA
  sign-in to original bridges).
"""
