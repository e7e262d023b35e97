"""The HTTP side's guards that do not need a peer: operator actions from this machine only."""

from __future__ import annotations

import pytest

from alertd.web.app import _is_loopback


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("192.0.2.7", False), ("2001:db8::1", False),
     (None, False), ("not-an-address", False)],
)  # fmt: skip
def test_operator_actions_only_from_loopback(remote: str | None, allowed: bool) -> None:
    assert _is_loopback(remote) is allowed
