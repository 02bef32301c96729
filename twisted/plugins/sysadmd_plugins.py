"""twistd entry points for sysadmd: only ServiceMaker objects live here."""

from twisted.application.service import ServiceMaker

sysadmd = ServiceMaker(
    "sysadmd",
    "sysadmd.taps.daemon",
    "SysAdm event service: WebSocket events, dispatcher and system state",
    "sysadmd",
)

sysadm_bridge = ServiceMaker(
    "sysadm-bridge",
    "sysadmd.taps.bridge",
    "SysAdm bridge: relays clients to sysadmd servers that both connect out to it",
    "sysadm-bridge",
)

sysadm_fleet = ServiceMaker(
    "sysadm-fleet",
    "sysadmd.fleet.tap",
    "SysAdm fleet agent: this machine's sysadmd events and requests on NATS JetStream",
    "sysadm-fleet",
)
