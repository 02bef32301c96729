"""The wire format: the envelope every frame uses, request errors, reply objects and
WebSocket framing. Imports nothing of sysadmd but ``util``."""
