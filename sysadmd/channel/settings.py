"""The connection limits a server factory enforces, gathered from the configuration."""

from dataclasses import dataclass, field
from typing import List

from sysadmd.protocol.dialect import AUTO
from sysadmd.util.hosts import default_allowed_hosts


@dataclass(frozen=True)
class ConnectionSettings:
    """Per-connection limits and timeouts (see ``[server]``, ``[auth]``, ``[events]``)."""

    max_message_bytes: int = 65536
    preauth_max_message_bytes: int = 8192
    idle_timeout: float = 1800.0
    auth_timeout: float = 30.0
    ping_interval: float = 30.0
    handshake_timeout: float = 10.0
    max_connections_per_ip: int = 256
    max_inflight_requests: int = 20
    subscriber_buffer_bytes: int = 1048576
    slow_subscriber: str = "drop"
    allowed_origins: List[str] = field(default_factory=list)
    # What the default listen endpoint (127.0.0.1) allows; from_config computes the real one.
    allowed_hosts: List[str] = field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    compression: bool = False
    conformance_echo: bool = False
    # [server] dialect: what a WebSocket connection speaks (sysadmd.protocol.dialect.choose)
    dialect: str = AUTO

    @classmethod
    def from_config(cls, config, **overrides):
        """Build from a :class:`sysadmd.config.Config`; ``overrides`` replace fields
        (the bridge, which has no ``[events]``, sets its own buffer and policy)."""
        server, auth = config["server"], config["auth"]
        fields = dict(
            max_message_bytes=server["max_message_bytes"],
            preauth_max_message_bytes=min(
                auth["preauth_max_message_bytes"], server["max_message_bytes"]
            ),
            idle_timeout=server["idle_timeout"],
            auth_timeout=auth["auth_timeout"],
            ping_interval=server["ping_interval"],
            handshake_timeout=server["handshake_timeout"],
            max_connections_per_ip=server["max_connections_per_ip"],
            max_inflight_requests=server["max_inflight_requests"],
            allowed_origins=list(server["allowed_origins"]),
            allowed_hosts=list(server["allowed_hosts"]) or default_allowed_hosts(server["listen"]),
            compression=server["compression"],
            conformance_echo=server["conformance_echo"],
            dialect=server["dialect"],
        )
        if "events" in config:
            events = config["events"]
            fields.update(
                subscriber_buffer_bytes=events["subscriber_buffer_bytes"],
                slow_subscriber=events["slow_subscriber"],
            )
        fields.update(overrides)
        return cls(**fields)
