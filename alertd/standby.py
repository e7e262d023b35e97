"""What a standby runs while another instance is active (issue 15): its broker connection and its HTTP side.

The standby's broker check is its own (BrokerWatch: its own account and client id, clean session, no
subscriptions): it proves the broker is reachable from here, so an operator sees a standby that could not
take over. The alarms' session (`[mqtt] client_id`, persistent) belongs to the service, not to one node:
only the active joins it, and a new active resumes it whole (docs/deploy.md, "The broker side").

The HTTP side answers /healthz (role, who is active, the broker and the database) and /metrics. Every other
page says, in Chinese first, that this is the standby and which instance is active: the console and the
webhooks are the active's (a proxy in front routes to whichever /healthz says "active").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiomqtt
from aiohttp import web

from alertd.config import Config, Settings
from alertd.core.ports import Health
from alertd.ingress.mqtt import CONNECT_TIMEOUT_S, RECONNECT_MAX_S, broker_tls, safe_broker_url
from alertd.lease_keeper import LeaseKeeper
from alertd.metrics import Metrics

_LOGGER = logging.getLogger("alertd.standby")
PROBE_EVERY_S = 5.0  # without a login of its own: how often the standby checks the broker answers


class BrokerWatch:
    """The standby's broker check, which takes nothing: its health is the standby's.

    It must never touch the alarms' session. On a broker that names sessions by username
    (use_username_as_clientid, as the shipped mosquitto.conf does), a login as the service's account would
    be that session, and a clean login would wipe it with the alarms queued in it. So it logs in with the
    standby's own account ([standby] mqtt_username), or, when the broker needs a login and the standby has
    none, only checks that the broker answers on its port (TCP, and TLS for mqtts://). On a broker without
    logins it logs in anonymously under a client id of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.mqtt
        self.standby = settings.standby
        self.identifier = f"{settings.mqtt.client_id}.standby.{settings.standby.instance}"
        self._up = False
        self._error = "not connected yet"
        self._detail = "ok"

    def health(self) -> Health:
        return Health(True, self._detail) if self._up else Health(False, self._error)

    async def run(self) -> None:
        if self.standby.mqtt_username is None and self.settings.username is not None:
            await self._probe()
        else:
            await self._login()

    async def _login(self) -> None:
        delay = 0.5
        while True:
            client = aiomqtt.Client(
                hostname=self.settings.host, port=self.settings.port, identifier=self.identifier,
                username=self.standby.mqtt_username, password=self.standby.mqtt_password,
                protocol=aiomqtt.ProtocolVersion.V311, clean_session=True, keepalive=self.settings.keepalive,
                tls_context=broker_tls(self.settings), timeout=CONNECT_TIMEOUT_S,
            )  # fmt: skip
            try:
                async with client:
                    self._up, delay = True, 0.5
                    _LOGGER.info("Standby: connected to MQTT broker %s", safe_broker_url(self.settings.url))
                    async for _ in client.messages:  # none: it subscribes to nothing; returns when the link drops
                        pass
            except aiomqtt.MqttError as err:
                self._error = f"broker link down: {err}"
            finally:
                self._up = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _probe(self) -> None:
        self._detail = "answers on its port (no login: set [standby] mqtt_username for one)"
        while True:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    _, writer = await asyncio.open_connection(
                        self.settings.host, self.settings.port, ssl=broker_tls(self.settings)
                    )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                self._up = True
            except (OSError, TimeoutError) as err:
                self._up, self._error = False, f"broker unreachable: {err or type(err).__name__}"
            await asyncio.sleep(PROBE_EVERY_S)


@contextlib.asynccontextmanager
async def standby_side(config: Config, keeper: LeaseKeeper, metrics: Metrics) -> AsyncIterator[None]:
    """The standby's broker connection and HTTP side, from entry to exit (the active's replace them)."""
    broker = BrokerWatch(config.settings)
    watch = asyncio.create_task(broker.run(), name="standby-broker")

    async def healthz(_request: web.Request) -> web.Response:
        database = Health(keeper.problem is None, keeper.problem or "ok")
        checks = {name: {"ok": h.ok, "detail": h.detail} for name, h in (("mqtt", broker.health()),
                                                                          ("database", database))}  # fmt: skip
        ok = all(c["ok"] for c in checks.values())
        # 200 for a standby ready to take over: it is healthy, and "role" tells a proxy it is not the active.
        return web.json_response({"ok": ok, **keeper.role(), "checks": checks}, status=200 if ok else 503)

    async def render_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def elsewhere(_request: web.Request) -> web.Response:
        active = keeper.standing.active_holder or "无 (none)"
        text = f"备用机：值班台在主用机 {active} 上。\nStandby instance {keeper.me}: the active instance is {active}.\n"
        return web.Response(status=503, text=text, headers={"Retry-After": "5"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", render_metrics)
    app.router.add_route("*", "/{tail:.*}", elsewhere)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    http = config.settings.http
    try:
        await web.TCPSite(runner, http.host, http.port).start()
        _LOGGER.info("Standby %s: HTTP on %s:%s; waiting for the lease", keeper.me, http.host, http.port)
        yield
    finally:
        await runner.cleanup()  # the active's HTTP side takes the port next
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
