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
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help run test lint format test-tools

help:
	@echo "make run    start the web UI on http://$(HOST):$(PORT) and relayd on $(SMTP_LISTEN) (data under var/)"
	@echo "make test   run the whole test suite"

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
# Postfix export, and Exim unpacked into .cache/exim (it conflicts with postfix as a package).
test-tools:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/postmap ] || missing="$$missing postfix"; \
	if [ -n "$$missing" ]; then \
		echo "Installing for the tests:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		$(SUDO) postfix stop >/dev/null 2>&1 || true; \
	fi
	@bash tools/exim-for-tests.sh

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py ensure_admin
	HOST=$(HOST) PORT=$(PORT) SMTP_LISTEN=$(SMTP_LISTEN) bash tools/run.sh

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(VENV)/.test test-tools lint
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest
