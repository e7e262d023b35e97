"""sd_notify client against a real AF_UNIX datagram socket, as systemd would hold it."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.sdnotify import Notifier


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    assert len(os.fsencode(path)) < 108, "AF_UNIX path too long for this tmp_path"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def assert_nothing_pending(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)
    sock.settimeout(2.0)


def test_inactive_without_notify_socket() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert not n.active
    assert n.watchdog_interval_s() is None
    assert n.ready() is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert n.reloading() is False
    assert n.status("x") is False
    n.close()


def test_notifications_arrive_as_datagrams(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    with Notifier.from_env({"NOTIFY_SOCKET": path}) as n:
        assert n.active
        assert n.ready() is True
        assert recv(sock) == ["READY=1"]
        assert n.status("3 open incidents") is True
        assert recv(sock) == ["STATUS=3 open incidents"]
        assert n.watchdog() is True
        assert recv(sock) == ["WATCHDOG=1"]
        assert n.stopping("draining 2 sends") is True
        assert recv(sock) == ["STOPPING=1", "STATUS=draining 2 sends"]
        assert n.ready(status="roster reloaded") is True
        assert recv(sock) == ["READY=1", "STATUS=roster reloaded"]
        assert n.notify("EXTEND_TIMEOUT_USEC=5000000") is True
        assert recv(sock) == ["EXTEND_TIMEOUT_USEC=5000000"]
    assert_nothing_pending(sock)


def test_reloading_carries_monotonic_usec(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    before = time.monotonic_ns() // 1000
    assert n.reloading() is True
    after = time.monotonic_ns() // 1000
    lines = recv(sock)
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    n.close()


def test_status_stays_on_one_line(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    n.status("broker down\nREADY=1")
    assert recv(sock) == ["STATUS=broker down READY=1"]
    n.close()


def test_abstract_socket() -> None:
    name = f"alertd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready() is True
        assert recv(sock) == ["READY=1"]
        n.close()
    finally:
        sock.close()


def test_unsupported_address_is_inactive(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alertd.sdnotify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.active
    assert n.ready() is False
    assert "Unsupported NOTIFY_SOCKET" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242)
    assert n.watchdog_interval_s() == expected


def test_watchdog_pid_defaults_to_own_pid() -> None:
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    assert Notifier.from_env(env).watchdog_interval_s() == 1.0


def test_failure_never_raises_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "late.sock"
    n = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    with caplog.at_level(logging.DEBUG, logger="alertd.sdnotify"):
        assert n.ready() is False
        assert n.watchdog() is False
        assert n.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sd_notify" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2

    # systemd's socket appears: the next send works and recovery is logged once.
    caplog.clear()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        with caplog.at_level(logging.DEBUG, logger="alertd.sdnotify"):
            assert n.watchdog() is True
            assert n.watchdog() is True
        assert [r.levelno for r in caplog.records] == [logging.INFO]
        assert recv(sock) == ["WATCHDOG=1"]
    finally:
        sock.close()
        n.close()


def test_send_does_not_block_when_receiver_is_full(
    receiver: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    _sock, path = receiver
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="alertd.sdnotify"):
        for _ in range(100_000):
            if not n.status("x" * 1000):
                break
        else:
            pytest.fail("receiver queue never filled up")
    assert time.monotonic() - started < 5.0
    assert len(caplog.records) == 1
    n.close()
