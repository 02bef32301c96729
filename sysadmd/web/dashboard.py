"""The web dashboard: ``GET /`` (the page) and ``GET /static/<file>`` (its script and
style), plain files from ``sysadmd/web/dashboard/``.

The page talks to the daemon over the WebSocket on the same host and port, like any other
client; nothing here knows about sessions. Every response, errors included, carries a
strict Content-Security-Policy: only this origin's scripts and styles run, the page can
connect only back to this origin, and it cannot be framed. Only flat, known file names
with a known type are served: no directory listings, no path traversal.
"""

import os
import re

from twisted.web import resource

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard")

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}

# A file name in the static folder: no separators, no leading dot (so no "..").
_NAME = re.compile(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")
# A Host header that is safe to repeat in a header: host or [v6], optional port.
_HOST = re.compile(rb"\A(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")

_POLICY = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    None,  # connect-src, per request
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
)


def content_security_policy(request):
    """The policy for one response.

    ``connect-src 'self'`` covers the same-origin ws:/wss: URL in CSP Level 3 browsers
    (Chromium, Firefox); older WebKit did not match ws: against 'self', so the exact
    WebSocket origin of this request is named as well. It is never a bare ``ws:``, which
    would let an injected script send data to any host.
    """
    connect = "connect-src 'self'"
    host = request.getHeader(b"host")
    if host is not None:
        host = host.encode("latin-1") if isinstance(host, str) else host
        if _HOST.match(host):
            scheme = "wss" if request.isSecure() else "ws"
            connect += f" {scheme}://{host.decode('ascii').lower()}"
    return "; ".join(connect if part is None else part for part in _POLICY)


def _secure_headers(request):
    request.setHeader(b"content-security-policy", content_security_policy(request).encode("ascii"))
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cache-control", b"no-cache")


class _Page(resource.Resource):
    """Base of the dashboard's resources: security headers on every answer, GET and
    HEAD only, and a plain 404 for anything below."""

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def render(self, request):
        """Add the headers, then answer (404 when the path goes deeper than this)."""
        _secure_headers(request)
        if request.method not in self.allowedMethods:
            raise resource.UnsupportedMethod(self.allowedMethods)
        if any(request.postpath):
            return _not_found(request)
        return self.render_GET(request)

    def render_GET(self, request):
        """Overridden: the body of a GET."""
        return _not_found(request)


def _not_found(request):
    request.setResponseCode(404)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"Not found.\n"


class _File(_Page):
    """One file, read at each request (they are small, and edits show at once)."""

    def __init__(self, path, content_type):
        super().__init__()
        self._path = path
        self._content_type = content_type

    def render_GET(self, request):
        """The file's bytes with its type (404 if it vanished)."""
        try:
            with open(self._path, "rb") as f:
                body = f.read()
        except OSError:
            return _not_found(request)
        request.setHeader(b"content-type", self._content_type)
        return body


class _Static(_Page):
    """``/static/<name>``: flat files of known types, nothing else."""

    isLeaf = False

    def __init__(self, root):
        super().__init__()
        self._root = root

    def getChild(self, path, request):
        """The named file, or a 404 page."""
        found = self._lookup(path) if not request.postpath else None
        return found if found is not None else _Page()

    def _lookup(self, path):
        try:
            name = path.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not _NAME.match(name):
            return None
        content_type = CONTENT_TYPES.get(os.path.splitext(name)[1].lower())
        full = os.path.join(self._root, name)
        if content_type is None or not os.path.isfile(full):
            return None
        return _File(full, content_type)


class Dashboard:
    """The dashboard's part of the web root (see :class:`sysadmd.web.site.WebRoot`)."""

    def __init__(self, root=HERE):
        self.root = root
        self._index = _File(os.path.join(root, "index.html"), CONTENT_TYPES[".html"])
        self._static = _Static(root)

    def child(self, path):
        """The resource for the first path segment ``path`` (bytes), or None when it is
        not the dashboard's (REST namespaces, ``/health``)."""
        if path == b"":
            return self._index
        if path == b"static":
            return self._static
        return None
