"""Alert calls through Twilio Programmable Voice, on the official client in its asyncio mode.

The call itself is driven by Twilio fetching TwiML from our signed webhooks (alertd.web.voice): this
carrier only places the call, with the notification id in every URL Twilio will call, and asks for
answering-machine detection so that a voicemail never counts as an acknowledgement.

It is TwilioSender with another send and find_sent: the same client, the same error translation
(retry later vs permanent, numbers masked) and the same health bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException

from alertd.channels.twilio_sms import (
    CLOCK_SKEW_S,
    FIND_SENT_SCAN_LIMIT,
    SEND_TIMEOUT_S,
    UNHEALTHY_AFTER_FAILURES,
    TwilioSender,
    _translate,
)
from alertd.core.ports import Outbound
from alertd.errors import PermanentError
from alertd.phones import mask

__all__ = ["RING_S", "STATUS_EVENTS", "Owners", "TwilioCaller"]

_LOGGER = logging.getLogger(__name__)

RING_S = 30  # how long the phone rings before Twilio gives up (no-answer); Twilio may add ~5 s
# Only the events that are outcomes: "answered" (in-progress) and "completed" (which carries every final
# status: completed, busy, no-answer, failed, canceled). initiated and ringing would be webhooks the
# web side answers with 204 and nothing else.
STATUS_EVENTS = ("answered", "completed")
_REMEMBERED = 4096  # CallSids this process placed or reconciled, kept to tell its calls apart

# Which outbox rows already hold these CallSids as their provider id (the store's view, across restarts).
Owners = Callable[[Sequence[str]], Awaitable[Mapping[str, int]]]


class TwilioCaller(TwilioSender):
    """Sender that places alert calls. Call `await close()` when done.

    `public_url` is where Twilio reaches our webhooks (alertd.web.voice), as Twilio sees it.
    `owners`, when given, says which notifications already hold a CallSid (see find_sent).
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        public_url: str,
        api_base_url: str | None = None,
        *,
        ring_s: int = RING_S,
        timeout_s: float = SEND_TIMEOUT_S,
        unhealthy_after: int = UNHEALTHY_AFTER_FAILURES,
        owners: Owners | None = None,
    ) -> None:
        # No SMS status callback: a call's callbacks carry the notification id in their own URLs.
        super().__init__(
            account_sid, auth_token, from_number, api_base_url, timeout_s=timeout_s, unhealthy_after=unhealthy_after
        )
        self._public_url = public_url.rstrip("/")
        self._ring_s = ring_s
        self._owners = owners
        self._placed: OrderedDict[str, int] = OrderedDict()  # CallSid -> notification id

    def __repr__(self) -> str:
        # Never the token.
        return f"<TwilioCaller {self._account_sid} from {mask(self._from_number)}>"

    def _urls(self, message: Outbound) -> tuple[str, str]:
        # The id rides in the query of URLs Twilio signs: a callback cannot be pointed at another row.
        return (
            f"{self._public_url}/twilio/voice?n={message.id}",
            f"{self._public_url}/twilio/voice/status?n={message.id}",
        )

    async def send(self, message: Outbound) -> str:
        client = self._twilio()
        twiml_url, status_url = self._urls(message)
        try:
            async with asyncio.timeout(self._timeout_s):
                call = await client.calls.create_async(
                    to=message.address,
                    from_=self._from_number,
                    url=twiml_url,
                    method="POST",
                    status_callback=status_url,
                    status_callback_method="POST",
                    status_callback_event=list(STATUS_EVENTS),
                    machine_detection="Enable",
                    timeout=self._ring_s,
                )
        except (TimeoutError, aiohttp.ClientError, OSError, TwilioException, ValueError) as err:
            error = _translate(err, message.address, self._timeout_s)
            self._record_failure(error, err)
            if isinstance(error, PermanentError):
                _LOGGER.warning("Twilio refused call %d to %s: %s", message.id, mask(message.address), error)
            raise error from err
        self._record_success()
        sid = str(call.sid)
        self._remember(sid, message.id)
        if _LOGGER.isEnabledFor(logging.DEBUG):
            _LOGGER.debug("Twilio placed call %d to %s as %s", message.id, mask(message.address), sid)
        return sid

    async def find_sent(self, message: Outbound) -> str | None:
        """The CallSid of this notification's call if Twilio has it, else None (then it is called again).

        Twilio's Call resource does not echo the Url we gave it (nor anything else we set), so the
        `n=<id>` in it cannot be read back; the Call Events resource that would show it is readable only
        15 minutes after the call ends. The rule instead:

        - the candidates are the calls to this number from our number that Twilio created since
          created_at - CLOCK_SKEW_S (date_created, not start_time: a call still in Twilio's queue has no
          start time yet and would be missed), minus those known to belong to another notification: placed
          or reconciled by this process, or held by another row per `owners`;
        - one known to be this notification's → it;
        - else exactly one unclaimed candidate → it: a call to this person since the row existed that no
          other row claims is taken to be this row's, so a crash mid-call does not ring the person twice;
        - none → None: it was never placed;
        - two or more → None: we cannot tell which is ours, so the outcome is unknown and the alert is
          called again (a duplicate, never a loss).

        What is left: after a restart, the calls the previous process placed are told apart only through
        `owners` (the store); without it, a call recorded for another row to the same number within the
        window is unclaimed and may be taken for this one. Even with it, two rows to one number that were
        both unrecorded at a crash, only one of them placed, cannot be told apart: the first to reconcile
        takes the call.
        """
        client = self._twilio()
        since = message.created_at - CLOCK_SKEW_S
        try:
            async with asyncio.timeout(self._timeout_s):
                # Twilio lists newest first; the date filter is ours (see above).
                records = await client.calls.list_async(
                    to=message.address, from_=self._from_number, limit=FIND_SENT_SCAN_LIMIT
                )
                candidates = [str(r.sid) for r in records if _created_since(r, since)]
                owners = dict(await self._owners(candidates)) if self._owners is not None and candidates else {}
        except (TimeoutError, aiohttp.ClientError, OSError, TwilioException, ValueError) as err:
            raise _translate(err, message.address, self._timeout_s) from err
        owners.update((sid, self._placed[sid]) for sid in candidates if sid in self._placed)
        mine = [sid for sid in candidates if owners.get(sid) == message.id]
        free = [sid for sid in candidates if sid not in owners]
        found = mine[0] if mine else free[0] if len(free) == 1 else None
        if found is not None:
            self._remember(found, message.id)
            _LOGGER.info("Call %d to %s was already placed by Twilio as %s", message.id, mask(message.address), found)
        elif len(free) > 1:
            _LOGGER.warning(
                "Call %d to %s: %d calls to that number since it was planned and none known to be its own; "
                "calling again",
                message.id, mask(message.address), len(free),
            )  # fmt: skip
        return found

    def _remember(self, sid: str, notification_id: int) -> None:
        self._placed[sid] = notification_id
        self._placed.move_to_end(sid)
        while len(self._placed) > _REMEMBERED:
            self._placed.popitem(last=False)


def _created_since(record: Any, since: float) -> bool:
    created = record.date_created
    # No date: cannot be ruled out, so it stays a candidate (at worst the call is made again).
    return created is None or created.timestamp() >= since
