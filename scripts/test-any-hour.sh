#!/usr/bin/env bash
# Run the whole test suite with the wall clock moved to 03:00 and to 15:00 Asia/Shanghai (libfaketime, one
# offset for the suite and every process it starts, so a restarted daemon sees time go on), to show no
# test depends on the hour. Brokers the tests start run on real time (tests/harness.py real_clock_env):
# a faked Mosquitto stalls its autosave.
# Usage: bash scripts/test-any-hour.sh [pytest arguments]   (after scripts/test.sh has set things up)
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(compgen -G '/usr/lib/*/faketime/libfaketime.so.1' | head -1)
for utc in "2026-12-02 19:00:00" "2026-12-03 07:00:00"; do  # 03:00 and 15:00 in Dandong
    offset=$(( $(date -d "${utc} UTC" +%s) - $(date +%s) ))
    echo "== suite with the clock at ${utc} UTC (offset ${offset} s)"
    # The wall clock moves, the monotonic clock stays (timed waits in threads hang when both move).
    LD_PRELOAD="${lib}" FAKETIME="$( ((offset >= 0)) && echo "+${offset}" || echo "${offset}")" \
        FAKETIME_DONT_FAKE_MONOTONIC=1 TZ=UTC PYTHONPATH="${PWD}/scripts/faketime" \
        .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
done
