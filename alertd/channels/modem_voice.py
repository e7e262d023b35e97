"""The bedside ring (响铃提醒): a voice call from the village's GSM modem (3GPP TS 27.007), for when the
internet is down. The carrier named "modem" for calls; the text that goes with it says what happened.

A ring is a wake-up, not a message: the modem plays nothing, so an answered call is hung up at once. The
person who picks up has been reached (the text carries the words); leaving them to listen to silence would
only confuse them and bill the village's SIM for the minutes. A ring nobody answers is hung up after
`ring_s`. One call is one `send`: it holds the modem from the dial to the hang-up (AtSession.exclusive),
so SMS on the same modem wait up to `ring_s` behind it; the AT session runs one command at a time anyway.

How the outcome is read. With AT+COLP=1 most modems hold the dial's OK back until the far end answers, so
the dial's final result would be the outcome; but the whole ring is then one pending command the modem
can only leave by being aborted (a character from us ends it, differently on each firmware), and how a
modem treats +COLP varies: SIMCom's 2G modules follow it, LTE modules (SIM7600, Quectel EC2x/EG9x, the
VoLTE calls that replace 2G in China) answer OK as soon as they have dialled whatever it says, and the
+COLP line itself needs the network's connected-line presentation. The call list is alike everywhere:
the session sets AT+COLP=0 (ATD answers OK at once), and the ring is followed on AT+CLCC every `poll_s`:
dialling (2), alerting (3: the phone rings), active (0: answered). The end of a call nobody answered is
the unsolicited result the modem gives then (BUSY, NO ANSWER, NO CARRIER), or its leaving the list. A
modem that holds OK back anyway (a saved AT+COLP=1, a V.250-literal firmware) is handled too: its dial's
final result is the outcome (OK: answered, with or without +COLP), and a dial still pending at `ring_s` is
aborted. Polling also finds a modem that stopped answering within one command timeout, mid-ring.

What the engine hears (CallReport, through `report`, once per call, just before send returns): ANSWERED;
BUSY; NO_ANSWER (rang `ring_s` unanswered, the network's no-answer, or NO CARRIER after the phone rang:
declined or given up); FAILED (NO CARRIER before it ever rang: switched off, out of coverage, no such
number). Never COMPLETED: no key can follow a ring, and the core would call again after one. No report is
made when send raises: TransientError (modem down, not registered, no dial tone, a dial refused for a
reason of the modem's, the modem silent or the line lost mid-ring; the outbox tries again, a duplicate ring
at worst) or PermanentError (a number that cannot be dialled).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable

from alertd.core.events import CallReport, CallStatus
from alertd.core.ports import Health, Outbound
from alertd.errors import PermanentError, TransientError
from alertd.modem.session import AtSession, Hold, NotReady
from alertd.phones import mask
from alertd.protocols.at import (
    CALL_ACTIVE,
    CALL_ALERTING,
    CALL_DIALING,
    CALL_RESULTS,
    AtError,
    CallEntry,
    Info,
    Urc,
    cme_code,
    parse_clcc,
)

# ruff: noqa: PLC0415

__all__ = ["POLL_S", "RING_S", "ModemCaller", "dial_string"]

_LOGGER = logging.getLogger(__name__)

RING_S = 30.0  # about six rings: longer than it takes to wake and reach the phone, shorter than voicemail
POLL_S = 0.5  # AT+CLCC while it rings: how long an answered call may stay up in silence before the hang-up
HANG_UP_LIMIT_S = 2.0  # the hang-up after a failure: a dead modem should not hold the failure back long
# +CME ERROR codes that refuse the number itself (TS 27.007 9.2.1): dial string too long, invalid
# characters in it. Any other refusal (ERROR, 3 operation not allowed while another call is up, 30 no
# network service, a SIM error) is the modem's state, not the number's: tried again later.
CME_BAD_DIAL_STRING = frozenset({26, 27})
_DIALABLE = re.compile(r"\+?[0-9]{3,20}")


def dial_string(address: str) -> str:
    """What the modem dials for an E.164 number. A mainland number takes the form a Chinese SIM dials it in
    at home: a mobile its 11 digits (13800138000), a fixed line its trunk 0 and area code (04152123456 in
    Dandong). Every Chinese operator routes that form, on 2G and over VoLTE, whereas "+86..." relies on the
    modem and network mapping the international prefix back home (most do; some IMS set-ups do not, and
    nothing is gained by trying). Other countries keep their plus (TON international). Only digits and a
    leading plus ever reach ATD: a roster entry cannot carry AT syntax (";", CR) or GSM dial modifiers.
    PermanentError for anything that is not a number the modem can call."""
    import phonenumbers

    try:
        number = phonenumbers.parse(address, None)  # E.164 only: no region to guess with
    except phonenumbers.NumberParseException as err:
        raise PermanentError(f"not a phone number: {mask(address)}", code="number") from err
    dial = ""
    if phonenumbers.is_valid_number(number):
        dial = phonenumbers.format_number_for_mobile_dialing(number, "CN", with_formatting=False)
    if not _DIALABLE.fullmatch(dial):
        raise PermanentError(f"a mainland SIM cannot call {mask(address)}", code="number")
    return dial


class ModemCaller:
    """A Sender (name "modem") that rings a phone from the modem's AT session and reports how it went."""

    name = "modem"

    def __init__(
        self,
        session: AtSession,
        report: Callable[[CallReport], None],
        *,
        ring_s: float = RING_S,
        poll_s: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.report = report
        self.ring_s = ring_s
        self.poll_s = poll_s
        # Call ids go up from the start time in milliseconds: a restarted daemon does not hand out an id
        # again (the engine handles a report once per id and status), and within a run they only go up.
        self._ids = itertools.count(int(clock() * 1000))
        session.enable_voice()

    async def send(self, message: Outbound) -> str:
        """Ring `message.address`, hang up, report the outcome; the call's id (``modem-call:<n>``)."""
        dial = dial_string(message.address)
        while True:
            await self.session.until_ready()
            if not self.session.registered:
                raise TransientError("modem not registered on the network")
            try:
                async with self.session.exclusive() as line:
                    call_id = f"modem-call:{next(self._ids)}"
                    status = await self._place(line, dial)
            except NotReady:
                # The line was reopened while this call waited its turn: it goes after the new line's
                # initialisation. Only before the dial: a hold that loses its line fails (TransientError).
                continue
            _LOGGER.info("Rang %s for notification %d: %s (%s)", mask(message.address), message.id, status, call_id)
            self.report(CallReport(message.id, status, provider_id=call_id))
            return call_id

    async def find_sent(self, message: Outbound) -> str | None:
        return None  # a modem keeps no record we can ask

    def health(self) -> Health:
        return self.session.health()

    # --- one call, the modem held ---------------------------------------------------------------------

    async def _place(self, line: Hold, dial: str) -> CallStatus:
        deadline = asyncio.get_running_loop().time() + self.ring_s
        try:
            status = await self._ring(line, dial, deadline)
        except asyncio.CancelledError:
            # Shutting down mid-ring: hang up without waiting for the answer. (A reopened line's
            # initialisation hangs up too, should this not reach the modem.)
            line.abandon("ATH")
            raise
        except TransientError:
            # The modem failed midway (silent, the line lost): the call may still be up, ringing someone
            # for nothing. A short ATH; from a silent modem it also counts towards reopening the line.
            with contextlib.suppress(TransientError):
                await line.command("ATH", limit_s=HANG_UP_LIMIT_S)
            raise
        try:
            await line.command("ATH")
        except TransientError as err:
            # The outcome stands and is reported: failing now would ring the person again. The modem's
            # trouble is for the session's poll to find; a reopened line hangs up at its initialisation.
            _LOGGER.warning("The modem did not hang up after a ring (%s): %s", status, err)
        return status

    async def _ring(self, line: Hold, dial: str, deadline: float) -> CallStatus:
        dialled = await line.dial(f"ATD{dial};", limit_s=self.ring_s)
        final = dialled.final
        if final is None:
            return CallStatus.NO_ANSWER  # a dial held pending rang out ring_s and was aborted
        if not final.ok:
            return _ended(final.error or "ERROR", alerted=False)
        if any(info.line.startswith("+COLP") for info in dialled.infos):
            return CallStatus.ANSWERED  # +COLP is only given once the far end has answered
        return await self._follow(line, deadline)

    async def _follow(self, line: Hold, deadline: float) -> CallStatus:
        """After the dial's OK: the call list until the call is answered, ends, or rang `ring_s`."""
        loop = asyncio.get_running_loop()
        alerted = False
        while True:
            calls = _outgoing(await line.command("AT+CLCC"))
            if any(call.state == CALL_ACTIVE for call in calls):
                return CallStatus.ANSWERED
            alerted = alerted or any(call.state == CALL_ALERTING for call in calls)
            if not calls:
                # Gone without our hang-up: its result code says how, and comes with it (just before the
                # list, mostly). A modem that says nothing: rung and gone is unanswered, never rung failed.
                result = await _call_result(line.urcs, self.poll_s)
                if result is None:
                    return CallStatus.NO_ANSWER if alerted else CallStatus.FAILED
                return _ended(result, alerted=alerted)
            left = deadline - loop.time()
            if left <= 0:
                return CallStatus.NO_ANSWER
            result = await _call_result(line.urcs, min(self.poll_s, left))
            if result == "+COLP":
                return CallStatus.ANSWERED  # a modem that announces the answer unprompted
            if result is not None:
                return _ended(result, alerted=alerted)


def _outgoing(infos: list[Info]) -> list[CallEntry]:
    """Our call in the call list: outgoing and still dialling, ringing or answered. SIMCom modules also list
    a call being released (stat 6): that one is over."""
    calls = []
    for info in infos:
        if not info.line.startswith("+CLCC"):
            continue
        try:
            call = parse_clcc(info.line)
        except AtError as err:
            _LOGGER.warning("Unreadable line in the modem's call list: %s", err)
            continue
        if call.outgoing and call.state in (CALL_ACTIVE, CALL_DIALING, CALL_ALERTING):
            calls.append(call)
    return calls


async def _call_result(urcs: asyncio.Queue[Urc], within: float) -> str | None:
    """The next call result code the modem says on its own (or +COLP), waiting at most `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                urc = await urcs.get()
                if urc.name in CALL_RESULTS or urc.name == "+COLP":
                    return urc.name
    except TimeoutError:
        return None


def _ended(result: str, *, alerted: bool) -> CallStatus:
    """A call that ended unanswered, by its result code (the dial's final result, or unsolicited)."""
    match result:
        case "BUSY":
            return CallStatus.BUSY  # engaged, or declined where the network reports a refusal as busy
        case "NO ANSWER":
            return CallStatus.NO_ANSWER  # the network's own no-answer timer
        case "NO CARRIER":
            # Released: after ringing, declined or given up by the network; before, the phone could not
            # be reached (switched off, out of coverage, no such number: an announcement, then this).
            return CallStatus.NO_ANSWER if alerted else CallStatus.FAILED
        case "NO DIALTONE":
            raise TransientError("no dial tone: the modem cannot place calls now (no network service)")
    code = cme_code(result)
    if code in CME_BAD_DIAL_STRING:
        raise PermanentError(f"the modem refuses the number: {result}", code=f"CME {code}")
    raise TransientError(f"the modem refused the dial: {result}")
