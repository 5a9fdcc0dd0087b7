# relayadmin: two commands for a newcomer.
#   make run   set up .venv, migrate, create the first admin (prints its password once), start the web UI and relayd
#   make test  install what the tests need (Debian's chromium and postfix included) and run the whole suite
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
SMTP_LISTEN ?= 127.0.0.1:2525
METRICS_LISTEN ?= 127.0.0.1:9025
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help run test lint format test-tools

help: ## list every target
	@awk -F':.*## ' '/^[a-z-]+:.*## / { printf "make %-11s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The stamp files make "make" reinstall only when the requirements change.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.runtime

# Test tools from Debian: chromium for the browser tests, postfix for postmap/postconf checks of the
# Postfix export, redis-server for relayd's fleet-wide counters, and Exim unpacked into .cache/exim (it conflicts with postfix as a package).
test-tools: ## install chromium, postfix, redis-server and exim for the tests when missing
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/postmap ] || missing="$$missing postfix"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "Installing for the tests:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		$(SUDO) postfix stop >/dev/null 2>&1 || true; \
	fi
	@bash tools/exim-for-tests.sh

run: $(VENV)/.runtime ## start the web UI (HOST, PORT; default 127.0.0.1:8000) and relayd (SMTP_LISTEN, METRICS_LISTEN; default 127.0.0.1:2525, 127.0.0.1:9025), data under var/
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	HOST=$(HOST) PORT=$(PORT) SMTP_LISTEN=$(SMTP_LISTEN) METRICS_LISTEN=$(METRICS_LISTEN) bash tools/run.sh

lint: $(VENV)/.test ## ruff check, ruff format --check and mypy (relayd strict; pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.test ## reformat and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.test test-tools lint ## lint, check migrations and run the whole test suite
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest
