#!/usr/bin/env bash
# Real ZFS for tests/integration/test_zfs.py: Debian's zfs-fuse, installed when missing
# and its daemon started when it is not running (`make test` runs this through
# tests/setup.sh; test_zfs.py runs it too when zfs-fuse does not answer). Idempotent. It
# always exits 0: where FUSE (or root, or apt) is unavailable it says why and the
# real-ZFS tests skip, saying the same.
set -u

PIDFILE=/var/run/zfs-fuse.pid
DAEMON=/usr/sbin/zfs-fuse
ZPOOL=/usr/sbin/zpool
STARTLOG=${TMPDIR:-/tmp}/zfs-fuse-start.log

say() { echo "tests/zfs/setup.sh: $*"; }

if [ ! -c /dev/fuse ]; then
    say "/dev/fuse is unavailable on this machine: the real-ZFS tests will skip"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "not root: cannot install or start zfs-fuse (as root: apt-get install zfs-fuse); the real-ZFS tests may skip"
    exit 0
fi

if [ ! -x "$DAEMON" ] || [ ! -x "$ZPOOL" ]; then
    say "installing zfs-fuse"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q zfs-fuse >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1
        if ! apt-get install -y -q zfs-fuse >/dev/null; then
            say "apt-get could not install zfs-fuse: the real-ZFS tests will skip"
            exit 0
        fi
    fi
fi

# In a subshell that does not exec, so a zpool aborting while the daemon stops is not
# reported on our stderr.
answers() { ( "$ZPOOL" list; exit $? ) >/dev/null 2>&1; }

if answers; then
    say "zfs-fuse is running"
    exit 0
fi

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; }

# A daemon that is still starting (or stopping) gets time; a dead one is (re)started.
# zfs-fuse refuses to start while its pidfile exists, even a stale one.
for _ in $(seq 1 60); do
    if answers; then
        say "zfs-fuse is running"
        exit 0
    fi
    if ! running; then
        rm -f "$PIDFILE"
        say "starting the zfs-fuse daemon"
        # Not on our stdout/stderr: a caller capturing them (test_zfs.py) would wait
        # for the daemon to close them.
        "$DAEMON" --pidfile "$PIDFILE" </dev/null >"$STARTLOG" 2>&1 ||
            say "zfs-fuse exited with status $?: $(tail -3 "$STARTLOG" | tr '\n' ' ')"
    fi
    sleep 0.25
done
say "zfs-fuse does not answer: $("$ZPOOL" list 2>&1 | tail -1)"
exit 0
