# laurelin — every set-up and check a developer or CI runs, from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test check lint types unit pytest bench docs clean compliance fuzz soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[standard,test]'
	touch $(STAMP)

# The Channels tutorial chat (examples/chat), served by laurelin through `manage.py runserver`.
demo: $(STAMP)
	$(BIN)/python examples/chat/manage.py migrate --noinput
	$(BIN)/python examples/chat/manage.py runserver 127.0.0.1:8000

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples compliance
	$(BIN)/ruff format --check src tests bench examples compliance

types: $(STAMP)
	$(BIN)/mypy

# Fast inner loop: lint, types and the suite without the slow tests.
check: lint types
	$(BIN)/pytest -q -n 2 -m "not slow" $(PYTEST_ARGS)

# Everything, as CI runs it.
test: lint types
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

# The suite alone on another interpreter: make pytest PYTHON=python3.13 VENV=.venv-3.13
pytest: $(STAMP)
	$(BIN)/pytest -q -n 2 $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/python -m laurelin.docgen > docs/cli.md

bench:
	bench/run.sh

# WebSocket conformance: the Autobahn TestSuite against laurelin (about 15 minutes; see
# compliance/README.md). A subset: make compliance COMPLIANCE_ARGS="--cases '1.*,2.*'"
compliance: $(STAMP)
	$(BIN)/python compliance/autobahn.py $(COMPLIANCE_ARGS)

# Longer fuzzing: the hypothesis tests of tests/security with many more examples each (make test
# runs them with LAURELIN_FUZZ_EXAMPLES' small default).
FUZZ_EXAMPLES ?= 3000
fuzz: $(STAMP)
	LAURELIN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -n 2 -m fuzz --timeout 3600 tests/security

# A bounded soak (not in CI): mixed HTTP/1.1, HTTP/2 and WebSocket load on loopback for
# SOAK_SECONDS; fails unless every request succeeded and RSS and open files stayed flat.
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .venv-* .mypy_cache .ruff_cache .pytest_cache
