#!/bin/sh
# Installs what the dashboard's browser tests need, when it is missing:
#   - Debian's chromium (/usr/bin/chromium), with apt-get;
#   - npm's playwright-core (tests/browser/node_modules), with `npm ci` (no browser download).
# Idempotent and quick when everything is there. It never fails the build: when it
# cannot install something it says why and exits 0, and the tests then skip, saying so.
cd "$(dirname "$0")" || exit 0

say() { echo "tests/browser/setup.sh: $*"; }

if [ ! -x /usr/bin/chromium ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no /usr/bin/chromium and no apt-get here: browser tests will skip"
    elif [ "$(id -u)" -ne 0 ]; then
        say "no /usr/bin/chromium and not root (run: apt-get install chromium): browser tests will skip"
    else
        say "installing Debian's chromium"
        export DEBIAN_FRONTEND=noninteractive
        if ! { apt-get install -y -q chromium >/dev/null 2>&1 || \
               { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; }; }; then
            say "apt-get install chromium failed: browser tests will skip"
        fi
    fi
fi

if [ ! -d node_modules/playwright-core ]; then
    if ! command -v npm >/dev/null 2>&1; then
        say "npm is not installed (Node.js 20 or newer is needed): browser tests will skip"
    else
        say "installing playwright-core (npm ci)"
        # playwright-core never downloads a browser; the variable makes sure of it.
        if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error; then
            say "npm ci failed: browser tests will skip"
        fi
    fi
fi
exit 0
