"""``twistd sysadm-fleet``: one machine's agent in a fleet on NATS JetStream.

It runs beside sysadmd, as a client of both: of the local daemon over its WebSocket API
(signed in with the fleet key ``sysadmd-admin fleet init`` made, ``rpc/auth_fleet``) and
of NATS (nats-py, on Twisted's asyncio reactor). It publishes every event of the daemon
into the stream SYSADM_EVENTS (:mod:`~sysadmd.fleet.publisher`), answers requests on
``sysadm.<host>.rpc`` as the local user the sender maps to
(:mod:`~sysadmd.fleet.requests`) and says the machine is up
(:mod:`~sysadmd.fleet.presence`). The wire format is :mod:`sysadmd.protocol.fleet`.

Like the ``sysadm`` client it is packaged apart from the daemon: it imports the client,
``protocol``, ``config`` and ``util``, and the daemon never imports it (nor nats-py).
"""
