# driftline — developer entry points. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages of the real servers the test suite starts on 127.0.0.1.
TEST_SERVER_PACKAGES := victoria-metrics:victoria-metrics influxdb:influxd

# Pure code (unit tests and doctests) runs on both cores; every other test (those with real
# servers, workers and timings) one at a time, as before.
UNIT_PATHS := tests/unit detectors alerts schemas streams

.PHONY: install servers lint typecheck unit test demo schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

servers:
	@missing=""; \
	for entry in $(TEST_SERVER_PACKAGES); do \
		command -v "$${entry#*:}" >/dev/null || missing="$$missing $${entry%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing test servers:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -q -n 2 $(UNIT_PATHS)

test: install servers lint typecheck
	$(BIN)/pytest -q -n 2 --durations=10 $(UNIT_PATHS)
	$(BIN)/pytest -q --durations=25 $(foreach path,$(UNIT_PATHS),--ignore-glob='$(path)/*')

demo: install
	$(BIN)/driftline demo

schemas: install
	$(BIN)/python -m schemas.jsonschema docs/schemas
	$(BIN)/python -m schemas.reference_doc docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
