# The two commands a newcomer needs: `make demo` and `make test`. Both set up what they
# need first (scripts/bootstrap.sh is idempotent and takes seconds once done).
SHELL := /bin/bash
PY := .venv/bin/python
# The offline engine settings come from engine/ (one place for make, tests and benchmarks).
ENGINE = eval "$$($(PY) -m engine shell)" &&

.PHONY: bootstrap demo test check lint lab-up lab-down

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(ENGINE) $(PY) -m demo

test: bootstrap lint
	@$(ENGINE) $(PY) -m pytest

# The quick loop while working: lint, types, unit and plan tests (no lab, no engine).
check: bootstrap lint
	@$(ENGINE) $(PY) -m pytest -q -m "unit or plans"

lint: bootstrap
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy

lab-up: bootstrap
	@$(PY) -m lab up

lab-down:
	@$(PY) -m lab down
