"""``sysadmd-admin user ...``: accounts of the ``users`` backend."""

import getpass
import sys

from sysadmd.admin.errors import AdminError
from sysadmd.auth.users_file import ROLES, UsersFile


def add_commands(groups):
    """Register ``user add|passwd|remove|list`` on the ``groups`` subparsers."""
    parser = groups.add_parser("user", help="manage users of the 'users' backend")
    commands = parser.add_subparsers(dest="command", metavar="ACTION", required=True)

    add = commands.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    _add_file_option(add)
    _add_password_stdin_option(add)
    add.set_defaults(run=_add)

    passwd = commands.add_parser("passwd", help="change a user's password")
    passwd.add_argument("name")
    _add_file_option(passwd)
    _add_password_stdin_option(passwd)
    passwd.set_defaults(run=_passwd)

    remove = commands.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    _add_file_option(remove)
    remove.set_defaults(run=_remove)

    list_ = commands.add_parser("list", help="list users and their roles")
    _add_file_option(list_)
    list_.set_defaults(run=_list)


def _add_file_option(parser):
    parser.add_argument(
        "--users-file", required=True, metavar="PATH",
        help="the users file ([auth] users_file)",
    )


def _add_password_stdin_option(parser):
    parser.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from the first line of standard input",
    )


def read_new_password(from_stdin):
    """Return a new, non-empty password: one line of stdin, or typed twice at a prompt."""
    if from_stdin:
        password = sys.stdin.readline()
        if password.endswith("\n"):
            password = password[:-1]
            # A line typed or piped on Windows-style terminals ends with CR LF.
            if password.endswith("\r"):
                password = password[:-1]
    else:
        try:
            password = getpass.getpass("New password: ")
            again = getpass.getpass("Repeat password: ")
        except EOFError:
            raise AdminError("no password given") from None
        if password != again:
            raise AdminError("the passwords do not match")
    if not password:
        raise AdminError("the password must not be empty")
    return password


def _add(args):
    password = read_new_password(args.password_stdin)
    UsersFile(args.users_file).add(args.name, args.role, password)


def _passwd(args):
    users_file = UsersFile(args.users_file)
    # Checked first so nobody types a password for a user that does not exist.
    if users_file.role_of(args.name) is None:
        raise AdminError(f"no user {args.name!r} in {args.users_file}")
    users_file.set_password(args.name, read_new_password(args.password_stdin))


def _remove(args):
    UsersFile(args.users_file).remove(args.name)


def _list(args):
    for name, role in UsersFile(args.users_file).list():
        print(f"{name} {role}")
