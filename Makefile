# The two set-up commands (README): `make serve` runs callx embedded; `make test` runs the tests.
# Both work on a fresh machine with Python 3.11: they install what they need first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install install-test system-deps lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"

# PostgreSQL and Redis servers for the tests (Debian packages); skipped when already there.
system-deps:
	@scripts/install-system-deps.sh

serve: install
	$(BIN)/callx serve

# Style (ruff), types (mypy) and the import layers (import-linter, pyproject.toml).
lint: install-test
	$(BIN)/ruff check app workers schemas migrations tests bench data support
	$(BIN)/mypy
	$(BIN)/lint-imports

test: system-deps install-test lint
	$(BIN)/python -m pytest
