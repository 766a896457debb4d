# `make demo` and `make test` install what is missing, start what they need and stop it again.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := ncbi-blast+ ncbi-rrna-data chromium

.PHONY: setup system-packages test lint infra-check demo clean

setup: system-packages $(VENV)/.installed node_modules/.installed

# BLAST+, the real rRNA databases (in /usr/share/ncbi/data) and Chromium for the browser tests,
# from the system's packages.
system-packages:
	@if ! command -v blastn >/dev/null || [ ! -e /usr/share/ncbi/data/16SCore.nsq ] \
		|| [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(APT_PACKAGES); \
	fi

$(VENV)/.installed: requirements.txt requirements-client.txt requirements-server.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite, the Azure Storage emulator, into ./node_modules.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The offline checks of infra/ (Bicep parse, checkov) use a virtualenv of their own.
infra-check:
	bash infra/check.sh

test: setup lint infra-check
	$(PY) -m pytest

demo: setup
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) .venv-infra node_modules .pytest_cache .ruff_cache
