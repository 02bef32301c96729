"""Small helpers for the reactor's delayed calls."""


def cancel_call(call):
    """Cancel ``call`` (an ``IDelayedCall`` or None) if it is still pending; returns None,
    so ``self._call = cancel_call(self._call)`` both cancels and forgets it."""
    if call is not None and call.active():
        call.cancel()
    return None
