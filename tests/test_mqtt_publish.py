"""alertd/ingress/mqtt.py publishing: a broker that takes a ring command and never acknowledges it makes
the send a transient error within the deadline (the outbox retries it), never a hang. A real Mosquitto,
stopped with SIGSTOP: the TCP connection stays up, nothing answers."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from alertd.config import MqttSettings
from alertd.errors import PermanentError, TransientError
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


@contextlib.asynccontextmanager
async def running_link(broker_port: int, tag: str) -> AsyncIterator[MqttLink]:
    settings = MqttSettings(url=f"mqtt://127.0.0.1:{broker_port}", client_id=f"t-{tag}", prefix=f"t-{tag}/v1")
    link = MqttLink(settings, lambda _item, _done: None, Metrics())
    task = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.up.wait(), 10)
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_batch_is_published_whole_and_each_command_gets_its_own_outcome(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    async with (
        private_broker(tmp_path / "broker") as broker,
        aiomqtt.Client("127.0.0.1", broker.port, identifier=f"watch-{tag}") as watcher,
        running_link(broker.port, tag) as link,
    ):
        await watcher.subscribe(f"t-{tag}/v1/dev/+/cmd", qos=1)
        commands = [(f"t-{tag}/v1/dev/t{i}/cmd", f'{{"n":{i}}}') for i in range(40)]
        commands.insert(7, (f"t-{tag}/v1/dev/+/cmd", "{}"))  # a device id with a wildcard: never publishable
        outcomes = await asyncio.wait_for(link.publish_all(commands), 10)
        assert isinstance(outcomes[7], PermanentError)
        assert "+" in str(outcomes[7])
        assert outcomes[:7] + outcomes[8:] == [None] * 40
        received: set[str] = set()
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                received.add(str(message.topic))
                if len(received) == 40:
                    break
        assert received == {topic for topic, _ in commands} - {f"t-{tag}/v1/dev/+/cmd"}


async def test_a_batch_waiting_for_pubacks_fails_as_soon_as_the_link_goes_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_link, "PUBLISH_TIMEOUT_S", 60.0)  # the link's loss, not the deadline, must end it
    tag = uuid.uuid4().hex[:8]
    async with private_broker(tmp_path / "broker") as broker, running_link(broker.port, tag) as link:
        assert broker.process is not None
        broker.process.send_signal(signal.SIGSTOP)  # takes the commands, never acknowledges them
        commands = [(f"t-{tag}/v1/dev/t{i}/cmd", "{}") for i in range(5)]
        waiting = asyncio.create_task(link.publish_all(commands))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        started = time.monotonic()
        broker.process.send_signal(signal.SIGKILL)  # the connection drops
        outcomes = await asyncio.wait_for(waiting, 30)
        assert time.monotonic() - started < 30
        assert all(isinstance(o, TransientError) and "went down" in str(o) for o in outcomes), outcomes


def _writer_registered(link: MqttLink) -> bool:
    assert link._client is not None
    sock = link._client._client.socket()
    assert sock is not None
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    key = selector.get_map().get(sock.fileno())
    return key is not None and bool(key.events & selectors.EVENT_WRITE)


async def test_a_batch_is_on_the_wire_before_the_loop_turns_and_leaves_no_writer_behind(tmp_path: Path) -> None:
    # Ring commands leave at once, ahead of the texts' HTTP requests built in the same loop turn. And a
    # writer left registered after paho has written everything would wake the loop on every turn (and,
    # after a reconnect on the same descriptor number, stand in for the new connection's).
    tag = uuid.uuid4().hex[:8]
    async with private_broker(tmp_path / "broker") as broker, running_link(broker.port, tag) as link:
        for round_ in range(2):
            assert link._client is not None
            paho_client = link._client._client
            commands = [(f"t-{tag}/v1/dev/t{i}/cmd", "{}") for i in range(20)]
            sending = asyncio.create_task(link.publish_all(commands))
            await asyncio.sleep(0)  # the task's first step: publish, then wait for the PUBACKs
            assert not sending.done()
            assert not paho_client.want_write(), "the batch is still queued in paho"
            assert await asyncio.wait_for(sending, 10) == [None] * 20
            await asyncio.sleep(0.05)
            assert not _writer_registered(link)
            if round_ == 0:  # and again on a new connection, after the broker's restart
                await broker.kill()
                await asyncio.wait_for(_until(lambda: not link.up.is_set()), 10)
                await broker.start()
                await asyncio.wait_for(link.up.wait(), 20)


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.02)
