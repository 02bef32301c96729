"""``sysadmd-admin``: manage the users and keys files of sysadmd, its bridges and its
fleet credentials.

Each group of subcommands lives in its own module with an ``add_commands(subparsers)``
function that registers its parsers and sets ``run(args)`` on each; add a module to
``COMMAND_MODULES`` to add a group. A command signals a user mistake by raising
:class:`AdminError` (or the files' own errors), which becomes one line on stderr and
exit status 1; argparse usage errors exit with 2.
"""

import argparse
import sys

from sysadmd.admin import bridge, fleet, keys, users
from sysadmd.admin.errors import AdminError
from sysadmd.auth.keys_file import KeysFileError
from sysadmd.auth.users_file import UsersFileError

PROG = "sysadmd-admin"

COMMAND_MODULES = (users, keys, bridge, fleet)

# Mistakes a user can make, reported without a traceback.
_USER_ERRORS = (AdminError, UsersFileError, KeysFileError)


def build_parser():
    """Return the argument parser with every command group registered."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Manage sysadmd's users, public keys, bridges and fleet credentials."
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.add_commands(groups)
    return parser


def _describe_os_error(error):
    if error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    return str(error)


def main(argv=None):
    """Run ``sysadmd-admin`` with ``argv`` (default ``sys.argv[1:]``); return the exit
    status."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except _USER_ERRORS as error:
        message = str(error)
    except OSError as error:
        message = _describe_os_error(error)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    else:
        return 0
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
