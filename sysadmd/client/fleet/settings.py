"""How ``sysadm fleet`` reaches NATS: the command line, then ``[fleet]`` in the defaults file.

::

    [fleet]
    nats = tls://nats1.example.org:4222 tls://nats2.example.org:4222
    user = ops
    password_file = ~/.config/sysadm/nats-password
    ca = ~/.config/sysadm/nats-ca.pem

The file is the ``sysadm`` one (``~/.config/sysadm/client.ini``, or ``--config``); its
``[client]`` section is the WebSocket client's and is read by
:mod:`sysadmd.client.config`. The password comes from ``--nats-password-file``, else
``SYSADM_NATS_PASSWORD``, else ``password_file``: never from the command line itself,
where ``ps`` would show it.
"""

import os
import ssl
from dataclasses import dataclass
from typing import List, Optional

from sysadmd.client.config import parse_section, read_defaults_file
from sysadmd.client.errors import ClientError

SECTION = "fleet"
KEYS = ("nats", "user", "password_file", "ca")
PATH_KEYS = ("password_file", "ca")
DEFAULT_SERVER = "nats://127.0.0.1:4222"
PASSWORD_ENV = "SYSADM_NATS_PASSWORD"


@dataclass
class Settings:
    """Everything needed to connect: the server URLs, the user and password (or None),
    the CA file for TLS (or None)."""

    servers: List[str]
    user: Optional[str] = None
    password: Optional[str] = None
    ca: Optional[str] = None

    def tls_context(self):
        """The SSL context verifying the servers with ``ca``, or None for nats-py's
        default (the system's CAs, for tls:// URLs)."""
        if not self.ca:
            return None
        try:
            return ssl.create_default_context(cafile=self.ca)
        except (OSError, ssl.SSLError) as e:
            raise ClientError(f"--nats-ca {self.ca}: {getattr(e, 'strerror', None) or e}") from None

    @property
    def label(self):
        """The servers, for messages."""
        return ", ".join(self.servers)


def parse_fleet_defaults(text, source="<string>"):
    """The ``[fleet]`` values of ini ``text`` (paths with ``~`` expanded, ``nats`` a list);
    :class:`ClientError` naming ``source``, section and key for anything unknown."""
    values = parse_section(text, source, SECTION, KEYS, PATH_KEYS)
    if "nats" in values:
        values["nats"] = values["nats"].replace(",", " ").split()
    return values


def load_fleet_defaults(path=None, environ=None):
    """``[fleet]`` of ``path`` (which must exist) or of the default file (which may not)."""
    found = read_defaults_file(path, environ)
    return parse_fleet_defaults(*found) if found else {}


def read_password(path):
    """The password in the file ``path``: its first line, without the line end."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            password = handle.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ClientError(f"cannot read the NATS password from {path}: {getattr(e, 'strerror', None) or e}") from None
    if not password:
        raise ClientError(f"the NATS password file {path} is empty")
    return password


def settings(options, environ=None):
    """The :class:`Settings` of the parsed ``options``, filled from the defaults file."""
    environ = os.environ if environ is None else environ
    defaults = load_fleet_defaults(getattr(options, "config", None), environ)
    servers = getattr(options, "nats", None) or defaults.get("nats") or [DEFAULT_SERVER]
    for url in servers:
        scheme = url.partition("://")[0] if "://" in url else "nats"
        if scheme not in ("nats", "tls", "ws", "wss"):
            raise ClientError(f"--nats {url}: not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)")
    user = getattr(options, "nats_user", None) or defaults.get("user")
    password_file = getattr(options, "nats_password_file", None)
    if password_file and not user:
        raise ClientError("--nats-password-file goes with --nats-user")
    password = None
    if not user:
        pass  # no user, no password: a server without authorization
    elif password_file:
        password = read_password(password_file)
    elif environ.get(PASSWORD_ENV):
        password = environ[PASSWORD_ENV]
    elif defaults.get("password_file"):
        password = read_password(defaults["password_file"])
    ca = getattr(options, "nats_ca", None) or defaults.get("ca")
    return Settings(list(servers), user, password, os.path.expanduser(ca) if ca else None)
