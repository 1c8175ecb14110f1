# The two commands: `make serve` and `make test`. Each sets up what it needs first
# (virtualenv, dependencies, migrations) and skips what is already done.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
STATIC_STAMP := var/static/.collected

export HOST ?= 127.0.0.1
export PORT ?= 8007

.PHONY: serve test lint openapi bench migrate setup clean

# Keys are off for local use unless the environment sets MMM_REQUIRE_AUTH; gunicorn.conf.py
# warns loudly and refuses a non-loopback HOST that way.
serve: $(RUNTIME_STAMP) $(STATIC_STAMP) migrate
	MMM_REQUIRE_AUTH="$${MMM_REQUIRE_AUTH:-false}" exec $(BIN)/gunicorn -c mmm/gunicorn.conf.py mmm.wsgi

test: lint $(DEV_STAMP) $(STATIC_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff check and format --check over the whole tree, with the rules of ruff.toml.
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(DEV_STAMP) $(STATIC_STAMP)
	$(BIN)/python -m bench.compare $(COMPARE_ARGS)
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.propagation
	$(BIN)/python -m bench.dashboard
	$(BIN)/python -m bench.streaming
	$(BIN)/python -m bench.routing
	$(BIN)/python -m bench.routing_reload
	$(BIN)/python -m bench.fleet
	$(BIN)/python -m bench.translation
	$(BIN)/python -m bench.ingress
	$(BIN)/python -m bench.tracing
	$(BIN)/python -m bench.http_parse
	$(BIN)/python -m bench.validation
	$(BIN)/python -m bench.per_request_costs

# The committed OpenAPI document; tests/test_openapi.py fails when it differs from the code's.
openapi: $(RUNTIME_STAMP)
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml

setup: $(RUNTIME_STAMP) $(STATIC_STAMP) migrate

migrate: $(RUNTIME_STAMP)
	$(BIN)/python manage.py migrate --noinput -v0

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

$(STATIC_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python manage.py collectstatic --noinput -v0
	touch $@

clean:
	rm -rf $(VENV) var/static
