"""The running daemon: the parts (alertd.assembly) under one TaskGroup, signals, the drain on SIGTERM,
the clock and systemd's watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from alertd.assembly import Parts, assemble
from alertd.clock import CHECK_INTERVAL_S as CLOCK_CHECK_INTERVAL_S
from alertd.clock import SteadyClock
from alertd.config import Config, load_roster, roster_cache_path
from alertd.core.lease import Timing
from alertd.core.ports import Health
from alertd.errors import ConfigError, Deposed, StoreUnavailable
from alertd.failpoints import Failpoints
from alertd.metrics import Metrics
from alertd.profiles import load_profiles
from alertd.sdnotify import Notifier

if TYPE_CHECKING:
    from alertd.lease_keeper import LeaseKeeper

_LOGGER = logging.getLogger(__name__)

# SIGTERM: sends already handed to a carrier get this long to finish and be recorded.
DRAIN_TIMEOUT_S = 10.0
EXIT_DEPOSED = 1  # not 2 (EXIT_CONFIG): the shipped unit restarts it


class Daemon:
    def __init__(
        self,
        config: Config,
        environ: Mapping[str, str] | None = None,
        *,
        sms_stream: TextIO | None = None,
        exit_at_once: bool = False,
    ) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ
        self.sms_stream = sms_stream
        self.metrics = Metrics()
        self.failpoints = Failpoints.from_env(self.environ)
        self.notifier = Notifier.from_env(self.environ)
        self.clock = SteadyClock()  # every timer in the process runs on it: a wall-clock step moves none
        self.parts: Parts | None = None  # while running
        self.ready = asyncio.Event()
        self._settled = asyncio.Event()  # ready, or stopped before it
        self._stop = asyncio.Event()
        self.lease: LeaseKeeper | None = None  # on a shared PostgreSQL ([store] url)
        self.exit_code = 0  # EXIT_DEPOSED when deposed: systemd restarts it (as a standby)
        self.exit_at_once = exit_at_once  # deposed: os._exit (the service); tests in-process just return

    async def started(self) -> Parts:
        """The parts once every one is built and running; raises if the daemon stopped before that."""
        await self._settled.wait()
        if self.parts is None:
            raise RuntimeError("alertd stopped before it was ready")
        return self.parts

    def health_of(self, part: str) -> Health:
        """One part's health as /healthz reports it (mqtt, terminal, sms:<carrier>, modem, receiver:<name>)."""
        if self.parts is None:
            return Health(False, "not running")
        return self.parts.health[part]()

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: a new roster for what comes next; open incidents and the outbox are untouched. A standby
        keeps it for when it takes over (else it would take over with the roster it started with)."""
        if self.parts is None and self.lease is None:
            return  # still starting: the roster being read is the file's
        self.notifier.reloading()
        try:
            profiles = load_profiles(self.config.settings.daemon.profiles)
            roster = load_roster(self.config.roster_path, profiles, cache=roster_cache_path(self.config.settings))
        except ConfigError as err:
            for problem in err.problems:
                _LOGGER.error("Roster reload refused: %s", problem)
        else:
            self.config = dataclasses.replace(self.config, roster=roster, profiles=profiles)
            if self.parts is not None:
                self.parts.engine.replace_roster(roster, profiles)
            _LOGGER.info(
                "Roster reloaded%s: %d groups, %d households, %d devices",
                "" if self.parts is not None else " (standby: used when it takes over)",
                len(roster.groups), len(roster.households), len(roster.devices),
            )  # fmt: skip
        self.notifier.ready()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with contextlib.suppress(RuntimeError):  # not the main thread (tests): no signal handlers
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        try:
            url = self.config.settings.store.url
            if url is None:
                await self._run_active(None)
            else:
                await self._run_with_lease(url)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            for sig in handled:
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            self._settled.set()

    async def _run_with_lease(self, url: str) -> None:
        """On a shared PostgreSQL: a standby until the lease is free, then the active until stopped or
        deposed. Deposed, it stops at once and exits 1: systemd starts it again, as a standby."""
        # psycopg (0.2 s of imports) only for a PostgreSQL store
        from alertd.lease_keeper import LeaseKeeper  # noqa: PLC0415
        from alertd.standby import standby_side  # noqa: PLC0415

        settings = self.config.settings
        keeper = LeaseKeeper(url, settings.standby.instance, Timing(settings.standby.takeover_s), on_lost=self._deposed)
        self.lease = keeper
        try:
            async with standby_side(self.config, keeper, self.metrics):
                self.metrics.active.set(0)
                self.notifier.ready()
                self.notifier.status(f"standby (instance {keeper.me})")
                if not await self._unless_stopped(keeper.wait_active()):
                    return
            self.notifier.status(f"active (instance {keeper.me})")
            deposed = False
            try:
                await self._active_holding(keeper)
            except* (Deposed, StoreUnavailable) as group:
                # Lost the lease, or the database that holds it: another instance may be active by now.
                deposed = True
                self._deposed(group.exceptions[0])
            if not deposed:
                await keeper.release()  # a clean stop: the standby takes over now, not when the lease runs out
        finally:
            await keeper.close()

    async def _active_holding(self, keeper: LeaseKeeper) -> None:
        """The active, with the lease renewed from now on: through the start (opening the store, loading the
        open incidents) and the drain at a stop. Losing it stops everything. Not a TaskGroup: an error at
        start (a store from a newer alertd) must reach `alertd run` as itself, not inside a group."""
        holding = asyncio.create_task(keeper.hold(), name="lease")
        active = asyncio.create_task(self._run_active(keeper), name="active")
        try:
            await asyncio.wait((holding, active), return_when=asyncio.FIRST_COMPLETED)
        finally:
            active.cancel()  # whichever ended first, the other goes: nothing runs without the lease
            holding.cancel()
            ended = await asyncio.gather(active, holding, return_exceptions=True)
        for outcome in ended:
            if isinstance(outcome, Exception):
                raise outcome

    def _deposed(self, why: BaseException) -> None:
        """Stop acting at once: exit now, with nothing more sent or written (a commit hung on a database that
        no longer answers would hold an orderly stop up). What was committed is safe in the database, what
        was not is still unacknowledged at the broker; systemd starts this instance again, as a standby."""
        self.exit_code = EXIT_DEPOSED
        _LOGGER.critical("Stopped acting at once: %s. Exiting; systemd starts this instance again, as a standby", why)
        if self.exit_at_once:
            logging.shutdown()
            os._exit(EXIT_DEPOSED)

    async def _unless_stopped(self, waiting: Coroutine[Any, Any, None]) -> bool:
        """Wait for `waiting`; False (and it cancelled) if the daemon is stopped first."""
        task = asyncio.create_task(waiting)
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stop):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
        return not self._stop.is_set()  # (had `waiting` failed, awaiting it above raised its error)

    async def _run_active(self, lease: LeaseKeeper | None) -> None:
        async with assemble(
            self.config, self.metrics, clock=self.clock, failpoints=self.failpoints, sms_stream=self.sms_stream,
            lease=lease,
        ) as parts:  # fmt: skip
            self.parts = parts
            try:
                await self._supervise(parts)
            finally:
                self.parts = None

    async def _supervise(self, parts: Parts) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run(), name=name) for name, run in parts.loops()]
            tasks.append(tg.create_task(self._watch_clock(parts), name="clock"))
            self.metrics.active.set(1)
            self.notifier.ready()
            self.ready.set()
            self._settled.set()
            _LOGGER.info("alertd ready")
            await self._stop.wait()
            _LOGGER.info("Stopping: no new alarms; draining sends in flight (up to %.0f s)", DRAIN_TIMEOUT_S)
            self.notifier.stopping()
            # The link and the modem stay up while draining: sends in flight still need their answers.
            # Alarms not yet committed stay unacknowledged at the broker and come back on restart.
            async with asyncio.timeout(DRAIN_TIMEOUT_S + 1):
                await asyncio.gather(*(w.drain(DRAIN_TIMEOUT_S) for w in parts.workers))
            for task in tasks:
                task.cancel()

    async def _watch_clock(self, parts: Parts) -> None:
        disk = "ok"
        while True:
            self.clock.check()
            self.metrics.clock_offset.set(self.clock.offset)
            if (now := parts.health["disk"]().detail) != disk:
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
