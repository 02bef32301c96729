"""``sysadmd-admin key ...``: public keys for ``rpc/auth_ssl``."""

import sys

from sysadmd.admin.errors import AdminError
from sysadmd.auth.keys_file import KeysFile


def add_commands(groups):
    """Register ``key add|list|remove`` on the ``groups`` subparsers."""
    parser = groups.add_parser("key", help="manage public keys for key-based login")
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="register a public key; prints its fingerprint")
    add.add_argument("--user", required=True, metavar="NAME", help="the user it logs in as")
    _add_file_option(add)
    add.add_argument(
        "pubkey_file", metavar="PUBKEY_FILE",
        help="OpenSSH (.pub) or PEM public key; '-' reads standard input",
    )
    add.set_defaults(run=_add)

    list_ = commands.add_parser("list", help="list keys: user fingerprint type comment")
    _add_file_option(list_)
    list_.set_defaults(run=_list)

    remove = commands.add_parser("remove", help="remove a key, or every key of a user")
    _add_file_option(remove)
    remove.add_argument("target", metavar="FINGERPRINT_OR_USER")
    remove.set_defaults(run=_remove)


def _add_file_option(parser):
    parser.add_argument(
        "--keys-file", required=True, metavar="PATH", help="the keys file ([auth] keys_file)"
    )


def _read_key(path):
    if path != "-":
        with open(path, "rb") as handle:
            return handle.read()
    stream = getattr(sys.stdin, "buffer", None)
    return stream.read() if stream is not None else sys.stdin.read()


def _add(args):
    key = KeysFile(args.keys_file).add(args.user, _read_key(args.pubkey_file))
    print(key.fingerprint)


def _list(args):
    for key in KeysFile(args.keys_file).list():
        print(" ".join(filter(None, (key.user, key.fingerprint, key.key_type, key.comment))))


def _remove(args):
    removed = KeysFile(args.keys_file).remove(args.target)
    if not removed:
        raise AdminError(f"no key matches {args.target!r} in {args.keys_file}")
