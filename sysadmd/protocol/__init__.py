"""The wire format: the envelope every frame uses, request errors, reply objects,
WebSocket framing, and what a client relayed by a bridge signs (``relay``). Imports
nothing of sysadmd but ``util``."""
