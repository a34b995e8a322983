# The two commands that matter: `make run` (a demo farm) and `make test` (install test needs, run everything).
# Debian's own interpreter is used so the tests exercise the same aiohttp/dbus-next/PyYAML the .deb relies on.
PYTHON_SYS ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip install -q --disable-pip-version-check
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The newest releases from PyPI, without Debian's packages: catches drift before Debian ships it.
VENV_LATEST ?= .venv-latest

# What `make run` needs: the runtime libraries, a virtualenv and a bus daemon. Nothing for the tests.
RUN_APT_PACKAGES := python3-aiohttp python3-dbus-next python3-sdnotify python3-systemd python3-yaml python3-bcrypt python3-setuptools \
	python3-venv dbus-daemon
# Debian packages the test suite drives for real (see tests/README.md for which test needs what).
APT_PACKAGES := $(RUN_APT_PACKAGES) dbus systemd systemd-container mmdebstrap \
	debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools lintian \
	python3-pil chromium ffmpeg strace nodejs postgresql python3-psycopg haproxy \
	python3-pytest python3-pytest-asyncio python3-pytest-timeout python3-pytest-xdist python3-jsonschema

.PHONY: run run-deps test deps venv lint unit test-latest bench reliability clean deb

# The farm: manager (SQLite under ./run), one worker on a private D-Bus, a demo job. Ctrl-C stops it.
run: run-deps $(VENV)/.runtime
	$(PY) -m flamenco_manager.demo

# apt only when something is missing, so a prepared machine needs no sudo.
run-deps:
	@missing=$$(for p in $(RUN_APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)

# Runtime only: Debian's libraries through system site-packages, this tree installed editable (offline).
$(VENV)/.runtime: pyproject.toml
	$(PYTHON_SYS) -m venv --system-site-packages $(VENV)
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

# The tests' extras on top of the runtime venv.
$(VENV)/.installed: $(VENV)/.runtime pyproject.toml
	$(PIP) -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check . bench/*
	$(VENV)/bin/ruff format --check . bench/*
	$(VENV)/bin/mypy

test: deps venv lint
	$(PY) -m pytest -q -rs

# Everything that starts no whole farm (tests/system is excluded by path in tests/conftest.py) and
# waits out no limit or interval, against the SQLite store only (the [postgresql] cases run the manager
# suite a second time: `make test`), one pytest process per CPU: ~55 s on two idle cores.
unit: venv
	$(PY) -m pytest -q -n auto -m "not system and not slow and not postgresql and not javascript"

$(VENV_LATEST)/.installed: pyproject.toml
	$(PYTHON_SYS) -m venv $(VENV_LATEST)
	$(VENV_LATEST)/bin/python -m pip install -q --disable-pip-version-check -U pip
	$(VENV_LATEST)/bin/python -m pip install -q --disable-pip-version-check -U -e '.[test,thumbnails]'
	touch $@

# Manager and worker unit tests against the newest PyPI releases (no system site-packages).
test-latest: $(VENV_LATEST)/.installed
	$(VENV_LATEST)/bin/python -m pip install -q --disable-pip-version-check -U -e '.[test,thumbnails]'
	$(VENV_LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(aiohttp|dbus-next|pyyaml|bcrypt|sdnotify|pillow|pytest[a-z-]*)=='
	$(VENV_LATEST)/bin/python -m pytest -q -rs -n auto -m "not system"

# The long versions of every fault, fuzzing and security test, ending with a summary table.
reliability: deps venv
	FLAMENCO_LONG=1 $(PY) -m pytest -q -rs -m reliability

bench: venv
	$(PY) bench/worker_footprint
	$(PY) bench/action_latency
	$(PY) bench/task_output
	$(PY) bench/manager_load
	$(PY) bench/replica_failover
	$(PY) bench/job_deletion
	$(PY) bench/job_scripts
	$(PY) bench/manager_scripts
	$(PY) bench/web_ui

# flamenco-worker and flamenco-manager .debs in dist/ (or DEB_OUT), built from a copy of the tree with
# packaging/debian as debian/ by Debian's own Python, then checked with lintian (no errors, no warnings).
DEB_OUT ?= dist
deb:
	packaging/build-deb $(DEB_OUT)

clean:
	rm -rf $(VENV) $(VENV_LATEST) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache \
		.schemathesis .hypothesis run test-artifacts
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
