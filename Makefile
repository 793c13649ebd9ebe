# civicstream developer and CI entry points. `make` (or `make help`) lists the targets.
#
# Works on a fresh Debian machine: missing python3-venv, Java, Maven or Prometheus are
# installed with apt-get (as root, or through sudo) only when they are missing.

PYTHON ?= python3
VENV ?= .venv
KAFKA_PORT ?= 9092
KAFKA_CONTROLLER_PORT ?= 9093
KAFKA_DATA_DIR ?= .kafka
PYTEST_ARGS ?=

LOCALKAFKA := $(PYTHON) deploy/local-kafka/localkafka.py
KAFKA_OPTS := --data-dir $(KAFKA_DATA_DIR)
VENV_STAMP := $(VENV)/.installed

# apt-get install as root, or through sudo when we are not root.
APT_INSTALL = \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "need root (or sudo) to apt-get install $(1)" >&2; exit 1; fi; \
	echo ">> apt-get install $(1)"; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(1)

.DEFAULT_GOAL := help
.PHONY: help venv install sys-python sys-java sys-prometheus sys-test kafka-jars kafka-up \
	kafka-down kafka-status kafka-up-sasl kafka-down-sasl pg-up pg-down test lint run serve bench \
	bench-api vendor-leaflet bench-anomaly bench-neighbours clean distclean sys-go deploy-schemas \
	docker-lock audit chaos fuzz-long soak sys-cc compiled uncompiled

help: ## list the targets
	@echo "usage: make TARGET [PYTHON=python3] [KAFKA_PORT=9092] [PYTEST_ARGS=...]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

# ---------------------------------------------------------------- system packages

