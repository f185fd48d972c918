# SkillCore: two commands for a newcomer, `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean install

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make demo: set up, write .env (DEBUG=1, a generated key) once, migrate the SQLite default,
## seed a small district, serve the admin; manage.py reads .env, so every command works here
demo: $(STAMP) .env
	$(PY) manage.py demo

.env: | $(STAMP)
	$(PY) -c "from pathlib import Path; from skillcore.env import write_demo_dotenv; write_demo_dotenv(Path('.env'))"

## make test: set up and run the whole suite (DATABASE_URL picks the database; SQLite by default)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## make lint: ruff (lint and import order), as CI runs it
lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var/*.sqlite3*
