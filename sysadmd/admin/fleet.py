"""``sysadmd-admin fleet init``: what one machine needs to join a fleet on NATS.

    sysadmd-admin fleet init --host NAME [--dir DIR] [--fleet-keys-file PATH]
                             [--nats-url URL] [--force]

On the machine, beside its sysadmd, it writes (modes 0600, ``DIR`` 0700):

- ``DIR/key``: a new Ed25519 private key (OpenSSH format), the ``sysadm-fleet`` agent's
  ``rpc/auth_fleet`` key, whose public half is added to the daemon's fleet keys file
  (``[auth] fleet_keys_file``) with the label ``fleet-NAME``;
- ``DIR/nats-credentials``: the machine's NATS user (``NAME``) and a new random password
  (:func:`sysadmd.protocol.fleet.format_credentials`).

and prints on stdout the machine's user entry for the nats-server configuration (paste it
at ``#@machines`` in ``etc/nats-server-fleet.conf``; it holds the NATS password, so treat
the output as a secret) and the ``[fleet]`` lines of the agent's ``sysadm-fleet.ini``.
Stderr says what was written, never a secret. Existing files (or a ``fleet-NAME`` key) are
kept unless ``--force`` is given; nothing is written when one would be refused.
"""

import os
import secrets
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sysadmd.admin.errors import AdminError
from sysadmd.auth.keys_file import KeysFile
from sysadmd.auth.users_file import validate_username
from sysadmd.protocol.fleet import check_host, format_credentials
from sysadmd.util.files import atomic_write, make_private_dirs

DEFAULT_DIR = "/var/db/sysadmd/fleet"
DEFAULT_FLEET_KEYS_FILE = "/var/db/sysadmd/fleet_keys"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
KEY_NAME = "key"
CREDENTIALS_NAME = "nats-credentials"
LABEL_PREFIX = "fleet-"
# 256 random bits: the NATS password is never typed, only pasted.
PASSWORD_BYTES = 32


def add_commands(groups):
    """Register ``fleet init`` on the ``groups`` subparsers."""
    parser = groups.add_parser("fleet", help="join this machine to a fleet on NATS")
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)
    init = commands.add_parser(
        "init",
        help="make this machine's fleet key and NATS credentials; print its nats-server "
        "user entry and [fleet] lines",
    )
    init.add_argument("--host", required=True, metavar="NAME", help="the machine's fleet name")
    init.add_argument(
        "--dir", default=DEFAULT_DIR, metavar="DIR",
        help=f"where the key and the credentials go (default {DEFAULT_DIR})",
    )
    init.add_argument(
        "--fleet-keys-file", default=DEFAULT_FLEET_KEYS_FILE, metavar="PATH",
        help=f"the daemon's [auth] fleet_keys_file (default {DEFAULT_FLEET_KEYS_FILE})",
    )
    init.add_argument(
        "--nats-url", default=DEFAULT_NATS_URL, metavar="URL",
        help=f"the NATS server(s) for [fleet] servers (default {DEFAULT_NATS_URL})",
    )
    init.add_argument(
        "--force", action="store_true",
        help="replace an existing key, credentials file and fleet-NAME key",
    )
    init.set_defaults(run=_init)


def machine_user_entry(host, password):
    """The MACHINES account's user entry of machine ``host`` in nats-server's
    configuration: it may publish only its own events and presence (and read back its own
    stored events, for resuming), and receive only its own requests, on its own inbox
    prefix ``_INBOX_<host>``."""
    check_host(host)
    return (
        f'{{user: "{host}", password: "{password}", permissions: {{\n'
        f'    publish: {{allow: ["sysadm.{host}.events.>", "sysadm.{host}.presence", '
        f'"$JS.API.DIRECT.GET.SYSADM_EVENTS.sysadm.{host}.events.>"]}}\n'
        f'    subscribe: {{allow: ["sysadm.{host}.rpc", "_INBOX_{host}.>"]}}\n'
        "    allow_responses: true\n"
        "}}\n"
    )


def fleet_section(host, servers, credentials, key):
    """The ``[fleet]`` lines of the machine's ``sysadm-fleet.ini``."""
    return (
        "[fleet]\n"
        f"host = {host}\n"
        f"servers = {servers}\n"
        f"credentials = {credentials}\n"
        f"key = {key}\n"
    )


def _checked_servers(text):
    urls = text.split()
    if not urls or not all(url.startswith(("nats://", "tls://")) for url in urls):
        raise AdminError(f"--nats-url {text!r}: give nats:// or tls:// URLs")
    return " ".join(urls)


def _label(host):
    try:
        return validate_username(LABEL_PREFIX + check_host(host))
    except ValueError as e:
        raise AdminError(str(e)) from None


def _refuse_existing(paths, keys, label):
    existing = [path for path in paths if os.path.lexists(path)]
    if existing:
        raise AdminError(f"{existing[0]} exists; pass --force to replace it")
    if any(key.user == label for key in keys.list()):
        raise AdminError(f"{keys.path} already has a {label} key; pass --force to replace it")


def _private_key_bytes(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _init(args):
    label = _label(args.host)
    host = args.host
    servers = _checked_servers(args.nats_url)
    directory = os.path.abspath(args.dir)
    key_path = os.path.join(directory, KEY_NAME)
    credentials_path = os.path.join(directory, CREDENTIALS_NAME)
    keys = KeysFile(os.path.abspath(args.fleet_keys_file))
    # Everything that could refuse is checked before anything is written.
    if not args.force:
        _refuse_existing((key_path, credentials_path), keys, label)
    else:
        keys.list()  # a damaged fleet keys file is reported, not rewritten

    key = ed25519.Ed25519PrivateKey.generate()
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    make_private_dirs(directory)
    atomic_write(key_path, _private_key_bytes(key), 0o600)
    atomic_write(credentials_path, format_credentials(host, password), 0o600)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if args.force:
        keys.remove(label)
    registered = keys.add(label, public + f" sysadm-fleet@{host}".encode("ascii"))

    sys.stderr.write(
        f"wrote {key_path} and {credentials_path}; added {label} ({registered.fingerprint}) "
        f"to {keys.path}\n"
    )
    sys.stdout.write(
        "# nats-server: this machine's user, in the MACHINES account's users (at #@machines\n"
        "# of etc/nats-server-fleet.conf). It holds the machine's NATS password.\n"
        + machine_user_entry(host, password)
        + f"\n# sysadm-fleet.ini on {host}:\n"
        + fleet_section(host, servers, credentials_path, key_path)
    )
