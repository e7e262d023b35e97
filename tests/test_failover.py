"""Failover between SMS carriers, with fake carriers implementing the Sender interface and a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from alertd.channels.base import Health, Outbound, Receipt
from alertd.channels.failover import PROBE_INTERVAL_S, FailoverSender
from alertd.errors import PermanentError, TransientError

MESSAGE = Outbound(1, "+8613800010001", "【联防】测试", 0.0)


@dataclass
class Carrier:
    name: str
    fail: type[Exception] | None = None
    healthy: bool = True
    sent: list[int] = field(default_factory=list)

    async def send(self, message: Outbound) -> str | None:
        if self.fail is not None:
            raise self.fail(f"{self.name} says no")
        self.sent.append(message.id)
        return f"{self.name}-{len(self.sent)}"

    async def find_sent(self, message: Outbound) -> str | None:
        return f"{self.name}-found" if message.id in self.sent else None

    def health(self) -> Health:
        return Health(self.healthy, "ok" if self.healthy else "down")


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_preferred_carrier_first_and_the_receipt_names_it() -> None:
    twilio, modem = Carrier("twilio"), Carrier("modem")
    receipt = await FailoverSender([twilio, modem]).send(MESSAGE)
    assert receipt == Receipt("twilio", "twilio-1")
    assert modem.sent == []


@pytest.mark.parametrize("error", [TransientError, PermanentError])
async def test_a_failing_carrier_hands_the_message_to_the_other(error: type[Exception]) -> None:
    twilio, modem = Carrier("twilio", fail=error), Carrier("modem")
    assert await FailoverSender([twilio, modem]).send(MESSAGE) == Receipt("modem", "modem-1")


async def test_both_failing_transiently_is_transient_so_the_outbox_keeps_it() -> None:
    sender = FailoverSender([Carrier("twilio", fail=TransientError), Carrier("modem", fail=PermanentError)])
    with pytest.raises(TransientError, match="twilio: twilio says no; modem: modem says no"):
        await sender.send(MESSAGE)


async def test_both_refusing_for_good_is_permanent() -> None:
    sender = FailoverSender([Carrier("twilio", fail=PermanentError), Carrier("modem", fail=PermanentError)])
    with pytest.raises(PermanentError):
        await sender.send(MESSAGE)


async def test_an_unhealthy_carrier_goes_last_but_is_probed_now_and_then() -> None:
    clock = Clock()
    twilio, modem = Carrier("twilio", healthy=False), Carrier("modem")
    sender = FailoverSender([twilio, modem], clock=clock)
    assert (await sender.send(MESSAGE)).carrier == "twilio", "the first message probes the sick carrier"
    assert (await sender.send(MESSAGE)).carrier == "modem"
    clock.now += PROBE_INTERVAL_S
    assert (await sender.send(MESSAGE)).carrier == "twilio"


async def test_health_is_ok_while_any_carrier_is_and_says_which_is_not() -> None:
    twilio, modem = Carrier("twilio", healthy=False), Carrier("modem")
    sender = FailoverSender([twilio, modem])
    assert sender.health() == Health(True, "twilio: down; modem: ok")
    modem.healthy = False
    assert not sender.health().ok


async def test_find_sent_asks_every_carrier() -> None:
    twilio, modem = Carrier("twilio"), Carrier("modem")
    modem.sent.append(MESSAGE.id)
    assert await FailoverSender([twilio, modem]).find_sent(MESSAGE) == Receipt("modem", "modem-found")
