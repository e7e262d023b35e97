#!/usr/bin/env bash
# Set up and run the tests on a fresh Debian machine: broker, virtualenv, lint, types, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k outbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# libfaketime starts a daemon process at a chosen hour (tests/harness.py), so no test depends on the time of day.
if ! compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null; then
    sudo=(); [[ ${EUID} -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime
fi
# The PostgreSQL tests start a throwaway cluster of their own (tests/pg.py) with Debian's initdb/pg_ctl;
# nothing needs to be running. ALERTD_TEST_POSTGRES_URL points them at an existing database instead.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    sudo=(); [[ ${EUID} -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
# Browser tests (tests/browser.py) drive Debian's headless Chromium through its chromedriver; selenium never downloads one.
# A CJK font too, or the console's Chinese shows as boxes in the screenshots the tests save.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]] || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    sudo=(); [[ ${EUID} -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-wqy-zenhei fontconfig
fi
.venv/bin/ruff check alertd tests bench
.venv/bin/ruff format --check alertd tests bench
.venv/bin/mypy  # strict, on alertd/ and tests/ (pyproject.toml)
# Coverage of what runs in this process; the CLI, demo and report modules run in subprocesses here.
exec .venv/bin/python -m pytest --cov=alertd --cov-report=term:skip-covered "$@"
