# zonewarden: `make demo` and `make test` each set up what they need on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test lint unit pcaps bench fuzz clean dashboard

setup: system-deps $(STAMP)

# Debian packages: installed only when a command is missing (root, or sudo when available).
system-deps:
	@missing=""; \
	for cmd in tshark:tshark tcpdump:tcpdump tcpreplay:tcpreplay mosquitto:mosquitto mosquitto_passwd:mosquitto-clients ip:iproute2 chromium:chromium \
	           rsvg-convert:librsvg2-bin node:nodejs npm:npm nft:nftables pg_ctlcluster:postgresql; do \
	  c=$${cmd%%:*}; p=$${cmd##*:}; \
	  command -v $$c >/dev/null 2>&1 || [ -x /usr/sbin/$$c ] || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup dashboard lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The demo plant (pcaps/generate/demo.py): the sample captures, recorded on loopback, given plant addresses
# with tcprewrite, a three-zone policy, a device CA and names/tags for the devices; then served with a
# fresh admin token (the URL and token are printed once the API listens; Ctrl-C stops it).
DEMO := out/demo
DEMO_PORT ?= 8000

demo: setup dashboard
	$(BIN)/python -m pcaps.generate.demo $(DEMO) --db $(DEMO)/zonewarden.db
	$(BIN)/zonewarden serve --db $(DEMO)/zonewarden.db --replay $(DEMO)/plant-*.pcap \
	  --policy $(DEMO)/policy.yaml --pki-dir $(DEMO)/pki --pki-passphrase-file $(DEMO)/ca-passphrase \
	  --port $(DEMO_PORT) --print-admin-token

pcaps: setup
	$(BIN)/python -m pcaps.generate.all --out pcaps/

# The dashboard (dashboard/, npm + Vite) built into api/static/, which the API serves at "/". npm ci runs
# only when node_modules is missing or older than the lock file, so a built tree rebuilds air-gapped.
DASHBOARD_SOURCES := $(shell find dashboard/src -type f 2>/dev/null) dashboard/index.html \
	dashboard/package.json dashboard/package-lock.json dashboard/vite.config.ts dashboard/tsconfig.json

dashboard: api/static/index.html

api/static/index.html: $(DASHBOARD_SOURCES)
	@command -v npm >/dev/null 2>&1 || { echo "the dashboard needs Node.js 20+ and npm"; exit 1; }
	cd dashboard && { [ node_modules/.package-lock.json -nt package-lock.json ] \
	  || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build

bench: setup
	$(BIN)/python bench/throughput.py

# Coverage-guided fuzzing (tests/fuzz/atheris_targets.py) of every reader of hostile input, FUZZ_SECONDS
# per target; each keeps its corpus in out/fuzz/TARGET/corpus between runs, and stops at the first crash
# (written there as crash-<sha1>).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= capture pipeline modbus opcua mqtt tls rules policy

fuzz: setup
	@for target in $(FUZZ_TARGETS); do \
	  dir=out/fuzz/$$target; mkdir -p $$dir/corpus; echo "== $$target ($(FUZZ_SECONDS) s)"; \
	  ( cd $$dir && $(CURDIR)/$(BIN)/python $(CURDIR)/tests/fuzz/atheris_targets.py $$target --seeds seeds \
	    --workdir . -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=60 corpus ) || exit 1; \
	done

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
