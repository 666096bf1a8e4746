# zonewarden: `make demo` and `make test` each set up what they need on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test lint unit pcaps bench clean

setup: system-deps $(STAMP)

# Debian packages: installed only when a command is missing (root, or sudo when available).
system-deps:
	@missing=""; \
	for cmd in tshark:tshark tcpdump:tcpdump tcpreplay:tcpreplay mosquitto:mosquitto mosquitto_passwd:mosquitto-clients ip:iproute2 \
	           rsvg-convert:librsvg2-bin nft:nftables; do \
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

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: setup
	@mkdir -p out
	$(BIN)/zonewarden serve --db out/demo.db --replay pcaps/*.pcap --print-admin-token

pcaps: setup
	$(BIN)/python -m pcaps.generate.all --out pcaps/

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
