"""twistd entry points for sysadmd: only ServiceMaker objects live here."""

from twisted.application.service import ServiceMaker

sysadmd = ServiceMaker(
    "sysadmd",
    "sysadmd.tap",
    "SysAdm event service: WebSocket events, dispatcher and system state",
    "sysadmd",
)
