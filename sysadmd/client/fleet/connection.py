"""One NATS connection for a ``sysadm fleet`` command, and its failures as one line.

nats-py tells some failures only to its ``error_cb``: a permissions violation is an
asynchronous ``-ERR`` from the server (the refused publish is dropped, so the request
that sent it would just time out). :meth:`FleetConnection.guarded` waits for an
operation *or* such a violation on the subjects it uses, whichever comes first, so a
refused subject is reported at once as "refused by NATS" instead of as a timeout.
"""

import asyncio
import re
import socket
import ssl

import nats
from nats import errors as nats_errors
from nats.js import errors as js_errors

from sysadmd.client.errors import ClientError

CONNECT_TIMEOUT = 5
#: Seconds a JetStream API request may take.
API_TIMEOUT = 10.0
#: The subjects a JetStream API call publishes to or receives its reply on.
API_SUBJECTS = ("$JS.", "_INBOX.")
STREAM_NOT_FOUND = 10059
# Also what a restarted nats-server says until its JetStream is up again.
NO_JETSTREAM = "JetStream does not answer for this NATS user's account (is it enabled there?)"
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)"?', re.I)


class Refused(ClientError):
    """NATS refused this user a subject (a permissions violation)."""


class StreamMissing(ClientError):
    """A fleet stream does not exist (``sysadm fleet setup`` makes it)."""


class NoAnswer(ClientError):
    """NATS did not answer (in time, or at all while reconnecting): worth trying again."""


def violation_of(error):
    """``(kind, subject)`` of a nats-py permissions-violation error, else None. nats-py
    lowercases the server's whole error line, the subject too: see :func:`matching`."""
    match = _VIOLATION.search(str(error))
    return (match.group(1).lower(), match.group(2)) if match else None


def matching(subject, prefixes):
    """The subject, in its real case, of a lowercased violation ``subject`` that starts
    with one of ``prefixes``; None when none matches. A whole subject among the prefixes
    gives its own spelling; JetStream's API subjects are upper case up to the stream
    name (ours are upper case too)."""
    for prefix in prefixes:
        if subject == prefix.lower():
            return prefix
        if subject.startswith(prefix.lower()):
            if subject.startswith("$js."):
                tokens = subject.split(".")
                return ".".join(tokens[:5]).upper() + "".join("." + token for token in tokens[5:])
            return subject
    return None


def refused_text(kind, subject):
    """The line for a permissions violation."""
    return f"refused by NATS: this user may not {'publish to' if kind == 'publish' else 'subscribe to'} {subject}"


def describe_connect_error(error):
    """Why connecting failed, in a few words."""
    text = str(error)
    if isinstance(error, nats_errors.AuthorizationError) or "authorization violation" in text.lower():
        return "authorization violation (check --nats-user and the password)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is nats-server running and listening there?)"
    if isinstance(error, socket.gaierror):
        return "no such host"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed ({getattr(error, 'reason', None) or error}); is --nats-ca right?"
    if isinstance(error, (asyncio.TimeoutError, nats_errors.TimeoutError)):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return text.removeprefix("nats: ").strip("'") or type(error).__name__


def _hopeless(error):
    """Whether a failed connection attempt will fail again the same way."""
    return isinstance(error, (ssl.SSLCertVerificationError, nats_errors.AuthorizationError)) or (
        "authorization violation" in str(error).lower())


def api_failure(error, stream=None):
    """The :class:`ClientError` for a failed JetStream API call on ``stream``."""
    if isinstance(error, ClientError):
        return error
    if isinstance(error, js_errors.APIError):
        description = error.description or f"error {error.code}"
        if error.err_code == STREAM_NOT_FOUND or (isinstance(error, js_errors.NotFoundError) and "stream" in description):
            return StreamMissing(f"stream {stream or '?'} does not exist: run sysadm fleet setup")
        if isinstance(error, js_errors.ServiceUnavailableError):
            return NoAnswer(NO_JETSTREAM)
        return ClientError(f"NATS JetStream refused: {description}")
    if isinstance(error, nats_errors.NoRespondersError):
        return NoAnswer(NO_JETSTREAM)
    if isinstance(error, (asyncio.TimeoutError, nats_errors.TimeoutError)):
        return NoAnswer(f"NATS JetStream did not answer within {API_TIMEOUT:g} s")
    if isinstance(error, (nats_errors.ConnectionClosedError, nats_errors.ConnectionReconnectingError,
                          nats_errors.OutboundBufferLimitError)):
        return NoAnswer("lost the connection to NATS")
    return ClientError(f"NATS: {str(error).removeprefix('nats: ')}")


