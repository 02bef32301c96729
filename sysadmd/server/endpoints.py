"""Check listen endpoint strings, and complete ``ssl:`` ones with the configured
certificate (generated on first start when ``[server] tls_generate = yes``)."""

import socket

from twisted.internet.endpoints import serverFromString

from sysadmd.config import ConfigError
from sysadmd.util.hosts import split_endpoint
from sysadmd.util.log import Logger
from sysadmd.util.net import is_loopback

log = Logger()


def _has_param(description, name):
    return any(part.startswith(name + "=") for part in description.split(":"))


def _escape(path):
    return path.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def prepare_endpoints(reactor, config, errors):
    """The listen descriptions to bind, each parsed once to catch typos before binding.

    Problems are appended to ``errors`` as :class:`ConfigError`."""
    from sysadmd.server import tls  # cryptography is only needed with ssl: endpoints

    descriptions = []
    for description in config["server"]["listen"]:
        if description.split(":", 1)[0] == "ssl" and not _has_param(description, "privateKey"):
            cert = config.path("server", "tls_cert", "tls/cert.pem")
            key = config.path("server", "tls_key", "tls/key.pem")
            try:
                tls.ensure_certificate(
                    cert, key, config["server"]["tls_generate"], socket.gethostname()
                )
            except Exception as e:
                errors.append(ConfigError(config.source, "server", "tls_cert", str(e)))
                continue
            log.info(
                "TLS certificate {path} has fingerprint {fingerprint}",
                path=cert,
                fingerprint=tls.certificate_fingerprint(cert),
            )
            description += f":privateKey={_escape(key)}:certKey={_escape(cert)}"
        try:
            serverFromString(reactor, description)
        except Exception as e:
            errors.append(
                ConfigError(config.source, "server", "listen", f"invalid endpoint {description!r}: {e}")
            )
            continue
        descriptions.append(description)
    return descriptions


def is_loopback_endpoint(description):
    """Whether ``description`` is a TCP (or TLS) endpoint bound to a loopback interface
    only; anything else, including no interface (all addresses), is not."""
    fields = split_endpoint(description)
    if fields[0] not in ("tcp", "tcp6", "ssl"):
        return False
    interfaces = [f.split("=", 1)[1] for f in fields[1:] if f.startswith("interface=")]
    return bool(interfaces) and all(i == "localhost" or is_loopback(i) for i in interfaces)
