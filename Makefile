# The README's two commands: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
STATE := $(CURDIR)/.state

.PHONY: run test docs clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# compat mode puts the checkout on sys.path, so twistd sees twisted/plugins/ here.
	$(BIN)/python -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP)
	mkdir -p $(STATE)
	$(BIN)/twistd -n --pidfile= sysadmd --config etc/sysadmd.ini \
	    --set server.state_dir=$(STATE) --set auth.backends=users

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The configuration reference in README.rst and etc/sysadmd.ini comes from the schema.
docs: $(STAMP)
	$(BIN)/python -m sysadmd.config.reference ini > etc/sysadmd.ini
	$(BIN)/python -m sysadmd.config.reference readme README.rst

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
