"""The floor for bench_pipeline: a minimal pass-through alarm forwarder, run as its own process.

On an alarm from terminal t{g}-{h} it publishes 9 ring commands (QoS 1) to the other terminals of
group g and POSTs 3 SMS (leader + 2 patrol members) to the Twilio-shaped server. Nothing is persisted,
nothing is deduplicated, the alarm is acknowledged to the broker on receipt (paho's default). It is
what the hardware, the broker and the fake Twilio allow; alertd's cost is measured against it.

paho-mqtt 2 callback client with TCP_NODELAY and a persistent session (like alertd's); the HTTP side is
aiohttp on an event loop in a second thread, with a keep-alive connection pool.

    python -m bench.forwarder --prefix P --client-id C --twilio URL --sid S --token T
prints "ready" on stdout once subscribed; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import socket
import sys
import threading
import time
from typing import Any

import aiohttp
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from alertd.core.model import Kind
from alertd.protocols.terminal import encode_ring

PATROL_PHONES = ("+8613900090021", "+8613900090022")
FROM_NUMBER = "+8613900000000"
HOUSES = 10
HTTP_POOL = 100  # aiohttp's default connection limit


def leader_phone(group: int) -> str:
    return f"+86138{group:04d}0005"


class Forwarder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.prefix: str = args.prefix
        self.messages_url = f"{args.twilio.rstrip('/')}/2010-04-01/Accounts/{args.sid}/Messages.json"
        token = base64.b64encode(f"{args.sid}:{args.token}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.errors = 0
        self.stopped = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, clean_session=False)
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message

    # --- MQTT (paho's network thread) ---------------------------------------------------------------

    def on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
        client.subscribe(f"{self.prefix}/dev/+/event", qos=1)

    def on_subscribe(self, *_args: Any) -> None:
        print("ready", flush=True)

    def on_message(self, client: mqtt.Client, _ud: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) < 3 or parts[-1] != "event":
            return
        device = parts[-2]
        try:
            data = json.loads(message.payload)
            if data.get("type") != "alarm":
                return
            group_s, house_s = device[1:].split("-")
            group, house = int(group_s), int(house_s)
            kind = Kind(data.get("kind", "panic"))
        except (ValueError, AttributeError):
            self.errors += 1
            return
        label = f"{house}号户 {group}组"
        ring = encode_ring(0, kind, f"h{group}-{house}", label)
        for other in range(1, HOUSES + 1):
            if other != house:
                client.publish(f"{self.prefix}/dev/t{group}-{other}/cmd", ring, qos=1)
        when = time.strftime("%H:%M")
        body = f"【联防】{label} 求救！{group}组{house}号 {when} 回1收到 2到场 3解除 #0000"
        for to in (leader_phone(group), *PATROL_PHONES):
            asyncio.run_coroutine_threadsafe(self.send_sms(to, body), self.loop)

    # --- HTTP (the asyncio thread) --------------------------------------------------------------------

    async def send_sms(self, to: str, body: str) -> None:
        assert self.session is not None
        try:
            async with self.session.post(
                self.messages_url, data={"To": to, "From": FROM_NUMBER, "Body": body}, headers=self.headers
            ) as response:
                await response.read()
                if response.status != 201:
                    self.errors += 1
        except aiohttp.ClientError:
            self.errors += 1

    def run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def make_session() -> None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_POOL))

        self.loop.run_until_complete(make_session())
        self.loop.run_forever()

    def run(self, host: str, port: int) -> None:
        http_thread = threading.Thread(target=self.run_loop, name="http", daemon=True)
        http_thread.start()
        while self.session is None:
            time.sleep(0.001)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.stopped.wait()
        self.client.disconnect()
        self.client.loop_stop()
        session = self.session

        async def close() -> None:
            await session.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        http_thread.join(5)
        print(f"stopped errors={self.errors}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--twilio", required=True, help="base URL of the Twilio-shaped server")
    parser.add_argument("--sid", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    forwarder = Forwarder(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: forwarder.stopped.set())
    forwarder.run(args.host, args.port)


if __name__ == "__main__":
    main()
