# make demo  - the whole flow against a local STS emulator (no AWS account needed)
# make test  - every test (unit + end to end through the AWS CLI, boto3, a pty and shells)
# make lint  - ruff and mypy
# make bench - cache-hit and prompt timings, as ratios to `python -c pass` and `import boto3`

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m compileall -q mfa_session
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=8 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/cache_hit.py
	$(PY) benchmarks/prompt.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
