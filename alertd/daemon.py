"""The running daemon: the parts (alertd.assembly) under one TaskGroup, signals, the drain on SIGTERM,
the clock and systemd's watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from typing import TextIO

from alertd.assembly import Parts, assemble
from alertd.clock import CHECK_INTERVAL_S as CLOCK_CHECK_INTERVAL_S
from alertd.clock import SteadyClock
from alertd.config import Config, load_roster, roster_cache_path
from alertd.core.ports import Health
from alertd.errors import ConfigError
from alertd.failpoints import Failpoints
from alertd.metrics import Metrics
from alertd.profiles import load_profiles
from alertd.sdnotify import Notifier

_LOGGER = logging.getLogger(__name__)

# SIGTERM: sends already handed to a carrier get this long to finish and be recorded.
DRAIN_TIMEOUT_S = 10.0


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
        self.parts: Parts | None = None  # while running
        self.ready = asyncio.Event()
        self._settled = asyncio.Event()  # ready, or stopped before it
        self._stop = asyncio.Event()

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
        """SIGHUP: a new roster for what comes next; open incidents and the outbox are untouched."""
        if self.parts is None:
            return
        self.notifier.reloading()
        try:
            profiles = load_profiles(self.config.settings.daemon.profiles)
            roster = load_roster(self.config.roster_path, profiles, cache=roster_cache_path(self.config.settings))
        except ConfigError as err:
            for problem in err.problems:
                _LOGGER.error("Roster reload refused: %s", problem)
        else:
            self.parts.engine.replace_roster(roster, profiles)
            _LOGGER.info(
                "Roster reloaded: %d groups, %d households, %d devices",
                len(roster.groups), len(roster.households), len(roster.devices),
            )  # fmt: skip
        self.notifier.ready()

    async def run(self) -> None:
        try:
            async with assemble(
                self.config, self.metrics, clock=self.clock, failpoints=self.failpoints, sms_stream=self.sms_stream
            ) as parts:
                self.parts = parts
                try:
                    await self._supervise(parts)
                finally:
                    self.parts = None
        finally:
            self._settled.set()

    async def _supervise(self, parts: Parts) -> None:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        with contextlib.suppress(RuntimeError):  # not the main thread (tests): no signal handlers
            loop.add_signal_handler(signal.SIGTERM, self.stop)
            loop.add_signal_handler(signal.SIGINT, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(run(), name=name) for name, run in parts.loops()]
                tasks.append(tg.create_task(self._watchdog(), name="watchdog"))
                tasks.append(tg.create_task(self._watch_clock(parts), name="clock"))
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
        finally:
            for sig in handled:
                with contextlib.suppress(RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)

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
