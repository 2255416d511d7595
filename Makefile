# Two commands on a fresh machine with Python >= 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: install run test test-fast chaos lint clean frontend screenshots bench

# pip's own progress (one line per package) rather than --quiet: the install takes a minute or
# two, and a silent minute looks like a hang.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=python3.11)")'
	@echo "Creating $(VENV) and installing the dependencies (a minute or two on a fresh machine)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --progress-bar off pip
	$(PY) -m pip install --progress-bar off -e '.[test]'
	@touch $@

install: $(VENV)/.installed

# A Ctrl-C is how `make run` is meant to end: utils.run then exits 0 once everything stopped, so
# make does not report it as an error ("make: *** Error 130").
run: install
	$(PY) -m utils.run

# Two pytest workers for the tests that start no process stack (most of their time is waiting,
# not CPU), then the stack tests one at a time (each starts Redis, Celery workers, consumers...),
# except the few marked `mostly_waiting` (a minute of timers each), which a second pytest runs
# beside them (its output follows theirs).
PYTEST_FAST := $(PY) -m pytest -n 2 -m "not stack"

test: install lint frontend
	$(PYTEST_FAST)
	@mkdir -p .run
	@$(PY) -m pytest -m "stack and mostly_waiting" -p no:cacheprovider --basetemp=.run/pytest-waiting \
	    > .run/mostly-waiting.log 2>&1 & waiting=$$!; \
	  $(PY) -m pytest -m "stack and not mostly_waiting"; stacks=$$?; \
	  wait $$waiting; waited=$$?; \
	  echo "--- the stack tests that mostly wait (run beside the others):"; cat .run/mostly-waiting.log; \
	  exit $$(( stacks || waited ))

# Under a minute: pure logic, the Lua scripts on fakeredis and a private real Redis, the API in
# process; no stack of processes (those run in `make test`).
test-fast: install
	$(PYTEST_FAST)

# The dashboard: `npm ci` from the lock and `npm run build` when its sources changed, then its
# Vitest component tests (skipped with a message without Node.js >= 20.19). Its browser tests
# (tests/e2e, Playwright driving /usr/bin/chromium) run inside pytest.
frontend: install
	$(PY) -m utils.frontend_build --test

# Retake the README's screenshots (docs/screenshots/*.png) with the browser tests.
screenshots: install
	ATF_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e -p no:cacheprovider

# The chaos suite at full size (make test runs it short): kill -9 loops, Redis restart, LLM
# outage, rate-limit storm...; prints the figures table the README shows.
chaos: install
	CHAOS_PROFILE=long $(PY) -m pytest tests/chaos -p no:cacheprovider

# Issue 9's benchmark: AsyncTaskFlow against FastAPI→.delay() and bare Celery in the same run, and
# issue 18's `priorities` section: the claim with 1 vs 1,000 owners holding backlog, and no-op
# throughput against the code before issue 18 (run from a temporary `git worktree`). ~20 min; prints
# Markdown, writes bench/results/<timestamp>.md. BENCH_ARGS="--quick --only io,noop" or "--only priorities".
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy core api worker consumer utils tasktypes bench

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache frontend/node_modules frontend/dist
