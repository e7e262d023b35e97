"""Builds every part in one place and supervises them: one TaskGroup, signals, systemd notify."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from aiohttp import web

from alertd.channels.console import ConsoleSender
from alertd.channels.failover import FailoverSender
from alertd.channels.terminal import TerminalSender
from alertd.clock import CHECK_INTERVAL_S as CLOCK_CHECK_INTERVAL_S
from alertd.clock import SteadyClock
from alertd.commands import CommandBook
from alertd.config import Config, load_roster
from alertd.core.incidents import Channel
from alertd.core.messages import Texts
from alertd.core.ports import Health, Sender
from alertd.engine import Engine
from alertd.errors import ConfigError
from alertd.failpoints import Failpoints
from alertd.ingress.mqtt import BrokerSettings, MqttLink
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.profiles import load_profiles
from alertd.reserve import Reserve
from alertd.sdnotify import Notifier
from alertd.store import Store
from alertd.web.app import WebDeps, make_app, make_operator_app, open_operator_socket

if TYPE_CHECKING:
    from alertd.modem.session import AtSession

# The Twilio and serial stacks are imported only when configured: a third of start-up is imports.
# ruff: noqa: PLC0415

_LOGGER = logging.getLogger(__name__)

# SIGTERM: sends already handed to a carrier get this long to finish and be recorded.
DRAIN_TIMEOUT_S = 10.0
# Ring commands are small and the broker acknowledges them in microseconds; keep many in flight, within
# the shipped mosquitto.conf's max_inflight_messages (100).
TERMINAL_CONCURRENCY = 64
# SMS requests in flight: Twilio takes many at once; the modem serialises its own commands anyway.
SMS_CONCURRENCY = 32


class Daemon:
    def __init__(
        self, config: Config, environ: Mapping[str, str] | None = None, *, sms_stream: TextIO | None = None
    ) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.sms_stream = sms_stream
        self.metrics = Metrics()
        self.failpoints = Failpoints.from_env(self.environ)
        self.notifier = Notifier.from_env(self.environ)
        self.clock = SteadyClock()  # every timer in the process runs on it: a wall-clock step moves none
        self.engine: Engine | None = None
        self.link: MqttLink | None = None
        self.modem: AtSession | None = None
        self.health_checks: dict[str, Callable[[], Health]] = {}
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    def health_of(self, part: str) -> Health:
        """One part's health as /healthz reports it (mqtt, terminal, sms:<carrier>, modem, receiver:<name>)."""
        return self.health_checks[part]()

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: a new roster for what comes next; open incidents and the outbox are untouched."""
        if self.engine is None:
            return
        self.notifier.reloading()
        try:
            profiles = load_profiles(self.config.settings.daemon.profiles)
            roster = load_roster(self.config.roster_path, profiles)
        except ConfigError as err:
            for problem in err.problems:
                _LOGGER.error("Roster reload refused: %s", problem)
        else:
            self.engine.replace_roster(roster, profiles)
            _LOGGER.info(
                "Roster reloaded: %d groups, %d households, %d devices",
                len(roster.groups), len(roster.households), len(roster.devices),
            )  # fmt: skip
        self.notifier.ready()

    def _sms_sender(self, modem: Sender | None) -> Sender:
        """Twilio and/or the GSM modem, the preferred one first; the console when neither is configured."""
        settings = self.config.settings
        twilio = settings.twilio
        carriers: list[Sender] = []
        if twilio.enabled and twilio.account_sid and twilio.auth_token and twilio.from_number:
            from alertd.channels.twilio_sms import TwilioSender

            public = settings.http.public_url
            carriers.append(
                TwilioSender(
                    twilio.account_sid,
                    twilio.auth_token,
                    twilio.from_number,
                    twilio.api_base_url,
                    status_callback=f"{public.rstrip('/')}/twilio/status" if public else None,
                    timeout_s=twilio.timeout_s,
                )
            )
        if modem is not None:
            carriers.insert(0 if settings.sms.prefer == "modem" else len(carriers), modem)
        if not carriers:
            _LOGGER.warning("No Twilio account or GSM modem configured: SMS are printed by the console channel")
            return ConsoleSender(self.sms_stream)
        if len(carriers) == 1:
            return carriers[0]
        return FailoverSender(carriers, hedge_after_s=settings.sms.hedge_after_s, metrics=self.metrics)

    async def run(self) -> None:
        settings = self.config.settings
        store = await Store.open(settings.store.path)
        runners: list[web.AppRunner] = []
        sms_sender: Sender | None = None
        try:
            reserve = Reserve(
                settings.store.path.with_name(settings.store.path.name + ".reserve"),
                int(settings.store.reserve_mb * 1024 * 1024),
            )
            if not await reserve.lay() and reserve.size > 0:
                _LOGGER.warning("No room for the disk reserve beside %s: a full disk will stop commits", store.path)
            engine = Engine(
                store,
                self.config.roster,
                Texts(settings.daemon.zone, settings.daemon.language),
                self.metrics,
                join_window_s=settings.incidents.join_window_s,
                dedup_window_s=settings.incidents.dedup_window_s,
                failpoints=self.failpoints,
                clock=self.clock,
                grace_s=settings.supervision.grace_s,
                supervision_interval_s=settings.supervision.interval_s,
                digest_at=settings.supervision.digest_time,
                digest_catch_up_s=settings.supervision.digest_catch_up_s,
                reserve=reserve,
                commands=CommandBook(
                    prefix=settings.mqtt.prefix,
                    zigbee_base=settings.zigbee2mqtt.base,
                    profiles=self.config.profiles,
                ),
            )
            mqtt = settings.mqtt
            link = MqttLink(
                BrokerSettings(
                    url=mqtt.url,
                    client_id=mqtt.client_id,
                    prefix=mqtt.prefix,
                    username=mqtt.username,
                    password=mqtt.password,
                    keepalive=mqtt.keepalive,
                    ca_file=str(mqtt.ca_file) if mqtt.ca_file else None,
                    cert_file=str(mqtt.cert_file) if mqtt.cert_file else None,
                    key_file=str(mqtt.key_file) if mqtt.key_file else None,
                    zigbee_base=settings.zigbee2mqtt.base if settings.zigbee2mqtt.enabled else None,
                ),
                engine.submit,
                self.metrics,
                failpoints=self.failpoints,
            )
            modem: AtSession | None = None
            modem_sms: Sender | None = None
            if settings.modem.url or settings.receivers:
                from alertd.channels.gsm_modem import ModemSender
                from alertd.ingress.contact_id import ContactIdReceiver
                from alertd.ingress.modem_inbox import ModemInbox
                from alertd.modem.session import AtSession
                from alertd.serial_lines import LineSettings
            if settings.modem.url:
                # One AT session on the modem's line, carrying the SMS sender and the inbox of replies.
                modem = AtSession(
                    LineSettings("modem", settings.modem.url, settings.modem.baudrate),
                    self.metrics,
                    command_timeout_s=settings.modem.command_timeout_s,
                    sweep_interval_s=settings.modem.sweep_interval_s,
                )
                modem.attach(ModemInbox(modem, engine.submit, self.metrics, clock=self.clock))
                modem_sms = ModemSender(modem, smsc=settings.modem.smsc)
            receivers = [
                ContactIdReceiver(
                    LineSettings(r.name, r.url, r.baudrate, r.bytesize, r.parity, r.stopbits),
                    r.format,
                    lambda: engine.desk.roster,
                    engine.submit,
                    self.metrics,
                )
                for r in settings.receivers
            ]
            sms_sender = self._sms_sender(modem_sms)
            workers = [
                OutboxWorker(store, Channel.TERMINAL, TerminalSender(link), self.metrics,
                             max_attempts=settings.sms.max_attempts, failpoints=self.failpoints,
                             concurrency=TERMINAL_CONCURRENCY, clock=self.clock),
                OutboxWorker(store, Channel.SMS, sms_sender, self.metrics,
                             max_attempts=settings.sms.max_attempts, failpoints=self.failpoints,
                             concurrency=SMS_CONCURRENCY, clock=self.clock),
            ]  # fmt: skip

            def wake_workers() -> None:
                for worker in workers:
                    worker.wake()

            engine.on_commit = wake_workers
            self.engine, self.link, self.modem = engine, link, modem
            await engine.load()
            self.health_checks = health = {
                "mqtt": link.health,
                "terminal": workers[0].health,
                f"sms:{sms_sender.name}": workers[1].health,
            }
            health["disk"] = lambda: _disk_health(engine)
            if modem is not None:
                health["modem"] = modem.health
            health.update({f"receiver:{r.name}": r.line.health for r in receivers})
            runners = await self._start_http(store, engine, health)
            loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
                (f"receiver-{r.name}", r.run) for r in receivers
            ]
            if modem is not None:
                loops.append(("modem", modem.run))
            await self._supervise(engine, link, workers, loops)
        finally:
            for runner in reversed(runners):
                await runner.cleanup()
            close = getattr(sms_sender, "close", None)
            if close is not None:
                await close()
            await store.close()

    async def _start_http(
        self, store: Store, engine: Engine, health_checks: dict[str, Callable[[], Health]]
    ) -> list[web.AppRunner]:
        """Webhooks, /healthz and /metrics on TCP; operator actions on the Unix socket only."""
        settings = self.config.settings
        http = settings.http
        twilio = settings.twilio
        deps = WebDeps(
            call=engine.call,
            store=store,
            metrics=self.metrics,
            health_checks=health_checks,
            auth_token=twilio.auth_token if twilio.enabled else None,
            public_url=http.public_url,
        )
        runners: list[web.AppRunner] = []
        try:
            runner = web.AppRunner(make_app(deps), access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, http.host, http.port).start()
            _LOGGER.info("HTTP listening on %s:%s", http.host, http.port)
            try:
                sock, access = open_operator_socket(http.socket, http.socket_group)
            except OSError as err:
                # Alarms matter more than the operator's command line: run on, loudly, without it.
                # Terminals and SMS replies still acknowledge; /healthz says what is missing.
                detail = f"operator socket {http.socket} not open: {err}"
                _LOGGER.error("%s; alertd ack/on-scene/resolve/cancel will not work", detail)
                health_checks["operator"] = lambda: Health(False, detail)
                return runners
            operator = web.AppRunner(make_operator_app(deps, access), access_log=None)
            try:
                await operator.setup()
            except BaseException:
                sock.close()
                raise
            runners.append(operator)
            await web.SockSite(operator, sock).start()
            _LOGGER.info("Operator socket %s (mode 0660, group %s)", http.socket, access.group)
            health_checks["operator"] = lambda: Health(True)
        except BaseException:
            for started in reversed(runners):
                await started.cleanup()
            raise
        return runners

    async def _supervise(
        self,
        engine: Engine,
        link: MqttLink,
        workers: list[OutboxWorker],
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]],
    ) -> None:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with contextlib.suppress(RuntimeError):  # not the main thread (tests): no signal handlers
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            async with asyncio.TaskGroup() as tg:
                engine_task = tg.create_task(engine.run(), name="engine")
                link_task = tg.create_task(link.run(), name="mqtt")
                worker_tasks = [tg.create_task(w.run(), name=f"outbox-{w.channel}") for w in workers]
                line_tasks = [tg.create_task(run(), name=name) for name, run in loops]
                watchdog = tg.create_task(self._watchdog(), name="watchdog")
                clock_watch = tg.create_task(self._watch_clock(), name="clock")
                self.notifier.ready()
                self.ready.set()
                _LOGGER.info("alertd ready")
                await self._stop.wait()
                _LOGGER.info("Stopping: no new alarms; draining sends in flight (up to %.0f s)", DRAIN_TIMEOUT_S)
                self.notifier.stopping()
                # The link and the modem stay up while draining: sends in flight still need their answers.
                # Alarms not yet committed stay unacknowledged at the broker and come back on restart.
                async with asyncio.timeout(DRAIN_TIMEOUT_S + 1):
                    await asyncio.gather(*(w.drain(DRAIN_TIMEOUT_S) for w in workers))
                for task in (link_task, engine_task, watchdog, clock_watch, *worker_tasks, *line_tasks):
                    task.cancel()
        finally:
            for sig in handled:
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

    async def _watch_clock(self) -> None:
        disk = "ok"
        while True:
            self.clock.check()
            self.metrics.clock_offset.set(self.clock.offset)
            if self.engine is not None and (now := _disk_health(self.engine).detail) != disk:
                disk = now
                self.notifier.status("ready" if disk == "ok" else f"disk: {disk}")  # systemctl status shows it
            await asyncio.sleep(CLOCK_CHECK_INTERVAL_S)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is None:
            return
        while True:
            self.notifier.watchdog()  # sent from the event loop: a wedged loop stops the pings
            await asyncio.sleep(interval)


def _disk_health(engine: Engine) -> Health:
    if engine.durable.failure is not None:
        return Health(False, f"commits failing, alarms held at the broker: {engine.durable.failure}")
    if engine.store.write_failure is not None:  # the outbox's writes fail too when the disk is full
        return Health(False, f"store writes failing: {engine.store.write_failure}")
    if engine.durable.on_reserve:
        return Health(False, "disk full: running on the reserve; free space")
    return Health(True)
