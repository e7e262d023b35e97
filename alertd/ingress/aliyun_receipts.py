"""Aliyun SMS delivery receipts, asked for rather than pushed: Aliyun's HTTP push of receipts carries no
signature, so anyone could post one; alertd asks Aliyun itself (QuerySendDetails, signed by the SDK) about
the texts it sent that have no handset report yet, and hands each answer to the engine as a
DeliveryReport, like Twilio's status callbacks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from alertd.core.events import DeliveryReport
from alertd.core.ports import Submit
from alertd.errors import PermanentError, TransientError
from alertd.store import Store

_LOGGER = logging.getLogger(__name__)

INTERVAL_S = 60.0
# Texts older than this are given up on: Aliyun's reports come within minutes; a day covers a phone that
# was off overnight.
WINDOW_S = 24 * 3600.0
PER_ROUND = 50  # QuerySendDetails is rate limited per account: a burst's texts are asked about over rounds


class ReceiptSource(Protocol):
    """alertd.channels.aliyun_sms.AliyunSender, as seen from here."""

    async def delivery(self, phone: str, biz_id: str, sent_at: float) -> tuple[str, str | None] | None: ...


class AliyunReceipts:
    def __init__(
        self,
        store: Store,
        source: ReceiptSource,
        submit: Submit,
        *,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.source = source
        self.submit = submit
        self.interval_s = interval_s
        self.clock = clock
        self._asked: dict[str, str] = {}  # provider id -> the status reported for it (each once)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.poll()

    async def poll(self) -> int:
        """One round: ask about the texts still without a report; returns how many reports were handed on."""
        now = self.clock()
        rows = await self.store.awaiting_delivery("aliyun", now - WINDOW_S, PER_ROUND)
        reported = 0
        for row in rows:
            if row.provider_id is None:
                continue
            try:
                answer = await self.source.delivery(row.address, row.provider_id, row.updated_at)
            except (TransientError, PermanentError) as err:
                _LOGGER.debug("Aliyun receipt for %s not available now: %s", row.provider_id, err)
                if isinstance(err, TransientError):
                    break  # Aliyun is not answering: the next round asks again
                continue
            if answer is None or self._asked.get(row.provider_id) == answer[0]:
                continue  # still waiting at Aliyun, or reported already and not yet committed
            status, code = answer
            self._asked[row.provider_id] = status
            self.submit(DeliveryReport(row.provider_id, status, code, token=f"aliyun:{row.provider_id}:{status}"), None)
            reported += 1
        if len(self._asked) > 4 * PER_ROUND:  # what was handed on is committed long before this
            self._asked.clear()
        return reported
