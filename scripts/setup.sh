#!/usr/bin/env bash
# Shared by demo.sh and test.sh: a running Mosquitto on 127.0.0.1:1883 and .venv with alertd installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-mosquitto.sh
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    # Debian splits venv/ensurepip out of python3.
    if [[ ${EUID} -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
    else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv; fi
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
