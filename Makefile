# The two commands of the README: `make dev` runs a replica, `make test` runs every test.
# Both install what they need first (a virtualenv from PyPI, the Node test client from npm).

VENV ?= .venv
PYTHON := $(VENV)/bin/python
NODE_CLIENT := tests/integration/node

.PHONY: dev test lint install clean

install: $(VENV)/.installed $(NODE_CLIENT)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# One replica on http://127.0.0.1:8000 with the in-memory manager unless REDIS_URL is set.
# AUTH_MODE=dev (any user id, no token) unless the environment says otherwise.
dev: $(VENV)/.installed
	AUTH_MODE=$${AUTH_MODE:-dev} $(PYTHON) -m server

# Unit and integration tests with branch coverage of server/ (replica processes included).
test: install lint
	$(PYTHON) -m pytest --cov --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check server tests devtools bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(NODE_CLIENT)/node_modules .coverage .coverage.* .pytest_cache
