#!/usr/bin/env bash
# Run the whole test suite with the wall clock started at 03:00 and at 15:00 Asia/Shanghai (libfaketime,
# monotonic clock untouched), to show no test depends on the hour. Brokers the tests start run on real
# time (tests/harness.py real_clock_env): a faked Mosquitto stalls its autosave.
# Usage: bash scripts/test-any-hour.sh [pytest arguments]   (after scripts/test.sh has set things up)
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(compgen -G '/usr/lib/*/faketime/libfaketime.so.1' | head -1)
for utc in "2026-12-02 19:00:00" "2026-12-03 07:00:00"; do  # 03:00 and 15:00 in Dandong
    echo "== suite with the wall clock starting at ${utc} UTC"
    LD_PRELOAD="${lib}" FAKETIME="@${utc}" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 TZ=UTC \
        .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
done
