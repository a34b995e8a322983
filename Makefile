# The two commands that matter: `make run` (a demo farm) and `make test` (install test needs, run everything).
# Debian's own interpreter is used so the tests exercise the same aiohttp/dbus-next/PyYAML the .deb relies on.
PYTHON_SYS ?= /usr/bin/python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the test suite drives for real (see tests/README.md for which test needs what).
APT_PACKAGES := dbus dbus-daemon systemd systemd-container mmdebstrap \
	debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools python3-venv lintian \
	python3-aiohttp python3-dbus-next python3-sdnotify python3-yaml python3-bcrypt python3-pil \
	chromium ffmpeg strace \
	python3-pytest python3-pytest-asyncio python3-jsonschema

.PHONY: run test deps venv lint unit bench reliability clean deb

# The farm: manager (SQLite under ./run), one worker on a private D-Bus, a demo job. Ctrl-C stops it.
run: venv
	$(PY) -m flamenco_manager.demo

deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PYTHON_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check . bench/*
	$(VENV)/bin/ruff format --check . bench/*

test: deps venv lint
	$(PY) -m pytest -q -rs

unit: venv
	$(PY) -m pytest -q -m "not system"

# The long versions of every fault, fuzzing and security test, ending with a summary table.
reliability: deps venv
	FLAMENCO_LONG=1 $(PY) -m pytest -q -rs -m reliability

bench: venv
	$(PY) bench/worker_footprint
	$(PY) bench/action_latency
	$(PY) bench/task_output
	$(PY) bench/manager_load
	$(PY) bench/job_deletion

# flamenco-worker and flamenco-manager .debs in dist/ (or DEB_OUT), built from a copy of the tree with
# packaging/debian as debian/ by Debian's own Python, then checked with lintian (no errors, no warnings).
DEB_OUT ?= dist
deb:
	packaging/build-deb $(DEB_OUT)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
