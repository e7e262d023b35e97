"""Every part of a running alertd, built from the config in one place and closed in the reverse order.

`assemble` is an async context manager: it opens the store, builds the adapters, the engine and the
outbox workers in a straight line (each gets what it needs when it is made; nothing is wired up
afterwards), loads the engine's state, starts the HTTP side, and yields the typed `Parts`. On the way
out it closes the HTTP side first (no new requests), then the carriers, then the store. Running the
parts' loops is the daemon's job (alertd.daemon).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from aiohttp import web

from alertd.channels.console import ConsoleSender
from alertd.channels.failover import FailoverSender
from alertd.channels.terminal import TerminalSender
from alertd.clock import SteadyClock
from alertd.commands import CommandBook
from alertd.config import Config
from alertd.core.messages import Texts
from alertd.core.ports import Health, Sender
from alertd.core.records import Channel
from alertd.core.storm import Storm
from alertd.engine import Engine
from alertd.failpoints import Failpoints
from alertd.inbox import Inbox
from alertd.ingress.mqtt import MqttLink
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.protocols.terminal import Topics
from alertd.reserve import Reserve
from alertd.store import Store, open_store
from alertd.web.app import WebDeps, make_app, make_operator_app, open_operator_socket
from alertd.web.live import Live

if TYPE_CHECKING:
    from alertd.channels.aliyun_sms import AliyunSender
    from alertd.ingress.aliyun_receipts import AliyunReceipts
    from alertd.ingress.contact_id import ContactIdReceiver
    from alertd.lease_keeper import LeaseKeeper
    from alertd.modem.session import AtSession

# The Twilio and serial stacks are imported only when configured: a third of start-up is imports.
# ruff: noqa: PLC0415

_LOGGER = logging.getLogger("alertd.daemon")

# Ring commands are small and the broker acknowledges them in microseconds; keep many in flight, within
# the shipped mosquitto.conf's max_inflight_messages (100).
TERMINAL_CONCURRENCY = 64
# SMS requests in flight: Twilio takes many at once; the modem serialises its own commands anyway.
SMS_CONCURRENCY = 32
# Calls being placed at once (a Twilio request each; the modem rings one phone at a time anyway).
VOICE_CONCURRENCY = 8

Loop = Callable[[], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Parts:
    store: Store
    engine: Engine
    link: MqttLink
    terminal: OutboxWorker  # ring and stop commands
    sms: OutboxWorker  # texts, through `sms.sender`: Aliyun, Twilio, the modem (failover) or the console
    voice: OutboxWorker  # alert calls: Twilio, the modem's ring (failover) or the console
    modem: AtSession | None
    receivers: tuple[ContactIdReceiver, ...]
    health: Mapping[str, Callable[[], Health]]  # /healthz: mqtt, terminal, sms:<carrier>, disk, operator...
    receipts: AliyunReceipts | None = None  # Aliyun's handset reports, asked for

    @property
    def workers(self) -> tuple[OutboxWorker, OutboxWorker, OutboxWorker]:
        return self.terminal, self.sms, self.voice

    def loops(self) -> list[tuple[str, Loop]]:
        """Every long-running task, by name: what the daemon runs in its TaskGroup."""
        loops: list[tuple[str, Loop]] = [("engine", self.engine.run), ("mqtt", self.link.run)]
        loops += [(f"outbox-{w.channel}", w.run) for w in self.workers]
        loops += [(f"receiver-{r.name}", r.run) for r in self.receivers]
        if self.modem is not None:
            loops.append(("modem", self.modem.run))
        if self.receipts is not None:
            loops.append(("aliyun-receipts", self.receipts.run))
        return loops


@contextlib.asynccontextmanager
async def assemble(
    config: Config,
    metrics: Metrics,
    *,
    clock: SteadyClock,
    failpoints: Failpoints | None = None,
    sms_stream: TextIO | None = None,
    lease: LeaseKeeper | None = None,
) -> AsyncIterator[Parts]:
    """`lease`: on a shared PostgreSQL, the lease this instance holds as the active one. Every commit and
    claim is fenced by it, and nothing is sent once it lapses."""
    settings = config.settings
    failpoints = failpoints or Failpoints()
    async with contextlib.AsyncExitStack() as closing:
        store = await open_store(
            settings.store, instance=settings.standby.instance, fence=lease.fence if lease is not None else None
        )
        closing.push_async_callback(store.close)
        reserve = None  # PostgreSQL keeps its own disk: the reserve is the SQLite file's
        if not settings.store.url:
            reserve = Reserve(
                settings.store.path.with_name(settings.store.path.name + ".reserve"),
                int(settings.store.reserve_mb * 1024 * 1024),
            )
            if not await reserve.lay() and reserve.size > 0:
                _LOGGER.warning("No room for the disk reserve beside %s: a full disk will stop commits", store.path)
        gate = lease.may_act if lease is not None else None

        inbox = Inbox()  # every adapter submits here; the engine drains it
        zigbee = settings.zigbee2mqtt
        link = MqttLink(
            settings.mqtt,
            inbox.submit,
            metrics,
            zigbee_base=zigbee.base if zigbee.enabled else None,
            failpoints=failpoints,
        )
        modem, modem_sms, modem_voice = _modem(config, inbox, metrics, clock)
        sms_sender, aliyun = await _sms_sender(config, modem_sms, metrics, sms_stream, closing)
        terminal = OutboxWorker(store, Channel.TERMINAL, TerminalSender(link), metrics,
                                max_attempts=settings.sms.max_attempts, failpoints=failpoints,
                                concurrency=TERMINAL_CONCURRENCY, clock=clock, gate=gate)  # fmt: skip
        sms = OutboxWorker(store, Channel.SMS, sms_sender, metrics,
                           max_attempts=settings.sms.max_attempts, failpoints=failpoints,
                           concurrency=SMS_CONCURRENCY, clock=clock, gate=gate)  # fmt: skip
        voice_sender = await _voice_sender(config, modem_voice, store, metrics, sms_stream, closing)
        voice = OutboxWorker(store, Channel.VOICE, voice_sender, metrics,
                             max_attempts=settings.voice.max_attempts, failpoints=failpoints,
                             concurrency=VOICE_CONCURRENCY, clock=clock, gate=gate)  # fmt: skip

        live = Live()  # committed incident changes, for the console's open boards
        engine = Engine(
            store,
            config.roster,
            Texts(settings.daemon.zone, settings.daemon.language),
            metrics,
            join_window_s=settings.incidents.join_window_s,
            dedup_window_s=settings.incidents.dedup_window_s,
            failpoints=failpoints,
            clock=clock,
            outlets=(terminal, sms, voice),
            watchers=(live.committed,),
            grace_s=settings.supervision.grace_s,
            supervision_interval_s=settings.supervision.interval_s,
            digest_at=settings.supervision.digest_time,
            digest_catch_up_s=settings.supervision.digest_catch_up_s,
            reserve=reserve,
            inbox=inbox,
            storm=Storm(settings.storm.threshold, settings.storm.window_s),
            commands=CommandBook(
                topics=Topics(settings.mqtt.prefix), zigbee_base=zigbee.base, profiles=config.profiles
            ),
        )
        await engine.load()
        receivers = _receivers(config, engine, inbox, metrics)
        receipts = None
        if aliyun is not None:
            from alertd.ingress.aliyun_receipts import AliyunReceipts

            interval = settings.aliyun.receipts_interval_s
            receipts = AliyunReceipts(store, aliyun, inbox.submit, interval_s=interval, clock=clock)

        health: dict[str, Callable[[], Health]] = {
            "mqtt": link.health,
            "terminal": terminal.health,
            f"sms:{sms_sender.name}": sms.health,
            f"voice:{voice_sender.name}": voice.health,
            "disk": lambda: disk_health(engine),
        }
        if modem is not None:
            health["modem"] = modem.health
        health.update({f"receiver:{r.name}": r.line.health for r in receivers})
        role = lease.role if lease is not None else lambda: {"role": "active", "instance": settings.standby.instance}
        await _serve_http(config, engine, store, metrics, health, closing, live, clock, role)
        yield Parts(store, engine, link, terminal, sms, voice, modem, tuple(receivers), health, receipts)


def disk_health(engine: Engine) -> Health:
    if engine.durable.failure is not None:
        return Health(False, f"commits failing, alarms held at the broker: {engine.durable.failure}")
    if engine.store.write_failure is not None:  # the outbox's writes fail too when the disk is full
        return Health(False, f"store writes failing: {engine.store.write_failure}")
    if engine.durable.on_reserve:
        return Health(False, "disk full: running on the reserve; free space")
    return Health(True)


def _modem(
    config: Config, inbox: Inbox, metrics: Metrics, clock: SteadyClock
) -> tuple[AtSession | None, Sender | None, Sender | None]:
    """One AT session on the modem's line, carrying the SMS sender, the bedside ring, the inbox of replies
    and the missed calls."""
    modem = config.settings.modem
    if not modem.url:
        return None, None, None
    from alertd.channels.gsm_modem import ModemSender
    from alertd.channels.modem_voice import ModemCaller
    from alertd.ingress.modem_calls import ModemCalls
    from alertd.ingress.modem_inbox import ModemInbox
    from alertd.modem.session import AtSession
    from alertd.serial_lines import LineSettings

    session = AtSession(
        LineSettings("modem", modem.url, modem.baudrate),
        metrics,
        command_timeout_s=modem.command_timeout_s,
        sweep_interval_s=modem.sweep_interval_s,
    )
    session.attach(ModemInbox(session, inbox.submit, metrics, clock=clock))
    # A phone that rings the modem (a missed-call acknowledgement) and the bedside ring of alert calls.
    session.attach(ModemCalls(session, inbox.submit, clock=clock))
    ring = ModemCaller(
        session, lambda report: inbox.submit(report, None), ring_s=config.settings.voice.ring_s, clock=clock
    )
    return session, ModemSender(session, smsc=modem.smsc), ring


def _receivers(config: Config, engine: Engine, inbox: Inbox, metrics: Metrics) -> list[ContactIdReceiver]:
    """The Contact ID receivers' serial lines; each looks accounts up in the engine's current roster."""
    if not config.settings.receivers:
        return []
    from alertd.ingress.contact_id import ContactIdReceiver
    from alertd.serial_lines import LineSettings

    return [
        ContactIdReceiver(
            LineSettings(r.name, r.url, r.baudrate, r.bytesize, r.parity, r.stopbits),
            r.format,
            lambda: engine.desk.roster,  # a SIGHUP's new roster is seen at once
            inbox.submit,
            metrics,
        )
        for r in config.settings.receivers
    ]


async def _sms_sender(
    config: Config,
    modem: Sender | None,
    metrics: Metrics,
    stream: TextIO | None,
    closing: contextlib.AsyncExitStack,
) -> tuple[Sender, AliyunSender | None]:
    """Aliyun, Twilio and the GSM modem, those configured, in [sms] prefer's order; the console when none is.
    Aliyun's sender is also returned: its receipts are asked for (alertd.ingress.aliyun_receipts)."""
    settings = config.settings
    twilio, aliyun = settings.twilio, settings.aliyun
    carriers: list[Sender] = []
    domestic: AliyunSender | None = None
    if aliyun.enabled and aliyun.access_key_id and aliyun.access_key_secret and aliyun.sign_name:
        from alertd.channels.aliyun_sms import AliyunSender

        domestic = AliyunSender(
            aliyun.access_key_id,
            aliyun.access_key_secret,
            aliyun.sign_name,
            aliyun.templates,
            aliyun.endpoint,
            timeout_s=aliyun.timeout_s,
        )
        closing.push_async_callback(domestic.close)
        carriers.append(domestic)
    if twilio.enabled and twilio.account_sid and twilio.auth_token and twilio.from_number:
        from alertd.channels.twilio_sms import TwilioSender

        public = settings.http.public_url
        sender = TwilioSender(
            twilio.account_sid,
            twilio.auth_token,
            twilio.from_number,
            twilio.api_base_url,
            status_callback=f"{public.rstrip('/')}/twilio/status" if public else None,
            timeout_s=twilio.timeout_s,
        )
        closing.push_async_callback(sender.close)
        carriers.append(sender)
    if modem is not None:
        carriers.append(modem)
    carriers = preferred(carriers, settings.sms.prefer)
    if not carriers:
        _LOGGER.warning("No SMS carrier (Aliyun, Twilio, GSM modem) configured: SMS are printed by the console")
        return ConsoleSender(stream), None
    if len(carriers) == 1:
        return carriers[0], domestic
    failover = FailoverSender(carriers, hedge_after_s=settings.sms.hedge_after_s, metrics=metrics)
    closing.push_async_callback(failover.close)  # before the carriers: its hedges still use them
    return failover, domestic