sys-python: ## make sure $(PYTHON) can create virtualenvs (apt: python3-venv)
	@command -v $(PYTHON) >/dev/null 2>&1 || { $(call APT_INSTALL,python3 python3-venv); }
	@$(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1 || \
		{ $(call APT_INSTALL,python3-venv); }

sys-java: ## make sure java and mvn exist (apt: openjdk-17-jre-headless, maven)
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then $(call APT_INSTALL,$$missing); fi

sys-prometheus: ## make sure prometheus and promtool exist (apt: prometheus; the tests run both)
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || \
		{ $(call APT_INSTALL,prometheus); }
	@command -v promtool >/dev/null 2>&1 || \
		{ echo "the prometheus package installed no promtool" >&2; exit 1; }
	@echo ">> $$(prometheus --version 2>&1 | head -n 1)"

# The test suite also runs a real PostgreSQL server (the store's second backend), drives
# the residents' page in headless Chromium and makes a test CA for its SASL_SSL broker with
# openssl: Debian's packages, installed only when missing.
sys-test: ## make sure PostgreSQL server binaries, chromium, chromedriver and openssl exist (apt)
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		missing="$$missing postgresql"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then $(call APT_INSTALL,$$missing); fi

sys-cc: ## make sure a C compiler and Python's headers exist (apt: gcc, python3-dev); mypyc needs them
	@command -v cc >/dev/null 2>&1 || { $(call APT_INSTALL,gcc libc6-dev); }
	@$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || \
		{ $(call APT_INSTALL,python3-dev); }

sys-go: ## make sure the go command exists (apt: golang-go); it fetches the deploy schemas
	@command -v go >/dev/null 2>&1 || { $(call APT_INSTALL,golang-go); }

# ---------------------------------------------------------------- python environment

venv: $(VENV_STAMP) ## create .venv and pip install -e '.[dev]' (again only when pyproject.toml changes)
install: $(VENV_STAMP) ## same as venv

$(VENV_STAMP): pyproject.toml | sys-python
	@test -x $(VENV)/bin/python || { echo ">> $(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# ---------------------------------------------------------------- the compiled hot path

# The hot path (the air-quality step, the sink's row conversion) compiled in place with
# mypyc (civicstream/compiled.py lists the modules); rebuilt when any source of theirs may
# have changed. build/compiled.json records the sources it was built from: commands refuse
# to run a stale build.
COMPILED := build/compiled.json

compiled: $(COMPILED) ## compile the hot path (air-quality step, sink rows) with mypyc (~30 s; run, test, bench do it)

$(COMPILED): $(VENV_STAMP) civicstream/compiled.py $(wildcard processors/*.py streams/*.py schemas/*.py sinks/*.py) | sys-cc
	@echo ">> compiling the hot path (mypyc)"
	@mkdir -p build
	@$(VENV)/bin/python -m civicstream.compiled build > build/compiled.log 2>&1 || \
		{ tail -n 30 build/compiled.log; echo "(the whole log: build/compiled.log)"; exit 1; }
	@$(VENV)/bin/python -m civicstream.compiled check

uncompiled: ## remove the compiled hot path: commands run its Python sources
	@test ! -x $(VENV)/bin/python || $(VENV)/bin/python -m civicstream.compiled remove

# ---------------------------------------------------------------- deployment checks

# The schemas that the deployment files are validated against, taken from the Go module
# proxy (a registry reachable here), pinned: the Compose Specification's JSON schema
# (compose-go) and the ServiceMonitor CRD (prometheus-operator).
DEPLOY_SCHEMAS := .cache/deploy-schemas
COMPOSE_GO := github.com/compose-spec/compose-go/v2@v2.16.2
PROMETHEUS_OPERATOR := github.com/prometheus-operator/prometheus-operator@v0.85.0

deploy-schemas: $(DEPLOY_SCHEMAS)/.fetched ## fetch the compose-spec and ServiceMonitor schemas (once)

$(DEPLOY_SCHEMAS)/.fetched: | sys-go
	@mkdir -p $(DEPLOY_SCHEMAS)
	@dir=$$(GOFLAGS=-mod=mod go mod download -json $(COMPOSE_GO) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
		test -n "$$dir" && cp "$$dir/schema/compose-spec.json" $(DEPLOY_SCHEMAS)/
	@dir=$$(GOFLAGS=-mod=mod go mod download -json $(PROMETHEUS_OPERATOR) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
		test -n "$$dir" && cp "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" $(DEPLOY_SCHEMAS)/
	@echo "$(COMPOSE_GO) $(PROMETHEUS_OPERATOR)" > $@

audit: $(VENV_STAMP) ## pip-audit the image's locked dependencies (needs PyPI's per-release JSON API)
	$(VENV)/bin/pip-audit --requirement deploy/docker/requirements.txt --require-hashes \
		--disable-pip --strict --vulnerability-service pypi --progress-spinner off

docker-lock: ## regenerate deploy/docker/requirements.txt (the image's pinned, hashed dependencies)
	@rm -rf .cache/pip-tools && $(PYTHON) -m venv .cache/pip-tools
	.cache/pip-tools/bin/pip install -q --disable-pip-version-check pip-tools
	.cache/pip-tools/bin/pip-compile -q --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file deploy/docker/requirements.txt \
		pyproject.toml

# ---------------------------------------------------------------- local Kafka broker

kafka-jars: | sys-python sys-java ## fetch the Kafka broker jars into deploy/local-kafka/libs (once)
	@$(LOCALKAFKA) jars

kafka-up: | sys-python sys-java ## start the local broker in the background (or reuse it); prints the bootstrap address
	@$(LOCALKAFKA) up $(KAFKA_OPTS) --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT)

kafka-down: ## stop the local broker
	@$(LOCALKAFKA) down $(KAFKA_OPTS)

kafka-status: ## is the local broker running and answering?
	@$(LOCALKAFKA) status $(KAFKA_OPTS)

kafka-up-sasl: | sys-python sys-java ## a local broker with only a SASL_SSL listener (9094, data .kafka-sasl/); prints the CIVIC_KAFKA_* to use it
	@command -v openssl >/dev/null 2>&1 || { $(call APT_INSTALL,openssl); }
	@$(LOCALKAFKA) up --sasl-ssl --data-dir .kafka-sasl --port 9094 --controller-port 9095

kafka-down-sasl: ## stop the SASL_SSL broker
	@$(LOCALKAFKA) down --data-dir .kafka-sasl

# ---------------------------------------------------------------- local PostgreSQL

PG_PORT ?= 5433
LOCALPG := $(PYTHON) deploy/local-postgres/localpg.py

pg-up: | sys-test ## start a local PostgreSQL in .postgres/ (port PG_PORT=5433); prints its URL
	@$(LOCALPG) up --port $(PG_PORT)

pg-down: ## stop the local PostgreSQL
	@$(LOCALPG) down

# ---------------------------------------------------------------- checks

# The test session starts its own broker on free ports, unless CIVIC_TEST_KAFKA_BOOTSTRAP
# names one to use, and always a second one with a SASL_SSL listener (tests/integration/
# test_sasl_ssl.py). The jars are fetched here rather than inside pytest so that a first
# download (or its failure) is visible.
test: $(VENV_STAMP) $(COMPILED) sys-prometheus sys-test deploy-schemas kafka-jars ## install, then run pytest (the session starts its own brokers, PostgreSQL and Prometheus servers)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

SEED ?= 1
CHAOS_ARGS ?=
chaos: $(VENV_STAMP) $(COMPILED) kafka-jars ## crash consistency, long version (~9 min): SIGKILLs + broker restarts vs a clean run (SEED=n)
	$(VENV)/bin/python -m tests.chaos --seed $(SEED) --profile long $(CHAOS_ARGS)

FUZZ_MESSAGES ?= 100000
fuzz-long: $(VENV_STAMP) $(COMPILED) kafka-jars ## hypothesis x100, then 100,000 hostile messages among real ones through the real worker vs a clean run (~20 min)
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest tests/fuzz -q -p no:cacheprovider --timeout 1800
	$(VENV)/bin/python -m tests.fuzz --messages $(FUZZ_MESSAGES)

SOAK_MINUTES ?= 30
SOAK_RATE ?= 800
# The `bench` extra (plots, the Quix Streams peer, py-spy), whole if it installs; else each
# of its requirements on its own, so that one that cannot install here skips only its part.
BENCH_EXTRA = \
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[bench]' || \
	for req in $$($(VENV)/bin/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))"); do \
		$(VENV)/bin/python -m pip install -q --disable-pip-version-check "$$req" || \
		echo ">> $$req did not install: the benchmark skips what needs it"; \
	done

soak: $(VENV_STAMP) $(COMPILED) kafka-jars ## sustained load (SOAK_RATE records/s for SOAK_MINUTES): lag, RSS plot, accounting; bench/results/
	@$(BENCH_EXTRA)
	$(VENV)/bin/python -m bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE)

lint: $(VENV_STAMP) ## ruff check, ruff format --check, mypy --strict (processors, schemas, sinks, the compiled streams modules)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# ---------------------------------------------------------------- running

ARGS ?=

run: $(VENV_STAMP) $(COMPILED) kafka-jars ## install, start the broker, worker and sink, replay a month of Beijing data (ARGS="--all", "--exit-when-done", ...)
	$(VENV)/bin/civicstream run $(ARGS)

serve: $(VENV_STAMP) ## the API, data.json and the residents' page on CIVIC_API_PORT (8080) over CIVIC_STORE_URL
	$(VENV)/bin/civicstream serve $(ARGS)

bench: $(VENV_STAMP) $(COMPILED) kafka-jars ## throughput vs aiokafka + Faust/Quix peers, latency, scaling, profile (8-11 min; ARGS=--quick); bench/results/
	@$(BENCH_EXTRA)
	$(VENV)/bin/python -m bench $(ARGS)

bench-api: $(VENV_STAMP) sys-test ## store upserts (SQLite, PostgreSQL), API requests/s, export MB/s; bench/results/
	$(VENV)/bin/python -m bench.api $(ARGS)

# Maintainers: the residents' page serves Leaflet from sinks/api/static/vendor/leaflet (committed),
# taken unchanged from the npm registry package.
LEAFLET_VERSION ?= 1.9.4
LEAFLET_DIR := sinks/api/static/vendor/leaflet
vendor-leaflet: ## refresh the vendored Leaflet from the npm registry (needs npm)
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent leaflet@$(LEAFLET_VERSION) >/dev/null && \
		tar xzf leaflet-$(LEAFLET_VERSION).tgz && sha256sum leaflet-$(LEAFLET_VERSION).tgz && \
		cd - >/dev/null && mkdir -p $(LEAFLET_DIR)/images && \
		cp $$tmp/package/dist/leaflet.js $$tmp/package/dist/leaflet.css $(LEAFLET_DIR)/ && \
		cp $$tmp/package/dist/images/*.png $(LEAFLET_DIR)/images/ && \
		cp $$tmp/package/LICENSE $(LEAFLET_DIR)/LICENSE && rm -rf $$tmp && \
		echo "Leaflet $(LEAFLET_VERSION) in $(LEAFLET_DIR); update its README.md (version, SHA-256)"

bench-anomaly: $(VENV_STAMP) ## score the anomaly detector: NAB, Beijing fault injection, cost; writes bench/anomaly/RESULTS.md
	$(VENV)/bin/python -m bench.anomaly $(ARGS)

bench-neighbours: $(VENV_STAMP) ## the neighbour check on Beijing: clean-hour flags, injected faults, cost; writes bench/anomaly/NEIGHBOURS.md
	$(VENV)/bin/python -m bench.anomaly.neighbours $(ARGS)

# ---------------------------------------------------------------- cleaning

clean: ## stop the brokers and PostgreSQL; remove .venv, data/, .kafka/, .kafka-sasl/, .postgres/, test-output/ and caches (keeps the broker jars)
	@if command -v $(PYTHON) >/dev/null 2>&1; then $(LOCALKAFKA) down $(KAFKA_OPTS); fi
	@if command -v $(PYTHON) >/dev/null 2>&1; then $(LOCALPG) down >/dev/null; fi
	@if command -v $(PYTHON) >/dev/null 2>&1; then $(LOCALKAFKA) down --data-dir .kafka-sasl >/dev/null; fi
	@$(MAKE) --no-print-directory uncompiled
	rm -rf $(VENV) data/ $(KAFKA_DATA_DIR) .kafka-sasl/ .postgres/ test-output/ .pytest_cache .ruff_cache .mypy_cache build/ dist/
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and also remove the broker jars (next start fetches them again)
	rm -rf deploy/local-kafka/libs deploy/local-kafka/target
