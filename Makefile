# The README's two commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STATE := $(CURDIR)/.state

.PHONY: run test docs bench conformance clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# compat mode puts the checkout on sys.path, so twistd sees twisted/plugins/ here.
	$(BIN)/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

# The original SysAdm Qt client speaks only wss: the two [server] lines printed at start
# serve it with a generated self-signed certificate (it accepts one); SYSADMD_ARGS passes
# them, or any other option, on the command line.
SSL_LISTEN := ssl:12150:interface=127.0.0.1
run: $(STAMP)
	mkdir -p $(STATE)
	@echo "For the original SysAdm Qt client (wss only), put in [server] of etc/sysadmd.ini:"
	@echo "    listen = $(SSL_LISTEN)"
	@echo "    tls_generate = yes"
	@echo "or run: make run SYSADMD_ARGS='--set server.listen=$(SSL_LISTEN) --set server.tls_generate=yes'"
	$(BIN)/twistd -n --pidfile= sysadmd --config etc/sysadmd.ini \
	    --set server.state_dir=$(STATE) --set auth.backends=users $(SYSADMD_ARGS)

# tests/setup.sh first installs what the suite needs from the machine when it is missing
# (zfs-fuse and its daemon, Chromium and playwright-core, openssl, ssh-keygen...), so that
# as root on a fresh Debian machine nothing is skipped. -rfEs: the closing summary names
# every failure, error and skip, with the skip's reason (what to install).
test: $(STAMP)
	sh tests/setup.sh
	$(BIN)/python -m pytest -rfEs tests

# Speed and memory as ratios to baselines run alongside (bench/README.md); BENCH_QUICK=1
# for a shorter run. Needs node and npm (the load client is installed with npm ci).
bench: $(STAMP)
	$(BIN)/python bench/run.py

# The Autobahn|Testsuite against the daemon's echo mode, compression off then on
# (conformance/run.py); installs the suite in a Python 2.7 virtualenv under build/.
conformance: $(STAMP)
	$(BIN)/python conformance/run.py

# The configuration reference in README.rst and the sample ini files in etc/ come from
# the schemas.
docs: $(STAMP)
	$(BIN)/python -m sysadmd.taps.reference ini > etc/sysadmd.ini
	$(BIN)/python -m sysadmd.taps.reference bridge-ini > etc/sysadm-bridge.ini
	$(BIN)/python -m sysadmd.taps.reference readme README.rst
	$(BIN)/python -m sysadmd.fleet.reference > etc/sysadm-fleet.ini

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
