"""Missed-call acknowledgements (打个未接来电就算收到): a phone rings the village's GSM modem, which
rejects the call at once, unanswered, so it costs the caller nothing, and tells the engine who rang.

A listener on the modem's AT session (alertd.modem.session), like the inbox. With caller id on (AT+CLIP=1,
in the session's voice set-up) an incoming call is ``RING`` followed by ``+CLIP: "<number>",<type>,...``,
repeated every few seconds for as long as it rings. The first RING (or +CLIP) of a call is answered with
ATH (after its +CLIP, which modems send right behind the RING: at most `clip_wait_s` later); the first
readable +CLIP becomes one :class:`alertd.core.events.MissedCall`. Whether the number is
registered, and what it acknowledges, is the engine's to decide. No caller id (withheld, unavailable,
unreadable): the call is rejected all the same, logged, and not acted on.

One call from the next. The modem numbers nothing that outlives a call (+CLCC's index is 1 for every call
alone on the line), so a call is a burst of RINGs: a RING that comes while the previous call's burst is
still on belongs to it; one after the burst ended starts a new call with a new id. A burst ends
`settle_s` after our ATH went through (RINGs the modem sent before it took the ATH may still be on the
way; no new call can be set up that fast), at once on an unsolicited NO CARRIER (the caller gave up first:
nothing of that call can follow it), and otherwise after `ring_gap_s` without a RING (longer than the
network's ring period; a call we could not reject just stops ringing). The id is taken from the first
RING's time in milliseconds plus a count, so a daemon restarted does not give out an id again: the engine
acts on each id once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from alertd.core.events import MissedCall
from alertd.core.ports import Submit
from alertd.errors import PermanentError, TransientError
from alertd.modem.session import AtSession
from alertd.phones import mask, normalize
from alertd.protocols.at import AtError, Urc, parse_clip

__all__ = ["CLIP_WAIT_S", "RING_GAP_S", "SETTLE_S", "ModemCalls"]

_LOGGER = logging.getLogger(__name__)

RING_GAP_S = 8.0  # networks repeat RING every 3 to 6 s while a call rings
SETTLE_S = 2.0  # after our ATH: RINGs of the rejected call still arriving
CLIP_WAIT_S = 1.0  # a RING without its +CLIP yet: how long the rejection waits for it


@dataclass(eq=False, slots=True)
class _Call:
    """One incoming call: a burst of RINGs."""

    id: str
    received_at: float  # clock() at its first RING
    quiet_until: float  # loop time: a RING after this starts a new call
    identified: bool = False  # a +CLIP was read (and acted on, or not)
    number: str | None = None  # as its first +CLIP gave it
    rejecting: bool = False  # an ATH is queued or running
    over: bool = False  # rejected by us, or given up by the caller
    caller_id: asyncio.Event = field(default_factory=asyncio.Event)  # set with `identified`


class ModemCalls:
    """Incoming calls on the modem: rejected unanswered, the caller's number to the engine. Attach it to
    the session it listens on."""

    def __init__(
        self,
        session: AtSession,
        submit: Submit,
        *,
        clock: Callable[[], float] = time.time,
        ring_gap_s: float = RING_GAP_S,
        settle_s: float = SETTLE_S,
        clip_wait_s: float = CLIP_WAIT_S,
    ) -> None:
        self.session = session
        self.submit = submit
        self.clock = clock
        self.ring_gap_s = ring_gap_s
        self.settle_s = settle_s
        self.clip_wait_s = clip_wait_s
        self._ids = itertools.count()
        self._call: _Call | None = None
        self._tasks: asyncio.TaskGroup | None = None  # the open line's rejections
        session.enable_voice()

    async def attend(self, urcs: asyncio.Queue[Urc]) -> None:
        """While a line is open: its rejections are this group's tasks, cancelled with the line."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    self._on_urc(await urcs.get())
        finally:
            self._tasks = None

    async def sweep(self) -> None:
        """Nothing to look for: a call is only ever announced, never stored."""

    def _on_urc(self, urc: Urc) -> None:
        match urc.name:
            case "RING" | "+CRING":
                self._ringing()
            case "+CLIP":
                number = urc.args[0].strip('"') if urc.args else ""
                if (current := self._call) is not None and current.identified and current.number != number:
                    # Another caller: a new call, however soon after the last one (within its settle time,
                    # a RING alone would have been taken for the rejected call's last).
                    current.quiet_until = -math.inf
                call = self._ringing()
                if not call.identified:
                    call.identified = True
                    call.number = number
                    call.caller_id.set()
                    self._identify(call, urc.args)
            case "NO CARRIER":
                # The caller hung up before our ATH (or the line dropped the call): nothing of this
                # call can come after it. (The NO CARRIER of an outgoing ring finds no call here.)
                if (current := self._call) is not None and not current.over:
                    current.over = True
                    current.quiet_until = asyncio.get_running_loop().time()

    def _ringing(self) -> _Call:
        """The call this RING or +CLIP belongs to, its rejection asked for once."""
        now = asyncio.get_running_loop().time()
        call = self._call
        if call is None or now > call.quiet_until:
            received_at = self.clock()
            call_id = f"modem-ring:{int(received_at * 1000)}-{next(self._ids)}"
            call = _Call(call_id, received_at, now)
            self._call = call
        call.quiet_until = max(call.quiet_until, now + (self.settle_s if call.over else self.ring_gap_s))
        if not call.over and not call.rejecting:
            call.rejecting = True
            self._spawn(self._reject(call), f"reject call {call.id}")
        return call

    async def _reject(self, call: _Call) -> None:
        if not call.identified:
            # The +CLIP comes right behind its RING (the same burst, from the same network message):
            # an ATH written on the RING alone must not cut off the number it is all about.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.clip_wait_s):
                    await call.caller_id.wait()
        try:
            await self.session.command("ATH")
        except (TransientError, PermanentError) as err:
            call.rejecting = False  # the call's next RING asks again
            _LOGGER.warning("Cannot reject an incoming call on the modem: %s (tried again at its next RING)", err)
            return
        # From now on only RINGs already on their way can come: settle_s, not the whole gap, ends it.
        call.over = True
        call.quiet_until = asyncio.get_running_loop().time() + self.settle_s

    def _identify(self, call: _Call, args: Sequence[str]) -> None:
        try:
            caller = parse_clip(args)
        except AtError as err:
            _LOGGER.warning("Incoming call %s with an unreadable caller id (%s): not acted on", call.id, err)
            return
        if caller.withheld:
            _LOGGER.info("Incoming call %s without a caller id (withheld or unavailable): not acted on", call.id)
            return
        try:
            phone = normalize(caller.international)
        except ValueError:
            _LOGGER.warning("Incoming call %s from %s, not a phone number: not acted on", call.id, mask(caller.number))
            return
        _LOGGER.info("Missed call %s from %s", call.id, mask(phone))
        self.submit(MissedCall(phone, received_at=call.received_at, call_id=call.id), None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        if self._tasks is not None:
            with contextlib.suppress(RuntimeError):  # the group is shutting down with its line
                self._tasks.create_task(coroutine, name=f"modem: {what}")
                return
        coroutine.close()
        _LOGGER.warning("Cannot %s: the modem line is down", what)
