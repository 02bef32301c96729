"""Access levels of system accounts, from their group memberships."""

import grp
import os
import pwd


def _group_ids(names):
    ids = set()
    for name in names:
        try:
            ids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            # A configured group missing on this host simply grants nothing.
            continue
    return ids


def role_for_system_user(username, full_groups, limited_groups):
    """Return 'full', 'limited' or None for the system account ``username``.

    Root (uid 0) is always 'full'. Otherwise membership of any of ``full_groups`` gives
    'full', else of any of ``limited_groups`` 'limited'. Membership counts the primary
    group as well as supplementary ones. An unknown user gets None.
    """
    try:
        entry = pwd.getpwnam(username)
    except (KeyError, TypeError, ValueError):
        # ValueError: a name with a NUL byte, which no account has.
        return None
    if entry.pw_uid == 0:
        return "full"
    member_of = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    if member_of & _group_ids(full_groups):
        return "full"
    if member_of & _group_ids(limited_groups):
        return "limited"
    return None
