"""The broker link: terminal events in (acknowledged only after commit), ring and stop commands out.

A persistent session (fixed client id, clean session off, QoS 1) makes the broker keep alarms published
while we are away. paho acknowledges a QoS 1 message on receipt unless manual acknowledgement is on; we
turn it on and send the PUBACK from the engine's commit callback, so an alarm the broker handed us and a
crash took away is redelivered, never lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as paho

from alertd.config import MqttSettings
from alertd.core.events import DeviceStatus, Input, SensorState
from alertd.core.ports import Done, Health, Submit
from alertd.core.results import Result, Verdict
from alertd.errors import PermanentError, TransientError
from alertd.failpoints import AFTER_RECEIVE, Failpoints
from alertd.metrics import Metrics
from alertd.protocols.terminal import ProtocolError, Topics, parse_event, parse_status
from alertd.protocols.zigbee2mqtt import Z2mError, Z2mTopics, parse_availability
from alertd.ratelog import RateLimitedLog

_LOGGER = logging.getLogger(__name__)
# What a message the codec refused is acknowledged with: at once, or the broker would redeliver it forever.
_REJECTED = Result(Verdict.INVALID, detail="codec")

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
PENDING_PUBLISHES_EXPECTED = 256
MAX_INFLIGHT_PUBLISHES = 100


@dataclass(slots=True, eq=False)
class _Pubacks:
    """A batch of publishes waiting for their PUBACKs: one future for all of them, not one per command."""

    pending: dict[int, int] = field(default_factory=dict)  # paho message id -> index in the batch
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def acknowledged(self, mid: int) -> None:
        del self.pending[mid]
        if not self.pending and not self.done.done():
            self.done.set_result(None)

    def abandon(self) -> None:
        """The connection is gone: what is still pending will never be acknowledged on it."""
        if not self.done.done():
            self.done.set_result(None)


class MqttLink:
    def __init__(
        self,
        settings: MqttSettings,
        submit: Submit,
        metrics: Metrics,
        *,
        zigbee_base: str | None = None,  # Zigbee2MQTT's base topic; None: not watched
        failpoints: Failpoints | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.zigbee = Z2mTopics(zigbee_base) if zigbee_base else None
        self.submit = submit
        self.metrics = metrics
        self.failpoints = failpoints or Failpoints()
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not security)
        self._client: aiomqtt.Client | None = None
        self._waiting: dict[int, _Pubacks] = {}  # the current connection's publishes awaiting a PUBACK
        self._generation = 0
        self._last_error = "not connected yet"
        self.up = asyncio.Event()  # set while connected and subscribed
        self._log = RateLimitedLog(_LOGGER)

    # --- status -------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    def health(self) -> Health:
        return Health(True) if self.connected else Health(False, self._last_error)

    # --- the connection loop ------------------------------------------------------------------------

    def _make_client(self, waiting: dict[int, _Pubacks]) -> aiomqtt.Client:
        settings = self.settings
        tls_context = broker_tls(settings)
        client = aiomqtt.Client(
            hostname=settings.host,
            port=settings.port,
            identifier=self.settings.client_id,
            username=self.settings.username,
            password=self.settings.password,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=False,
            keepalive=self.settings.keepalive,
            tls_context=tls_context,
            timeout=CONNECT_TIMEOUT_S,
            # paho keeps at most 20 QoS 1 publishes unacknowledged by default; a burst of ring commands
            # then waits on broker round trips (and on Nagle, with a broker that does not set TCP_NODELAY).
            max_inflight_messages=MAX_INFLIGHT_PUBLISHES,
            # Without TCP_NODELAY, Nagle holds our PUBACKs and ring commands for tens of milliseconds.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )
        # aiomqtt 2.x has no manual-ack switch (aiomqtt#345); paho's is the documented way.
        client._client.manual_ack_set(True)
        # Ring commands are published in batches (publish_all) and their PUBACKs are matched here, one dict
        # lookup each; aiomqtt's own publish keeps an event and an awaiting task per message. Message ids
        # that are not ours (aiomqtt's publishes, if any) go on to aiomqtt.
        aiomqtt_on_publish = client._client.on_publish

        def on_publish(paho_client: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:
            batch = waiting.pop(mid, None)
            if batch is not None:
                batch.acknowledged(mid)
            elif aiomqtt_on_publish is not None:
                aiomqtt_on_publish(paho_client, userdata, mid, *rest)

        client._client.on_publish = on_publish
        _register_writes_at_once(client)
        # The terminal outbox keeps many publishes in flight on purpose; aiomqtt warns past this many.
        client.pending_calls_threshold = PENDING_PUBLISHES_EXPECTED
        return client

    async def run(self) -> None:
        failures = 0
        while True:
            waiting: dict[int, _Pubacks] = {}
            client = self._make_client(waiting)
            try:
                async with client:
                    self._generation += 1
                    # Subscribe every time: the broker may have lost our session while we were away.
                    for topic in self.topics.subscriptions() + (self.zigbee.subscriptions() if self.zigbee else []):
                        await client.subscribe(topic, qos=1)
                    self._client, self._waiting = client, waiting
                    self.up.set()
                    self.metrics.mqtt_connected.set(1)
                    _LOGGER.info("Connected to MQTT broker %s", safe_broker_url(self.settings.url))
                    failures = 0
                    async for message in client.messages:
                        self._on_message(client, self._generation, message)
            except aiomqtt.MqttError as err:
                self._last_error = f"broker link down: {err}"
                level = logging.WARNING if failures == 0 else logging.DEBUG
                _LOGGER.log(level, "MQTT broker %s unreachable: %s", safe_broker_url(self.settings.url), err)
            finally:
                self._client = None
                for batch in set(waiting.values()):
                    batch.abandon()
                waiting.clear()
                self.up.clear()
                self.metrics.mqtt_connected.set(0)
            failures += 1
            delay = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(failures, 10)) * self._rng.uniform(0.5, 1.0)
            await asyncio.sleep(delay)

    # --- inbound ------------------------------------------------------------------------------------

    def _on_message(self, client: aiomqtt.Client, generation: int, message: aiomqtt.Message) -> None:
        self.failpoints.hit(AFTER_RECEIVE)
        ack = self._acker(client, generation, message.mid, message.qos)
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        topic = message.topic.value
        if self.zigbee is not None and topic.startswith(self.zigbee.base + "/"):
            self._on_zigbee(self.zigbee, topic, payload, bool(message.retain), ack)
            return
        try:
            device_id, leaf = self.topics.parse(topic)
            item: Input = (
                DeviceStatus(device_id, parse_status(payload)) if leaf == "status" else parse_event(device_id, payload)
            )
        except ProtocolError as err:
            self.metrics.invalid.labels(reason=err.reason).inc()
            # Keyed by topic and reason: one broken terminal floods with the same line, not a new one.
            self._log.warning_for(f"{topic[:200]}:{err.reason}", "Rejected message on %s: %s", topic[:200], err)
            ack(_REJECTED)  # a bad message acknowledged now, or the broker would redeliver it forever
            return
        self.submit(item, ack)

    def _on_zigbee(self, zigbee: Z2mTopics, topic: str, payload: bytes, retained: bool, ack: Done) -> None:
        try:
            name, what = zigbee.parse(topic)
            item: Input = (
                DeviceStatus(name, parse_availability(payload), source="zigbee2mqtt")
                if what == "availability"
                else SensorState(name, payload, retained)
            )
        except Z2mError as err:
            if err.reason != "bad_topic":  # the bridge's own topics are not device messages
                self.metrics.invalid.labels(reason=f"zigbee2mqtt_{err.reason}").inc()
                self._log.warning_for(
                    f"{topic[:200]}:{err.reason}", "Rejected Zigbee2MQTT message on %s: %s", topic[:200], err
                )
            ack(_REJECTED)
            return
        self.submit(item, ack)

    def _acker(self, client: aiomqtt.Client, generation: int, mid: int, qos: int) -> Done:
        def ack(_result: Result) -> None:
            # A PUBACK belongs to the connection that received the message; after a reconnect the broker
            # redelivers it under a new id and our deduplication absorbs the repeat.
            if qos > 0 and generation == self._generation and self._client is client:
                client._client.ack(mid, qos)

        return ack

    # --- outbound -----------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: str) -> None:
        [error] = await self.publish_all([(topic, payload)])
        if error is not None:
            raise error

    async def publish_all(self, commands: Sequence[tuple[str, str]]) -> list[Exception | None]:
        """Publish every (topic, payload) at QoS 1, back to back, then wait for their PUBACKs together,
        within PUBLISH_TIMEOUT_S. For each command, in order: None once the broker has it, else the error
        (TransientError: retry; PermanentError: a topic the broker can never take)."""
        client, waiting = self._client, self._waiting
        if client is None:
            return [TransientError(self._last_error)] * len(commands)
        outcomes: list[Exception | None] = [None] * len(commands)
        batch = _Pubacks()
        for index, (topic, payload) in enumerate(commands):
            try:
                info = client._client.publish(topic, payload.encode(), qos=1)
            except ValueError as err:  # a wildcard or an empty topic: no retry will ever publish it
                outcomes[index] = PermanentError(f"publish to {topic!r}: {err}")
                continue
            if info.rc != paho.MQTT_ERR_SUCCESS:
                outcomes[index] = TransientError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
            elif not info.is_published():
                batch.pending[info.mid] = index
                waiting[info.mid] = batch
        # Onto the wire now, ahead of what this loop turn does next (the texts' HTTP requests): with the
        # writer registered at once (_register_writes_at_once) paho's own bookkeeping stays in step.
        _write_now(client)
        if not batch.pending:
            return outcomes
        why = "the broker link went down before its PUBACK"
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await batch.done
        except TimeoutError:
            why = f"no PUBACK within {PUBLISH_TIMEOUT_S:.0f} s"
        finally:
            for mid, index in batch.pending.items():
                waiting.pop(mid, None)
                outcomes[index] = TransientError(f"publish to {commands[index][0]}: {why}")
        return outcomes


def _register_writes_at_once(client: aiomqtt.Client) -> None:
    """paho asks for the socket's writer when it has bytes queued and drops it when they are written.
    aiomqtt registers it a loop turn late (call_soon_threadsafe, as paho may ask from its connect thread) but
    drops it at once, so a write made in between leaves a writer registered that paho no longer knows of.
    From the loop's own thread (every publish and acknowledgement of ours), register it at once."""
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    paho_client = client._client
    deferred = paho_client.on_socket_register_write

    def register(paho_client: paho.Client, userdata: Any, sock: Any) -> None:
        if threading.get_ident() != loop_thread or deferred is None:
            if deferred is not None:
                deferred(paho_client, userdata, sock)
            return
        loop.add_writer(sock.fileno(), _write_now, client)

    paho_client.on_socket_register_write = register


def _write_now(client: aiomqtt.Client) -> None:
    """Write what paho has queued, as aiomqtt's writer does: an error ends the connection."""
    try:
        client._client.loop_write()
    except Exception as err:  # noqa: BLE001 (any: a broken socket; aiomqtt's reader reports it)
        if not client._disconnected.done():
            client._disconnected.set_exception(err)


def broker_tls(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for an mqtts:// broker (with our client certificate, if set); None for mqtt://."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


def safe_broker_url(url: str) -> str:
    """The broker URL without credentials, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"
