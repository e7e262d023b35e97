#!/usr/bin/env bash
# Set up and run the tests on a fresh Debian machine: broker, virtualenv, lint, types, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check alertd tests bench
.venv/bin/mypy
# Coverage of what runs in this process; the CLI, demo and report modules run in subprocesses here.
exec .venv/bin/python -m pytest --cov=alertd --cov-report=term:skip-covered "$@"
