"""The ``[auth]`` ini section: password backends, tokens, bans, check limits."""

from sysadmd.auth.limits import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUED
from sysadmd.config.options import Option, boolean, integer, number, string, words

_AUTH_BACKENDS = ("pam", "users")


def _backends(text):
    names = words(text)
    if not names:
        raise ValueError("at least one backend is needed (pam, users)")
    for name in names:
        if name not in _AUTH_BACKENDS:
            raise ValueError(f"unknown backend {name!r} (known: {', '.join(_AUTH_BACKENDS)})")
    return names


AUTH = {
    "backends": Option("pam", _backends, "Password backends tried in order: pam, users."),
    "pam_service": Option("login", string, "PAM service for the pam backend (never su)."),
    "full_groups": Option("wheel", words, "Groups whose members get full access (root always does)."),
    "limited_groups": Option("operator", words, "Groups whose members get limited (read-only) access."),
    "users_file": Option("", string, "Users file for the users backend (default <state_dir>/users)."),
    "keys_file": Option(
        "",
        string,
        "Public keys for rpc/auth_ssl (default <state_dir>/keys); signed-in users add "
        "and revoke their own with rpc/settings.",
    ),
    "fleet_keys_file": Option(
        "",
        string,
        "Public keys of this machine's fleet agent for rpc/auth_fleet (default "
        "<state_dir>/fleet_keys), 'label <OpenSSH key>' a line like keys_file; written by "
        "sysadmd-admin fleet init. Its keys may sign in as any local user (never with more "
        "than the user's own access), so only the agent should hold them; a missing file "
        "has none.",
    ),
    "local_login": Option(
        "yes",
        boolean,
        "On a loopback TCP connection, rpc/auth with an empty password signs in the user "
        "owning the client's socket (from the kernel's socket table) when the name is "
        "theirs and they are root or in full_groups or limited_groups.",
    ),
    "token_ttl": Option("900", number(1), "Seconds a token lives, extended on every request."),
    "max_failures": Option(
        "5",
        integer(1),
        "Failed logins from one address before a ban; logins being checked count as failed "
        "until they succeed, so more at once get 429.",
    ),
    "failure_window": Option("600", number(1), "Seconds over which failed logins are counted."),
    "ban_seconds": Option("3600", number(1), "Length of a ban."),
    "ban_loopback": Option("no", boolean, "Also ban loopback addresses (tests use it)."),
    "ban_ipv6_prefix": Option(
        "64",
        integer(16, 128),
        "IPv6 clients are counted and banned by their network of this prefix length "
        "(a host usually holds a whole /64; 128 bans single addresses).",
    ),
    "max_concurrent_checks": Option(
        str(DEFAULT_MAX_CONCURRENT),
        integer(1),
        "Password checks run at once, daemon-wide, in as many threads (each Argon2id check "
        "takes 64 MiB).",
    ),
    "max_queued_checks": Option(
        str(DEFAULT_MAX_QUEUED),
        integer(0),
        "Password checks waiting for their turn, daemon-wide; logins beyond get 429 at once "
        "(32 drain in about 3 s at 0.16 s per Argon2id check, two at a time).",
    ),
    "auth_timeout": Option("30", number(0), "Seconds an unauthenticated connection may stay open."),
    "preauth_max_message_bytes": Option(
        "8192", integer(256), "Largest message accepted before authentication."
    ),
    "failure_delay": Option(
        "1", number(0), "Failed logins are answered no sooner than this many seconds."
    ),
}
