#!/usr/bin/env bash
# The whole suite, RUNS times in a row (3 unless set), while a CPU hog keeps one of the
# machine's cores busy the whole time: timing assumptions that hold on an idle machine
# (a page read before it rendered, a timer that fires late, a process slow to start)
# show up here as failures. The hog is stress-ng --cpu 1 (installed with apt-get when
# missing and possible), or else a shell busy loop; it is stopped at the end, also on
# Ctrl-C. Prints passed/failed/errors/skipped per run; each run's output is kept in
# $STRESS_LOGS (a new temporary folder unless set). Exits 1 when any run failed.
#
#     tests/stress.sh                 # as root, runs tests/setup.sh first, like make test
#     RUNS=1 tests/stress.sh tests/unit   # extra arguments go to pytest
set -u
cd "$(dirname "$0")/.." || exit 2

RUNS=${RUNS:-3}
LOGS=${STRESS_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/sysadmd-stress.XXXXXX")}
mkdir -p "$LOGS"
PYTHON=.venv/bin/python

say() { echo "tests/stress.sh: $*"; }

# The same preparation as make test: the venv, and what the tests need from the machine.
make -s .venv/.installed-stamp || { say "could not create the venv (make)"; exit 2; }
sh tests/setup.sh

if ! command -v stress-ng >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing stress-ng"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q stress-ng >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q stress-ng >/dev/null 2>&1; } ||
        say "apt-get install stress-ng failed: a shell busy loop stands in"
fi

hog=""
stop_hog() {
    if [ -n "$hog" ]; then
        kill "$hog" 2>/dev/null
        wait "$hog" 2>/dev/null
        hog=""
    fi
}
trap 'stop_hog' EXIT
trap 'stop_hog; exit 130' INT TERM

if command -v stress-ng >/dev/null 2>&1; then
    # --timeout 0: until stopped (the default would be a day).
    stress-ng --cpu 1 --timeout 0 --quiet &
    hog=$!
    hog_name="stress-ng --cpu 1"
else
    sh -c 'while :; do :; done' &
    hog=$!
    hog_name="a shell busy loop"
fi
say "CPU hog: $hog_name (pid $hog); $RUNS runs of the suite; logs in $LOGS"

failed_runs=0
summary=""
for run in $(seq 1 "$RUNS"); do
    started=$(date +%s)
    "$PYTHON" -m pytest -q -p no:cacheprovider -rfEs --junitxml="$LOGS/run-$run.xml" "${@:-tests}" \
        >"$LOGS/run-$run.log" 2>&1
    status=$?
    seconds=$(( $(date +%s) - started ))
    if [ -f "$LOGS/run-$run.xml" ]; then
        counts=$("$PYTHON" - "$LOGS/run-$run.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"{passed} passed, {total['failures']} failed, {total['errors']} errors, {total['skipped']} skipped")
EOF
)
    else
        counts="no report (pytest exit $status): see $LOGS/run-$run.log"
    fi
    [ "$status" -eq 0 ] || failed_runs=$((failed_runs + 1))
    line="run $run: $counts in ${seconds}s (pytest exit $status)"
    summary="$summary$line"$'\n'
    say "$line"
    # What failed or skipped, by name (pytest's short summary).
    sed -n '/short test summary info/,$p' "$LOGS/run-$run.log" | grep -E '^(FAILED|ERROR|SKIPPED)' | sed 's/^/    /'
done
stop_hog

echo "--- tests/stress.sh: $RUNS runs beside $hog_name ---"
printf '%s' "$summary"
echo "logs: $LOGS"
[ "$failed_runs" -eq 0 ]