class FleetConnection:
    """A nats-py connection with the error handling above. ``on_reconnected`` holds
    callables run after each reconnect, ``on_closed`` those run when it ends for good;
    ``note(text)`` hears about disconnects."""

    def __init__(self, settings, note=None):
        self.settings = settings
        self.nc = None
        self.js = None
        self.on_reconnected = []
        self.on_closed = []
        self._note = note
        self._last_error = None
        self._waiters = []
        self._hopeless = None
        self._refusals = 0

    async def connect(self, keep_trying=False):
        """Connect (trying each server twice); ClientError naming why it failed.
        ``keep_trying`` reconnects forever afterwards (``watch``, ``run``: they resume
        their consumers after the last message they saw)."""
        nc = nats.NATS()
        settings = self.settings
        connecting = nc.connect(
            servers=settings.servers, user=settings.user, password=settings.password,
            tls=settings.tls_context(), name="sysadm fleet", connect_timeout=CONNECT_TIMEOUT,
            # Fail fast at first: a command should not wait a minute for a wrong URL.
            max_reconnect_attempts=1, reconnect_time_wait=0.5,
            error_cb=self._error, disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
            closed_cb=self._closed,
        )
        self._hopeless = asyncio.get_running_loop().create_future()
        self._refusals = len(settings.servers)
        attempt = asyncio.ensure_future(connecting)
        try:
            # nats-py 2.16 never returns from a second attempt after a failed TLS
            # handshake (a tls:// server whose certificate does not verify): bound it,
            # and give up at once when every server refused us for good.
            await asyncio.wait({attempt, self._hopeless}, timeout=(2 * CONNECT_TIMEOUT + 1) * len(settings.servers),
                               return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                attempt.cancel()
                raise asyncio.TimeoutError()
            attempt.result()
        except Exception as e:
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception:
                pass
            raise ClientError(
                f"cannot connect to NATS at {settings.label}: {describe_connect_error(self._last_error or e)}"
            ) from None
        if keep_trying:
            # Read at each reconnect by nats-py: from now on it never gives up.
            nc.options["max_reconnect_attempts"] = -1
            nc.options["reconnect_time_wait"] = 2
        self.nc = nc
        self.js = nc.jetstream(timeout=API_TIMEOUT)
        return self

    async def close(self):
        """Close the connection (nothing is left to flush: every command waited)."""
        if self.nc is not None and not self.nc.is_closed:
            try:
                await self.nc.close()
            except Exception:
                pass

    async def _error(self, error):
        violation = violation_of(error)
        if violation is None:
            # The server's refusal says more than the reset that may follow it (it closes
            # the connection right after): keep it.
            if self._last_error is None or not _hopeless(self._last_error):
                self._last_error = error
            if self.nc is None and _hopeless(error):
                self._refusals -= 1
                if self._refusals <= 0 and not self._hopeless.done():
                    self._hopeless.set_result(error)
            return
        kind, subject = violation
        for prefixes, future in list(self._waiters):
            spelled = matching(subject, prefixes)
            if spelled is not None and not future.done():
                future.set_result((kind, spelled))

    async def _disconnected(self):
        if self._note is not None and self.nc is not None and not self.nc.is_closed:
            self._note("lost the connection to NATS; reconnecting")

    async def _reconnected(self):
        if self._note is not None:
            url = self.nc.connected_url
            self._note(f"reconnected to NATS at {url.geturl() if url else '?'}")
        for callback in list(self.on_reconnected):
            callback()

    async def _closed(self):
        for callback in list(self.on_closed):
            callback()

    async def guarded(self, awaitable, prefixes):
        """Await ``awaitable``; :class:`Refused` as soon as NATS reports a permissions
        violation on a subject starting with one of ``prefixes``."""
        refused = asyncio.get_running_loop().create_future()
        entry = (tuple(prefixes) if not isinstance(prefixes, str) else (prefixes,), refused)
        self._waiters.append(entry)
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait({task, refused}, return_when=asyncio.FIRST_COMPLETED)
            if refused.done():
                raise Refused(refused_text(*refused.result()))
            return task.result()
        finally:
            self._waiters.remove(entry)
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: a refused call's timeout is no news

    async def api(self, awaitable, stream=None):
        """Run a JetStream API call on ``stream``; its failure as one ClientError."""
        try:
            return await self.guarded(awaitable, API_SUBJECTS)
        except Exception as e:
            raise api_failure(e, stream) from None
