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
	chromium ffmpeg strace

.PHONY: run test deps venv lint unit bench clean

# A worker on a private session bus (so busctl works without touching the system bus); Ctrl-C stops it.
run: venv
	@set -e; T=$$(mktemp -d /tmp/flamenco-run.XXXXXX); trap 'kill $$BUS 2>/dev/null; rm -rf $$T' EXIT; \
	printf '<busconfig><type>session</type><listen>unix:path=%s/bus.sock</listen><auth>EXTERNAL</auth><policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>' $$T > $$T/bus.conf; \
	dbus-daemon --nofork --config-file=$$T/bus.conf --print-address=1 > $$T/address & BUS=$$!; \
	while [ ! -s $$T/address ]; do sleep 0.05; done; \
	echo "private bus: unix:path=$$T/bus.sock   try:"; \
	echo "  busctl --address=unix:path=$$T/bus.sock introspect org.flamenco.Worker1 /org/flamenco/Worker1"; \
	echo "  busctl --address=unix:path=$$T/bus.sock call org.flamenco.Worker1 /org/flamenco/Worker1 org.flamenco.Worker1 Sleep b false"; \
	DBUS_SESSION_BUS_ADDRESS=unix:path=$$T/bus.sock FLAMENCO_HOME=$$T/home \
	  $(PY) -m flamenco_worker -config config/flamenco-worker.yaml -dbus session || true

deps:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PYTHON_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: deps venv lint
	$(PY) -m pytest -q -rs

unit: venv
	$(PY) -m pytest -q -m "not system"

bench: venv
	$(PY) bench/worker_footprint

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
