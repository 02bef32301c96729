"""The ``users`` backend's file: daemon-only accounts with Argon2id password hashes.

One account a line, ``name:role:hash``, where role is ``full`` or ``limited`` and hash is
an Argon2id PHC string (``$argon2id$v=19$m=...``, which never contains a colon). Lines
starting with ``#`` and blank lines are ignored and kept when ``sysadmd-admin`` rewrites
the file.
"""

import re

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from sysadmd.auth.filestore import CachedFile, is_blank_or_comment, join_lines

ROLES = ("full", "limited")

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")

# Verified against when the user is unknown, so that case costs one hash like the others.
_DUMMY_PASSWORD = "sysadmd dummy password, never accepted"


class UsersFileError(Exception):
    """The users file is damaged, or a requested change cannot be made."""


def validate_username(name):
    """Return ``name`` when it is 1-64 of ``A-Z a-z 0-9 _ . -``, else raise ValueError."""
    if not isinstance(name, str) or not _USERNAME.match(name):
        raise ValueError(
            f"invalid user name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-'"
        )
    return name


class UsersFile:
    """The users file at ``path``: read (cached by file identity), verify, and edit.

    ``hasher`` is an ``argon2.PasswordHasher``; the default is argon2-cffi's own (Argon2id,
    its recommended cost). Tests pass a cheap one.
    """

    def __init__(self, path, hasher=None):
        self.path = path
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._store = CachedFile(path, self._parse)
        # Made now, not at the first unknown user, so that login is not slower than
        # a wrong password.
        self._dummy_hash = None
        self._get_dummy_hash()

    def _parse(self, text):
        users = {}
        first_seen = {}
        for number, line in enumerate(text.splitlines(), 1):
            if is_blank_or_comment(line):
                continue
            try:
                name, role, hashed = self._parse_line(line)
            except ValueError as error:
                raise UsersFileError(f"{self.path}, line {number}: {error}") from None
            if name in users:
                raise UsersFileError(
                    f"{self.path}, line {number}: user {name!r} already defined on line "
                    f"{first_seen[name]}"
                )
            users[name] = (role, hashed)
            first_seen[name] = number
        return users

    @staticmethod
    def _parse_line(line):
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            raise ValueError("expected name:role:argon2id-hash")
        name, role, hashed = parts
        validate_username(name)
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (expected full or limited)")
        try:
            parameters = extract_parameters(hashed)
        except InvalidHashError:
            parameters = None
        if parameters is None or parameters.type is not Type.ID:
            raise ValueError("the password hash is not an Argon2id hash")
        return name, role, hashed

    def load(self):
        """Return ``{name: (role, hash)}``; a missing file has no users.

        Raises :class:`UsersFileError` naming the file and line of a malformed entry.
        """
        return self._store.read()

    def list(self):
        """Return ``[(name, role), ...]`` sorted by name."""
        return sorted((name, role) for name, (role, _) in self.load().items())

    def role_of(self, name):
        """Return the role of the user ``name``, or None when there is no such user."""
        entry = self.load().get(name)
        return entry[0] if entry is not None else None

    def verify(self, name, password):
        """Return the user's role when ``password`` is right, else None.

        An unknown user costs one Argon2id verification too, against a fixed dummy hash
        made with the same parameters, so timing does not tell which names exist.
        """
        users = self.load()
        entry = users.get(name) if isinstance(name, str) else None
        if not isinstance(password, str):
            password, entry = "", None
        if entry is None:
            self._check(self._get_dummy_hash(), password)
            return None
        role, hashed = entry
        return role if self._check(hashed, password) else None

    def _check(self, hashed, password):
        try:
            return self._hasher.verify(hashed, password)
        except VerificationError:
            # VerifyMismatchError and a hash the library cannot use alike: no access.
            return False

    def _get_dummy_hash(self):
        # Lazily: hashing is slow, and most daemons never see an unknown name.
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(_DUMMY_PASSWORD)
        return self._dummy_hash

    def _hash_new_password(self, password):
        if not isinstance(password, str) or not password:
            raise UsersFileError("the password must not be empty")
        return self._hasher.hash(password)

    def add(self, name, role, password):
        """Add the user ``name`` with ``role`` and ``password``; error if it exists."""
        self._validate(name)
        if role not in ROLES:
            raise UsersFileError(f"unknown role {role!r} (expected full or limited)")
        # Hash before taking the file lock: it is the slow part.
        hashed = self._hash_new_password(password)

        def edit(text):
            if name in self._parse(text):
                raise UsersFileError(f"user {name!r} already exists in {self.path}")
            lines = text.splitlines()
            lines.append(f"{name}:{role}:{hashed}")
            return join_lines(lines), None

        self._store.update(edit)

    def set_password(self, name, password):
        """Replace the password of the existing user ``name``."""
        self._validate(name)
        hashed = self._hash_new_password(password)

        def replace(role, _old_hash):
            return f"{name}:{role}:{hashed}"

        self._rewrite_user(name, replace)

    def remove(self, name):
        """Remove the existing user ``name``."""
        self._validate(name)
        self._rewrite_user(name, lambda role, old_hash: None)

    def _rewrite_user(self, name, replace):
        # Edits the one line of ``name`` in place so comments and order are kept;
        # ``replace(role, hash)`` returns the new line, or None to drop it.
        def edit(text):
            if name not in self._parse(text):
                raise UsersFileError(f"no user {name!r} in {self.path}")
            lines = []
            for line in text.splitlines():
                if not is_blank_or_comment(line):
                    line_name, role, hashed = self._parse_line(line)
                    if line_name == name:
                        line = replace(role, hashed)
                        if line is None:
                            continue
                lines.append(line)
            return join_lines(lines), None

        self._store.update(edit)

    @staticmethod
    def _validate(name):
        try:
            validate_username(name)
        except ValueError as error:
            raise UsersFileError(str(error)) from None
