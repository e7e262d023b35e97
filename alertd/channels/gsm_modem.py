"""SMS through a GSM modem (3GPP TS 27.005 PDU mode, UCS-2 for Chinese): the carrier named "modem".

The bearer that still works when the internet does not. Each part is one AT+CMGS on the modem's AT
session (alertd.modem.session), which runs one command at a time, each under a timeout, so one dead
recipient never jams the queue. What comes back from the modem (replies, delivery reports) enters
through its inbox, alertd.ingress.modem_inbox.
"""

from __future__ import annotations

from alertd.core.ports import Health, Outbound
from alertd.errors import PermanentError, TransientError
from alertd.modem.session import AtSession, NotReady
from alertd.protocols.at import parse_cmgs
from alertd.protocols.sms_pdu import PduError, encode_submit


class ModemSender:
    """A Sender (name "modem") on the modem's AT session."""

    name = "modem"

    def __init__(self, session: AtSession, *, smsc: str | None = None) -> None:
        self.session = session
        self.smsc = smsc
        self._reference = 0

    async def send(self, message: Outbound) -> str:
        while True:
            await self.session.until_ready()
            if not self.session.registered:
                raise TransientError("modem not registered on the network")
            try:
                return await self._submit(message)
            except NotReady:
                # The line was reopened while this send waited its turn: it goes after the new line's
                # initialisation, in the order the sends came (the outbox claims the leader's first).
                continue

    async def _submit(self, message: Outbound) -> str:
        self._reference = (self._reference + 1) % 256
        try:
            parts = encode_submit(message.address, message.body, reference=self._reference, smsc=self.smsc)
        except PduError as err:
            raise PermanentError(f"cannot encode SMS: {err}", code="pdu") from err
        reference: int | None = None
        for part in parts:
            infos = await self.session.command(f"AT+CMGS={part.tpdu_length}", pdu=part.hex)
            line = next((i.line for i in infos if i.line.startswith("+CMGS")), None)
            if line is None:
                raise TransientError("modem accepted the SMS without a message reference")
            reference = parse_cmgs(line)
        return f"modem:{reference}"

    async def find_sent(self, message: Outbound) -> str | None:
        return None  # a modem keeps no record we can ask

    def health(self) -> Health:
        return self.session.health()
