# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test fuzz clean e2e-n8n bench

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) -m billing_platform.devserver.launcher run

test: $(VENV)/.installed-dev
	$(PY) -m billing_platform.devserver.launcher test

clean:
	rm -rf $(VENV) var/static

# Opt-in: a real n8n (pinned) driving the production server; not part of `make test`.
# Installs n8n once under var/n8n (about 6 min and 2.3 GB with its npm cache; needs npm, node 20
# and a C compiler), then runs tests/e2e_n8n against its own test database and cache prefix: it
# builds and packs the Billable node (integrations/n8n, `npm ci`), installs it into that n8n, and
# runs the workflows of docs/n8n (with the node) and docs/n8n/http (without); it also runs the
# compose `local` profile's n8n-node command and checks that n8n loads the node from its volume.
# PYTEST_ARGS passes arguments to pytest (e.g. PYTEST_ARGS=-x).
N8N_VERSION := 1.123.81
N8N_DIR := var/n8n
N8N_STAMP := $(N8N_DIR)/.installed-$(N8N_VERSION)

$(N8N_STAMP):
	mkdir -p $(N8N_DIR)
	printf '%s\n' '{ "name": "billable-n8n-e2e", "private": true,' \
	  '  "overrides": { "xlsx": "0.18.5", "isolated-vm": "5.0.4" } }' > $(N8N_DIR)/package.json
	cd $(N8N_DIR) && SCARF_ANALYTICS=false npm_config_cache="$(CURDIR)/$(N8N_DIR)/npm-cache" \
	  npm install n8n@$(N8N_VERSION) --no-audit --no-fund
	test "$$($(N8N_DIR)/node_modules/.bin/n8n --version)" = "$(N8N_VERSION)"
	@touch $@

e2e-n8n: $(VENV)/.installed-dev $(N8N_STAMP)
	BILLABLE_N8N=1 BILLABLE_TESTING=1 TEST_DATABASE_NAME=test_billable_n8n \
	  CACHE_KEY_PREFIX=billable-n8n-e2e SECURE_HTTPS=false WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true \
	  $(PY) -m billing_platform.devserver.launcher exec -- $(PY) -m pytest tests/e2e_n8n -m n8n $(PYTEST_ARGS)

# A long schemathesis run over every operation (not part of `make test`).
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m billing_platform.devserver.launcher exec -- \
		$(PY) -m pytest -q -p no:warnings tests/billing_platform/test_fuzz.py

# Benchmarks (not part of `make test`): all of them, or one with NAME=consume; see bench/README.md.
# They use their own database (billable_bench, recreated each run) and cache key prefix.
# BASELINE=<git ref> serves that commit beside the current code (consume, balance, history).
# wrk, the light load client, is installed when missing (as root, with apt-get, as .ci/run does);
# elsewhere its points are skipped with a message.
$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	@touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-bench
	@if ! command -v wrk >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "[bench] installing Debian packages: wrk"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends wrk >/dev/null \
	      || echo "[bench] !!! installing wrk failed: the wrk points will be SKIPPED"; \
	  else \
	    echo "[bench] !!! wrk is missing (apt-get install wrk as root): the wrk points will be SKIPPED"; \
	  fi; \
	fi
	$(if $(BASELINE),BENCH_BASELINE=$(BASELINE) )$(PY) -m billing_platform.devserver.launcher exec -- \
	  $(PY) -m bench $(NAME)

# Opt-in: Billable on a private 3-node Citus cluster (coordinator + 2 workers); not part of
# `make test`. As root: builds Citus 13.2.2 from CITUS_SOURCE (default
# ../shared/vendor/citus/citus-13.2.2.tar.gz) once into PostgreSQL 15 when citus.so is missing
# (stamp var/citus-build/.installed), starts the cluster under var/citus on free ports, migrates,
# onboards two tenants, runs deploy/citus/smoke.py against each and billing_verify, then stops and
# removes the cluster. See deploy/citus/ and docs/scaling.md.
.PHONY: e2e-citus
e2e-citus: $(VENV)/.installed-dev
	PY=$(PY) deploy/citus/e2e.sh
