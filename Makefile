# civicstream developer and CI entry points. `make` (or `make help`) lists the targets.
#
# Works on a fresh Debian machine: missing python3-venv, Java or Maven are installed with
# apt-get (as root, or through sudo) only when they are missing.

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
.PHONY: help venv install sys-python sys-java kafka-jars kafka-up kafka-down kafka-status \
	test lint run bench bench-anomaly clean distclean

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

# ---------------------------------------------------------------- python environment

venv: $(VENV_STAMP) ## create .venv and pip install -e '.[dev]' (again only when pyproject.toml changes)
install: $(VENV_STAMP) ## same as venv

$(VENV_STAMP): pyproject.toml | sys-python
	@test -x $(VENV)/bin/python || { echo ">> $(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# ---------------------------------------------------------------- local Kafka broker

kafka-jars: | sys-python sys-java ## fetch the Kafka broker jars into deploy/local-kafka/libs (once)
	@$(LOCALKAFKA) jars

kafka-up: | sys-python sys-java ## start the local broker in the background (or reuse it); prints the bootstrap address
	@$(LOCALKAFKA) up $(KAFKA_OPTS) --port $(KAFKA_PORT) --controller-port $(KAFKA_CONTROLLER_PORT)

kafka-down: ## stop the local broker
	@$(LOCALKAFKA) down $(KAFKA_OPTS)

kafka-status: ## is the local broker running and answering?
	@$(LOCALKAFKA) status $(KAFKA_OPTS)

# ---------------------------------------------------------------- checks

# The test session starts its own broker on free ports, unless CIVIC_TEST_KAFKA_BOOTSTRAP
# names one to use; only then are Java, Maven and the jars not needed. The jars are fetched
# here rather than inside pytest so that a first download (or its failure) is visible.
test: $(VENV_STAMP) $(if $(CIVIC_TEST_KAFKA_BOOTSTRAP),,kafka-jars) ## install, then run pytest (the session starts its own broker)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV_STAMP) ## ruff check, ruff format --check, mypy --strict (processors, schemas, sinks)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# ---------------------------------------------------------------- running

ARGS ?=

run: $(VENV_STAMP) kafka-jars ## install, start the broker, worker and sink, replay a month of Beijing data (ARGS="--all", "--exit-when-done", ...)
	$(VENV)/bin/civicstream run $(ARGS)

bench: $(VENV_STAMP) kafka-jars ## install, then run the benchmarks (ARGS="--days 30 ...")
	$(VENV)/bin/python -m bench $(ARGS)

bench-anomaly: $(VENV_STAMP) ## score the anomaly detector: NAB, Beijing fault injection, cost; writes bench/anomaly/RESULTS.md
	$(VENV)/bin/python -m bench.anomaly $(ARGS)

# ---------------------------------------------------------------- cleaning

clean: ## stop the broker; remove .venv, data/, .kafka/ and caches (keeps the broker jars)
	@if command -v $(PYTHON) >/dev/null 2>&1; then $(LOCALKAFKA) down $(KAFKA_OPTS); fi
	rm -rf $(VENV) data/ $(KAFKA_DATA_DIR) .pytest_cache .ruff_cache .mypy_cache build/ dist/
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and also remove the broker jars (next start fetches them again)
	rm -rf deploy/local-kafka/libs deploy/local-kafka/target
