# Two commands on a fresh machine with Python >= 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install run test chaos lint clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m utils.run

test: install lint
	$(PY) -m pytest

# The chaos suite at full size (make test runs it short): kill -9 loops, Redis restart, LLM
# outage, rate-limit storm...; prints the figures table the README shows.
chaos: install
	CHAOS_PROFILE=long $(PY) -m pytest tests/chaos -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core api worker consumer utils

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
