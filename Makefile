# The two commands of the README: `make demo` (install + run the demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo install messages setup test chromium poppler e2e lint bench clean cluster cluster-down cluster-load cluster-faults

## demo: install everything, load the seed trials and demo users, serve http://127.0.0.1:8000
demo: setup
	$(PY) manage.py runserver $(HOST):$(PORT)

## setup: migrations, seed trials and demo users on the embedded default (SQLite under var/)
setup: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_trials
	$(PY) manage.py load_demo

## install: the virtualenv with the project and its test tools (re-run when pyproject.toml changes)
install: $(VENV)/.installed messages

## messages: compile the fr/es catalogues (edc/locale) when GNU gettext is here; else the committed .mo serve
messages: $(VENV)/.installed
	@if command -v msgfmt >/dev/null 2>&1; then \
	  cd edc && $(abspath $(PY)) ../manage.py compilemessages --verbosity 0; \
	else echo "msgfmt (GNU gettext) not found: using the committed edc/locale/*/LC_MESSAGES/django.mo"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

## chromium: Debian's chromium for the browser tests (Playwright drives it; no browser download)
chromium:
	@command -v chromium >/dev/null 2>&1 || $(SUDO) apt-get install -y chromium >/dev/null 2>&1 \
	  || ($(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y chromium >/dev/null)

## poppler: Debian's poppler-utils (pdftotext, pdftoppm): the tests read the PDFs WeasyPrint writes with an
## independent reader
poppler:
	@command -v pdftotext >/dev/null 2>&1 || $(SUDO) apt-get install -y poppler-utils >/dev/null 2>&1 \
	  || ($(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y poppler-utils >/dev/null)

## test: install, check the app layers (import-linter, contracts in pyproject.toml), run the whole suite
## (PostgreSQL/Redis/worker tests run when DATABASE_URL/REDIS_URL are set)
test: install chromium poppler
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

## e2e: only the browser tests
e2e: install chromium
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var artifacts .pytest_cache

## bench: benchmarks, each reported as a ratio to a baseline measured in the same run (docs/benchmarks.md)
bench: install
	$(PY) tests/bench/bench_loader.py
	$(PY) tests/bench/bench_crf.py
	$(PY) tests/bench/bench_schedule.py
	$(PY) tests/bench/bench_safety.py
	$(PY) tests/bench/bench_export.py
	$(PY) tests/bench/bench_sdtm.py
	$(PY) tests/bench/bench_redcap.py
	$(PY) tests/bench/bench_flow.py
	$(PY) tests/bench/bench_api.py
	$(PY) tests/bench/bench_quality.py

## cluster: the multi-node lab of issue 22 on this machine (network namespaces as hosts: HAProxy, 2 web nodes,
## 2 Celery workers, beat behind a Redis lock, PostgreSQL primary + streaming replica, Redis; needs root,
## haproxy, redis-server, the PostgreSQL server). docs/deployment.md, "Several machines".
cluster: install
	$(SUDO) env PY=$(abspath $(PY)) .ci/cluster/cluster.sh up

## cluster-down: stop everything the cluster started and remove its namespaces (CLUSTER_ARGS=--purge: its data too)
cluster-down:
	$(SUDO) env PY=$(abspath $(PY)) .ci/cluster/cluster.sh down $(CLUSTER_ARGS)

## cluster-load: the locust runs of docs/benchmarks.md (1 web node, then 2; 8 users, 60 s each)
cluster-load: install
	$(SUDO) env PY=$(abspath $(PY)) LOCUST=$(abspath $(VENV))/bin/locust .ci/cluster/loadtest.sh 1 8 60
	$(SUDO) env PY=$(abspath $(PY)) LOCUST=$(abspath $(VENV))/bin/locust .ci/cluster/loadtest.sh 2 8 60

## cluster-faults: the fault drills (web node, worker node, Redis restart, beat failover)
cluster-faults: install
	$(SUDO) env PY=$(abspath $(PY)) LOCUST=$(abspath $(VENV))/bin/locust .ci/cluster/faults.sh all
