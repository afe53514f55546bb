# HELIOS: `make run` starts the stack, `make test` runs the suite. Both need only python3 (>= 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test test-sqlite test-postgres lint check venv venv-dev clean bench-atlas

$(VENV)/.runtime: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("HELIOS needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

## run: migrate, make sure an admin exists, start every HELIOS process under one supervisor (Ctrl-C stops all)
run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	exec $(PY) manage.py runstack

## test: the whole suite on SQLite, then the database tests again on PostgreSQL when HELIOS_TEST_DATABASE_URL is set
test: test-sqlite test-postgres

test-sqlite: venv-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test-postgres: venv-dev
	@if [ -n "$$HELIOS_TEST_DATABASE_URL" ]; then \
		echo "== PostgreSQL pass: $$HELIOS_TEST_DATABASE_URL"; \
		DATABASE_URL="$$HELIOS_TEST_DATABASE_URL" $(PY) -m pytest -m "django_db or database or postgres" $(PYTEST_ARGS); \
	else \
		echo "== PostgreSQL pass skipped: HELIOS_TEST_DATABASE_URL is not set"; \
	fi

## lint: ruff (lint and format) and mypy
lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

## check: migrations up to date, and the production settings pass Django's deploy checks
check: venv-dev
	$(PY) manage.py makemigrations --check --dry-run
	HELIOS_ENV=production HELIOS_SECRET_KEY=ci-only-$$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n') \
		HELIOS_GATEWAY_ALLOWED_HOSTS=helios.example.com \
		$(PY) manage.py check --deploy --fail-level WARNING

## bench-atlas: ATLAS against redis-server with redis-benchmark, -P 1 and -P 16 (BENCH_REQUESTS, BENCH_ROUNDS)
bench-atlas: venv
	$(PY) bench/bench_atlas.py

clean:
	rm -rf $(VENV) var

.PHONY: bench-proxy
## bench-proxy: wrk through the proxy, direct, and through nginx to the same backend (needs wrk and nginx)
bench-proxy: venv
	$(PY) bench/bench_proxy.py

.PHONY: soak-raft bench-raft
SEEDS ?= 5000
JOBS ?= 2

## soak-raft: a long simulator sweep outside CI (SEEDS=N seeds, JOBS=N processes); prints a replay command per failure
soak-raft: venv
	$(PY) -m raft.sim sweep --seeds $(SEEDS) --jobs $(JOBS)

## bench-raft: committed proposals/s through the core (perfect network) and storage appends/s with fsync batching
bench-raft: venv
	$(PY) -m raft.bench

.PHONY: bench-raft-cluster
## bench-raft-cluster: raft.demo processes (fsync on): 3 nodes against 1, sequential and concurrent writes, failover time
bench-raft-cluster: venv
	$(PY) bench/bench_raft_cluster.py

.PHONY: bench-gateway
## bench-gateway: wrk against GET /api/v1/kv/<key> (valid token) and /healthz through gunicorn with 2 workers, then a profile (needs wrk)
bench-gateway: venv
	$(PY) bench/bench_gateway.py

## bench-jobs: the job queue on SQLite and PostgreSQL against Celery on Redis (run alone: flock /tmp/helios-bench.lock make bench-jobs)
.PHONY: bench-jobs
bench-jobs: venv
	$(PY) bench/bench_jobs.py $(BENCH_ARGS)
