"""alertd/ingress/mqtt.py publishing: a broker that takes a ring command and never acknowledges it makes
the send a transient error within the deadline (the outbox retries it), never a hang. A real Mosquitto,
stopped with SIGSTOP: the TCP connection stays up, nothing answers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from pathlib import Path

import pytest

from alertd.config import MqttSettings
from alertd.errors import TransientError
from alertd.ingress import mqtt as mqtt_link
from alertd.ingress.mqtt import MqttLink
from alertd.metrics import Metrics
from tests.harness import private_broker

DEADLINE_S = 0.5


async def test_a_publish_the_broker_never_acknowledges_fails_transiently_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_link, "PUBLISH_TIMEOUT_S", DEADLINE_S)
    tag = uuid.uuid4().hex[:8]
    async with private_broker(tmp_path / "broker") as broker:
        settings = MqttSettings(url=f"mqtt://127.0.0.1:{broker.port}", client_id=f"t-{tag}", prefix=f"t-{tag}/v1")
        link = MqttLink(settings, lambda _item, _done: None, Metrics())
        task = asyncio.create_task(link.run())
        try:
            await asyncio.wait_for(link.up.wait(), 10)
            await asyncio.wait_for(link.publish(f"t-{tag}/v1/dev/t1/cmd", "{}"), 5)  # a live broker acknowledges
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(TransientError, match="t1/cmd"):
                    await asyncio.wait_for(link.publish(f"t-{tag}/v1/dev/t1/cmd", "{}"), 10)
                assert DEADLINE_S * 0.9 <= time.monotonic() - started < 5
            finally:
                broker.process.send_signal(signal.SIGCONT)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
