#!/bin/sh
# What the whole suite needs from the machine, installed or created when missing, so that
# `make test` as root on a fresh Debian machine runs every test (none skipped):
#   - the commands some tests compare with or drive: openssl (test_tls), ssh-keygen
#     (openssh-client: test_keys_file), useradd/chpasswd/userdel (passwd: test_auth's PAM
#     tests), mount/umount (mount: test_abuse's full state directory on a tmpfs),
#     nats-server (the fleet tests: tests/natsserver.py);
#   - a non-root account whose primary group has a name (test_backends; Debian's
#     base-passwd has one, `daemon`, but a trimmed image may not);
#   - real ZFS: zfs-fuse, installed and started (tests/zfs/setup.sh);
#   - Chromium and playwright-core for the dashboard (tests/browser/setup.sh).
# Idempotent and quick when everything is there. It never fails the build: what it cannot
# set up it names, and the tests that need it skip saying what to install.
cd "$(dirname "$0")" || exit 0

say() { echo "tests/setup.sh: $*"; }

root=no
[ "$(id -u)" -eq 0 ] && root=yes

# apt-get update only once, and only when an install needs it.
updated=no
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no apt-get here: install $* by hand, or the tests that need it skip"
        return 1
    fi
    if [ "$root" != yes ]; then
        say "not root: cannot install $* (run: apt-get install $*); the tests that need it skip"
        return 1
    fi
    say "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y -q "$@" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$updated" = no ]; then
        apt-get update -q >/dev/null 2>&1
        updated=yes
    fi
    if ! apt-get install -y -q "$@" >/dev/null; then
        say "apt-get install $* failed: the tests that need it skip"
        return 1
    fi
}

# command -> the Debian package that has it.
missing=""
for pair in openssl:openssl ssh-keygen:openssh-client useradd:passwd chpasswd:passwd \
            userdel:passwd groupadd:passwd mount:mount umount:mount getent:libc-bin \
            nats-server:nats-server; do
    command=${pair%%:*}
    package=${pair#*:}
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$command" >/dev/null 2>&1; then
        case " $missing " in *" $package "*) ;; *) missing="$missing $package" ;; esac
    fi
done
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # one word per package
    apt_install $missing
fi

# A non-root account whose primary group has a name (any will do; none is changed).
named_group_account() {
    getent passwd | awk -F: '$3 != 0 { print $4 }' | while read -r gid; do
        if getent group "$gid" >/dev/null 2>&1; then echo yes; break; fi
    done
}
if [ -z "$(named_group_account)" ]; then
    if [ "$root" = yes ]; then
        say "creating the system account sysadmd-test (its own group) for test_backends"
        PATH="$PATH:/usr/sbin:/sbin" useradd --system --user-group --no-create-home \
            --shell /usr/sbin/nologin sysadmd-test || say "useradd failed"
    else
        say "no non-root account with a named primary group, and not root to create one"
    fi
fi

bash zfs/setup.sh
sh browser/setup.sh
exit 0
