"""Malformed, oversized, unknown and duplicate input over the real broker: counted, logged, never fatal,
and never in the way of the valid alarm right behind it."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import aiohttp
import pytest

from alertd.ratelog import RateLimitedLog
from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import forget_session, running_daemon, terminals, write_village


async def _metric(base_url: str, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/metrics") as response:
        text = await response.text()
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{selector}}}" if selector else name) + r" ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


async def test_bad_messages_are_counted_and_the_valid_alarm_behind_them_still_rings(
    tmp_path: Path, twilio: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    caplog.set_level(logging.INFO)
    bad: list[tuple[str, bytes | str | dict[str, object], str]] = [
        ("t1-1", b"\xff\xfe not utf8", "not_utf8"),
        ("t1-1", "{not json", "not_json"),
        ("t1-1", "[1, 2]", "not_object"),
        ("t1-1", {"kind": "fire"}, "missing_field"),
        ("t1-1", {"type": "alarm", "kind": "volcano", "seq": 1}, "unknown_kind"),
        ("t1-1", {"type": "reboot"}, "unknown_type"),
        ("t1-1", {"type": "alarm", "kind": "fire", "seq": "x"}, "bad_type"),
        ("t1-1", "x" * 5000, "too_large"),
        ("nobody", {"type": "alarm", "kind": "fire", "seq": 1}, "unknown_device"),
    ]
    try:
        async with running_daemon(village) as daemon, terminals(village) as sims:
            for device, payload, _ in bad:
                await sims.publish(device, payload)
            await sims.alarm("t1-4", "smoke", seq=10)
            await sims.alarm("t1-4", "smoke", seq=10)  # a QoS 1 redelivery: same seq
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            await asyncio.sleep(0.3)  # room for a wrong second incident to show up
            for _, _, reason in bad:
                assert await _metric(village.base_url, "alertd_invalid_messages_total", reason=reason) == 1, f"{reason}"
            assert await _metric(village.base_url, "alertd_duplicate_alarms_total") == 1
            assert await _metric(village.base_url, "alertd_alarms_received_total", source="mqtt", kind="smoke") == 1
            assert (await daemon.started()).link.connected
        store = await Store.open(village.store_path, readonly=True)
        try:
            incidents = await store.incidents()
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert [(i.household_id, i.kind) for i in incidents] == [("h1-4", "smoke")]
    assert {c.device for c in sims.rings()} == {f"t1-{h}" for h in range(1, 11)} - {"t1-4"}
    rejected = [r.getMessage() for r in caplog.records if "Rejected message" in r.getMessage()]
    assert len(rejected) == 8  # every codec rejection logged once, with its reason
    assert any("volcano" in line for line in rejected)
    assert any("unknown device nobody" in r.getMessage() for r in caplog.records)


async def test_a_second_alarm_from_the_same_household_joins_the_incident(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-6", "medical", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            await sims.alarm("t1-6", "fire", seq=2)
            await asyncio.sleep(0.3)
            assert len(sims.rings()) == 9, "joining an incident does not ring everyone again"
        store = await Store.open(village.store_path, readonly=True)
        try:
            incidents = await store.incidents()
            timeline = await store.timeline(incidents[0].id)
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert len(incidents) == 1
    assert incidents[0].kind == "fire", "the incident rises to the worse kind"
    assert [t.event for t in timeline] == ["opened", "step 0", "alarm"]


async def test_a_flood_of_bad_messages_is_counted_in_full_and_logged_once_per_reason_and_device(
    tmp_path: Path, twilio: TwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 lines for 2,000 malformed messages would bury the one line an operator needs."""
    village = write_village(tmp_path, twilio=twilio)
    caplog.set_level(logging.INFO)
    try:
        async with running_daemon(village), terminals(village) as sims:
            for _ in range(300):
                await sims.publish("t1-1", "{not json")
                await sims.publish("t1-2", {"type": "alarm", "kind": "volcano", "seq": 1})
            await sims.alarm("t1-4", "smoke", seq=10)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            async with asyncio.timeout(10):
                while await _metric(village.base_url, "alertd_invalid_messages_total", reason="not_json") < 300:
                    await asyncio.sleep(0.05)
            assert await _metric(village.base_url, "alertd_invalid_messages_total", reason="unknown_kind") == 300
    finally:
        await forget_session(village)
    rejected = [r.getMessage() for r in caplog.records if "Rejected message" in r.getMessage()]
    assert len(rejected) == 2, rejected  # one per (device, reason) within the window


def test_repeats_within_the_window_are_counted_and_reported_with_the_next_line() -> None:
    logger = logging.getLogger("tests.ratelog")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect()
    logger.addHandler(handler)
    logger.propagate = False
    now = [0.0]
    log = RateLimitedLog(logger, window_s=60, clock=lambda: now[0])
    try:
        for _ in range(5):
            log.warning_for("t1:bad", "bad from %s", "t1")
        log.warning_for("t2:bad", "bad from %s", "t2")  # another key is not held back
        now[0] = 61.0
        log.warning_for("t1:bad", "bad from %s", "t1")
    finally:
        logger.removeHandler(handler)
    assert records == [
        "bad from t1",
        "bad from t2",
        "bad from t1 (4 more like this in the last 61 s not logged)",
    ]
