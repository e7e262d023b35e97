#!/usr/bin/env bash
# Set up and run the demo on a fresh Debian machine: a household raises an alarm, the neighbours'
# terminals ring, the leader and patrol get an SMS (printed), the leader acknowledges, the log is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Without -c the demo runs the example village shipped in the package: config/ of this checkout.
exec .venv/bin/alertd demo
