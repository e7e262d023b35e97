#!/usr/bin/env bash
# Make sure an MQTT broker answers on 127.0.0.1:1883, for the tests and the demo.
#
# Idempotent; meant for a fresh Debian machine or container (no systemctl: many
# containers have no systemd). In order:
#   1. something already listens on 127.0.0.1:1883  -> nothing to do
#   2. mosquitto is installed                        -> start it in the background
#   3. otherwise apt-get install mosquitto (sudo when not root), then start it
# Started with /etc/mosquitto/mosquitto.conf, or, when that file is missing, a
# minimal loopback-only config allowing anonymous clients.
# Then waits (bounded) until the port answers; exits non-zero if it never does.
#
# Production servers run mosquitto under systemd with config/mosquitto.conf
# instead (docs/deploy.md); this script is not for them.
#
# Environment (all optional):
#   ENSURE_MOSQUITTO_PORT  port to check (default 1883; the minimal config uses it too)
#   MOSQUITTO_CONF         config to start with (default /etc/mosquitto/mosquitto.conf)
#   ENSURE_MOSQUITTO_WAIT  seconds to wait for the port (default 10)

set -euo pipefail

readonly HOST=127.0.0.1
readonly PORT="${ENSURE_MOSQUITTO_PORT:-1883}"
readonly CONF="${MOSQUITTO_CONF:-/etc/mosquitto/mosquitto.conf}"
readonly WAIT_S="${ENSURE_MOSQUITTO_WAIT:-10}"
readonly MINIMAL_CONF="${TMPDIR:-/tmp}/alertd-mosquitto-minimal-${PORT}.conf"

log() { printf 'ensure-mosquitto: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

port_open() {
    # bash's /dev/tcp: no dependency on ss, netstat or nc.
    timeout 1 bash -c "exec 3<>/dev/tcp/${HOST}/${PORT}" 2>/dev/null
}

as_root() {
    if [[ ${EUID} -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

find_mosquitto() {
    # /usr/sbin is often not on a normal user's PATH.
    command -v mosquitto 2>/dev/null && return 0
    if [[ -x /usr/sbin/mosquitto ]]; then
        echo /usr/sbin/mosquitto
        return 0
    fi
    return 1
}

install_mosquitto() {
    command -v apt-get >/dev/null 2>&1 || die "mosquitto is not installed and apt-get is not available"
    log "installing mosquitto with apt-get"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mosquitto
}

start_mosquitto() {
    local bin="$1" conf="${CONF}"
    if [[ ! -f ${conf} ]]; then
        log "${CONF} missing; using a minimal loopback config (${MINIMAL_CONF})"
        printf 'listener %s %s\nallow_anonymous true\n' "${PORT}" "${HOST}" >"${MINIMAL_CONF}"
        conf="${MINIMAL_CONF}"
    else
        # The Debian config writes its pid and log files here; systemd's unit
        # would create these directories, without systemd we do.
        as_root mkdir -p /run/mosquitto /var/log/mosquitto
        if id mosquitto >/dev/null 2>&1; then
            as_root chown mosquitto: /run/mosquitto /var/log/mosquitto
        fi
    fi
    log "starting ${bin} -d -c ${conf}"
    as_root "${bin}" -d -c "${conf}" || die "mosquitto failed to start with ${conf}"
}

wait_for_port() {
    local deadline=$((SECONDS + WAIT_S))
    while ((SECONDS < deadline)); do
        if port_open; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

main() {
    if port_open; then
        log "a broker already listens on ${HOST}:${PORT}"
        return 0
    fi

    local bin
    if ! bin="$(find_mosquitto)"; then
        install_mosquitto
        # The package's maintainer scripts may have started it already.
        if wait_for_port; then
            log "mosquitto installed and listening on ${HOST}:${PORT}"
            return 0
        fi
        bin="$(find_mosquitto)" || die "mosquitto still not found after apt-get install"
    fi

    start_mosquitto "${bin}"
    if ! wait_for_port; then
        die "nothing listens on ${HOST}:${PORT} after ${WAIT_S}s (check ${CONF} and the mosquitto log)"
    fi
    log "mosquitto listening on ${HOST}:${PORT}"
}

main "$@"
