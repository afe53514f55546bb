# HELIOS: `make run` starts the stack, `make test` runs the suite. Both need only python3 (>= 3.11).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test test-sqlite test-postgres lint check venv venv-dev clean

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

clean:
	rm -rf $(VENV) var

## bench-jobs: the job queue on SQLite and PostgreSQL against Celery on Redis (run alone: flock /tmp/helios-bench.lock make bench-jobs)
.PHONY: bench-jobs
bench-jobs: venv
	$(PY) benchmarks/jobs_bench.py $(BENCH_ARGS)
