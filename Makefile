# NetWarden: two commands on a fresh Debian 12 box as root: `make demo`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed-stamp
EXT_STAMP := sensor/.built-stamp
# Cython sources anywhere under sensor/, and the shared record structs.
EXT_SRC := $(shell find sensor -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi') netwarden/records/records.h
SHARED ?= ../shared
# Debian packages the kernel tests and live capture need (installed only when root).
APT_PKGS := nftables iptables ipset iproute2 tcpreplay tcpdump iputils-ping libpcap0.8 procps \
            chromium fonts-dejavu-core nmap hydra openssh-server curl

.PHONY: all venv sysdeps build test test-fast bench demo lint clean

all: build

sysdeps:
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=""; \
	  for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	else echo "not root or no apt-get: skipping system packages ($(APT_PKGS))"; fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "setuptools==84.2.1" wheel
	$(PIP) install -q "cython==3.3.1" "numpy==2.4.6"
	$(PIP) install -q --no-build-isolation -e ".[test,dev]"
	@touch $@

venv: sysdeps $(STAMP)

$(EXT_STAMP): $(STAMP) setup.py $(EXT_SRC)
	$(PY) setup.py -q build_ext --inplace
	@touch $@

build: venv $(EXT_STAMP)

test: build
	$(PY) -m pytest -q tests

test-fast: build
	$(PY) -m pytest -q -x tests/unit

bench: build
	$(PIP) install -q "river==0.26.1"  # the [bench] extra of pyproject.toml: a baseline only
	$(PY) -m benchmarks.run

DEMO_STATE ?= pcaps/demo-state

# The whole loop on the demo capture: detection, incidents with their summaries, and what
# policy would have blocked or escalated (dry run: nothing is enforced).
demo: build
	$(PY) pcaps/generate.py pcaps/demo.pcap
	rm -rf $(DEMO_STATE)
	$(VENV)/bin/netwarden replay pcaps/demo.pcap --state-dir $(DEMO_STATE) --config pcaps/demo.toml
	@echo
	@echo "Next: $(VENV)/bin/netwarden incident show INC-1 --state-dir $(DEMO_STATE) [--lang ja]"
	@echo "      $(VENV)/bin/netwarden explain INC-1 --state-dir $(DEMO_STATE)"
	@echo "      $(VENV)/bin/netwarden top --by flows --state-dir $(DEMO_STATE)"

LINT_PATHS := .  # the whole tree, Python blocks in the docs included

# Quality gates (CI runs them after the suite): lint, formatting, types.
lint: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy sensor controller netwarden

clean:
	rm -rf build $(VENV) $(EXT_STAMP) *.egg-info .pytest_cache
	find sensor \( -name '*.so' -o -name '*.c' \) -delete
