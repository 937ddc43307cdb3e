# The two commands of the README: `make dev` runs a replica, `make test` runs every test.
# Both install what they need first (a virtualenv from PyPI; from npm, the Node test client,
# the official protocol test suites, the browser client the demo page serves and the
# benchmark's Node Socket.IO reference systems).

VENV ?= .venv
PYTHON := $(VENV)/bin/python
NODE_CLIENT := tests/integration/node
DEMO := client_demo
PROTOCOL_SUITES := tests/protocol/node
BENCH_NODE := bench/node

.PHONY: dev cluster test lint settings-docs install clean

install: $(VENV)/.installed $(NODE_CLIENT)/node_modules/.installed $(PROTOCOL_SUITES)/node_modules/.installed \
	$(DEMO)/node_modules/.installed $(BENCH_NODE)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# npm ci where a package-lock.json pins the versions.
%/node_modules/.installed: %/package.json %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# One replica on http://127.0.0.1:8000 (the demo page at /) on the in-memory backend (recovery
# included) unless REDIS_URL is set. AUTH_MODE=dev (any user id, no token) unless the environment says otherwise.
dev: $(VENV)/.installed $(DEMO)/node_modules/.installed
	AUTH_MODE=$${AUTH_MODE:-dev} $(PYTHON) -m server

# Redis, three replicas and Nginx (ip_hash) on loopback; the demo page on http://127.0.0.1:8080.
# Needs nginx and redis-server installed. AUTH_MODE=dev unless the environment says otherwise.
cluster: $(VENV)/.installed $(DEMO)/node_modules/.installed
	AUTH_MODE=$${AUTH_MODE:-dev} $(PYTHON) -m cluster --replicas $${REPLICAS:-3}

# Unit and integration tests with branch coverage of server/ (replica processes included).
test: install lint
	$(PYTHON) -m pytest --cov --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check server kindmap_realtime cluster tools tests bench
	$(VENV)/bin/mypy

# The settings table of docs/configuration.md and .env.example, rewritten from the declarations
# in server/config.py (a unit test fails while either differs from them).
settings-docs: $(VENV)/.installed
	$(PYTHON) -m tools.settings_doc --write

clean:
	rm -rf $(VENV) $(NODE_CLIENT)/node_modules $(PROTOCOL_SUITES)/node_modules $(DEMO)/node_modules \
		$(BENCH_NODE)/node_modules .coverage .coverage.* .pytest_cache