async def _voice_sender(
    config: Config,
    modem: Sender | None,
    store: Store,
    metrics: Metrics,
    stream: TextIO | None,
    closing: contextlib.AsyncExitStack,
) -> Sender:
    """Twilio's spoken calls and the modem's ring, those configured, in [voice] prefer's order; the console
    when neither is (nothing asks for calls then: `alertd check` refuses a roster that does)."""
    settings = config.settings
    twilio, public = settings.twilio, settings.http.public_url
    carriers: list[Sender] = []
    if twilio.enabled and twilio.account_sid and twilio.auth_token and twilio.from_number and public:
        from alertd.channels.twilio_voice import TwilioCaller

        caller = TwilioCaller(
            twilio.account_sid,
            twilio.auth_token,
            twilio.from_number,
            public,
            twilio.api_base_url,
            ring_s=round(settings.voice.ring_s),
            timeout_s=twilio.timeout_s,
            owners=store.holders,
        )
        closing.push_async_callback(caller.close)
        carriers.append(caller)
    if modem is not None:
        carriers.append(modem)
    carriers = preferred(carriers, settings.voice.prefer)
    if not carriers:
        return ConsoleSender(stream)
    if len(carriers) == 1:
        return carriers[0]
    # Never hedged: a second carrier started while the first is slow would ring the phone twice.
    failover = FailoverSender(carriers, name="voice", hedge_after_s=0, metrics=metrics)
    closing.push_async_callback(failover.close)
    return failover


