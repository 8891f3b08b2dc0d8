# importbeat: `make run` to try it, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SERVICES := $(PY) -m project.devservices run
export DJANGO_DEBUG ?= 1

.PHONY: help install browser run test bench lint format clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the pinned requirements (idempotent)

run: install ## start PostgreSQL/Redis if needed, migrate, seed the demo, run web+worker+beat+flower
	mkdir -p .run
	$(SERVICES) --write-env -- bash scripts/run.sh

browser: ## install Debian's chromium for the dashboard's browser test (once; needs apt as root)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium could not be installed: the browser test will fail"

test: install browser ## run the whole test suite (PostgreSQL/Redis from the env or embedded)
	mkdir -p .run
	$(SERVICES) --test -- $(PY) -m pytest $(PYTEST_ARGS)

bench: install ## run the benchmarks under tests/bench and print their figures
	mkdir -p .run
	$(SERVICES) --test -- $(PY) -m pytest tests/bench -s -p no:cacheprovider -o python_files='bench_*.py' -o python_functions='bench_*' $(PYTEST_ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the virtualenv and the embedded servers' data
	rm -rf $(VENV) .run
