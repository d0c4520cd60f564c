# Labelloop — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := .cache/.setup-done

.PHONY: help setup proto up down status test lint demo bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-8s %s\n", $$1, $$2}'

setup: ## install what this machine lacks (Debian packages, venv, Kafka jars, tools); idempotent
	@bash deploy/local/setup.sh

proto: setup ## regenerate Python code and .pyi stubs from proto/ (pinned grpcio-tools)
	@$(PY) -m labelloop.core.protogen

up: setup ## start the local stack (Kafka, Redis, Triton, MLflow) and the five services
	@$(PY) -m labelloop.stack up

down: ## stop everything `make up` started; leaves no process behind
	@if [ -x $(PY) ]; then $(PY) -m labelloop.stack down; else echo "nothing to stop (no .venv)"; fi

status: ## show what is running and healthy
	@$(PY) -m labelloop.stack status

test: setup ## run the whole test suite against a real local stack it starts itself
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: setup ## ruff (lint + format check) and mypy on the project's code; generated code checked for drift
	@$(VENV)/bin/ruff check services tests
	@$(VENV)/bin/ruff format --check services tests
	@$(VENV)/bin/mypy services
	@$(PY) -m labelloop.core.protogen --check

demo: setup ## run the main job: the whole loop on a real labeled dataset, ending in a report
	@$(PY) -m labelloop.cli.main demo

bench: setup ## run the benchmarks (ONLY=run,run,... for some); JSON reports and PNG plots under bench-results/
	@$(PY) -m labelloop.cli.main bench-all --out bench-results $(if $(ONLY),--only $(ONLY))

clean: down ## remove run state (keeps .cache downloads and .venv)
	rm -rf .run