def preferred(carriers: list[Sender], prefer: Sequence[str]) -> list[Sender]:
    """The carriers in the order preferred; any not named go last, in the order given (never dropped: a
    carrier that works is worth more to an alarm than the order it was listed in)."""
    rank = {name: index for index, name in enumerate(prefer)}
    return sorted(carriers, key=lambda c: rank.get(c.name, len(rank)))


async def _serve_http(
    config: Config,
    engine: Engine,
    store: Store,
    metrics: Metrics,
    health: dict[str, Callable[[], Health]],
    closing: contextlib.AsyncExitStack,
    live: Live,
    clock: SteadyClock,
    role: Callable[[], Mapping[str, object]],
) -> None:
    """Webhooks, /healthz, /metrics and the console on TCP; operator actions on the Unix socket only."""
    http, twilio = config.settings.http, config.settings.twilio
    deps = WebDeps(
        call=engine.call,
        store=store,
        metrics=metrics,
        health_checks=health,
        auth_token=twilio.auth_token if twilio.enabled else None,
        public_url=http.public_url,
        role=role,
    )
    app = make_app(deps)
    if deps.auth_token is not None and http.public_url:
        from alertd.web.voice import add_voice_routes

        add_voice_routes(app)  # Twilio's alert calls: what they say, the key pressed, how they ended
    if config.settings.console.enabled:
        # Imported only when served: the templates, sessions and password hashing cost start-up time.
        from alertd.accounts import Accounts
        from alertd.web.api import add_api
        from alertd.web.console import ConsoleDeps, add_console
        from alertd.web.reports import add_reports

        settings = config.settings
        idle_s = settings.console.idle_timeout_min * 60
        secure = bool(http.public_url and http.public_url.startswith("https:"))
        accounts = Accounts(store, idle_timeout_s=idle_s)
        roster = lambda: engine.desk.roster  # noqa: E731 (read at each request: a reload replaces it)
        profiles = lambda: engine.commands.profiles  # noqa: E731
        add_console(app, ConsoleDeps(accounts, store, engine.call, roster, profiles, live, clock, settings.daemon.zone,
                                     secure))  # fmt: skip
        add_reports(app)
        add_api(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    closing.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, http.host, http.port).start()
    _LOGGER.info("HTTP listening on %s:%s", http.host, http.port)
    try:
        sock, access = open_operator_socket(http.socket, http.socket_group)
    except OSError as err:
        # Alarms matter more than the operator's command line: run on, loudly, without it.
        # Terminals and SMS replies still acknowledge; /healthz says what is missing.
        detail = f"operator socket {http.socket} not open: {err}"
        _LOGGER.error("%s; alertd ack/on-scene/resolve/cancel will not work", detail)
        health["operator"] = lambda: Health(False, detail)
        return
    operator = web.AppRunner(make_operator_app(deps, access), access_log=None)
    try:
        await operator.setup()
    except BaseException:
        sock.close()
        raise
    closing.push_async_callback(operator.cleanup)
    await web.SockSite(operator, sock).start()
    _LOGGER.info("Operator socket %s (mode 0660, group %s)", http.socket, access.group)
    health["operator"] = lambda: Health(True)
