# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
# The tests run in parallel (pytest-xdist), one worker more than there are cores: the Slurm
# tests share one worker (loadgroup) that mostly waits for the scheduler. JOBS=0 runs them
# in this process, e.g. with a debugger.
JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
PYTEST = $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup
# Where `make docs` writes the site (git-ignored); CI builds it outside the clone.
SITE ?= site

.PHONY: install test test-fast test-postgres demo lint docs

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	CRUNCH_SQLITE=:memory: $(BIN)/python manage.py makemigrations --check --dry-run
	$(PYTEST)

# The loop while working: the server's tests and the client's unit tests; no e2e, browser,
# Slurm, or client as a subprocess against a live server.
test-fast: install
	$(PYTEST) -m "not live_server" tests/server tests/client

test-postgres: install
	DATABASE_URL=$(PG_URL) $(PYTEST) -m "server or postgres"

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/python -m pip install -q ruff mypy django-stubs djangorestframework-stubs \
		types-requests types-psutil types-boto3 types-s3transfer import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy crunch crunchclient benchmarks
	$(BIN)/lint-imports

# The docs site, warnings as errors; the generated reference pages must be up to date.
docs: install
	$(BIN)/python -m pip install -q 'mkdocs-material>=9.5'
	$(BIN)/python scripts/reference_docs.py --check
	$(BIN)/python scripts/permissions_doc.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir "$(SITE)"
