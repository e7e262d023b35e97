"""The standby's broker check never touches the alarms' session (issue 15), on a real Mosquitto running the
shipped mosquitto.conf, whose use_username_as_clientid names each session by its account: a standby that
logged in as the service's account with a clean session would wipe the alarms queued for the active."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.config import Settings
from alertd.standby import BrokerWatch
from tests import test_mosquitto_conf as shipped
from tests.test_mqtt_takeover import EXAMPLE_PASSWORDS, PAYLOAD, Village, example_accounts

PASSWORDS = EXAMPLE_PASSWORDS | {"alertd-standby": "standby-secret"}


@pytest.fixture
def village(tmp_path: Path) -> Iterator[Village]:
    passwd, acl = example_accounts(tmp_path, PASSWORDS)
    broker = shipped.shipped_broker(tmp_path, passwd, acl)
    broker.start()
    v = Village(broker, PASSWORDS, shipped.PREFIX, "alertd", "dev-001", "dev-002")
    try:
        yield v
    finally:
        for client in v.clients:
            client.close()
        broker.stop()


def settings(village: Village, *, own_account: bool) -> Settings:
    standby: dict[str, object] = {"instance": "b"}
    if own_account:
        standby |= {"mqtt_username": "alertd-standby", "mqtt_password": PASSWORDS["alertd-standby"]}
    return Settings.model_validate(
        {
            "mqtt": {"url": f"mqtt://127.0.0.1:{village.broker.port}", "client_id": "alertd", "username": "alertd",
                     "password": PASSWORDS["alertd"], "prefix": village.prefix},
            "standby": standby,
        }
    )  # fmt: skip


@pytest.mark.parametrize("own_account", [False, True], ids=["no account: port check", "own account: login"])
async def test_the_standbys_broker_check_leaves_the_alarms_session_and_its_queue_alone(
    village: Village, own_account: bool
) -> None:
    # The active's session, offline for a moment (it died): an alarm is queued in it for the next active.
    active, _present = village.connect("alertd", "alertd", clean_session=False)
    active.subscribe(f"{village.prefix}/dev/+/event")
    active.close()
    terminal, _present = village.connect(village.terminal_a, "dev-001-writer", clean_session=True)
    terminal.publish(village.event(village.terminal_a), PAYLOAD)

    watch = BrokerWatch(settings(village, own_account=own_account))
    task = asyncio.create_task(watch.run())
    try:
        async with asyncio.timeout(10):
            while not watch.health().ok:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # a login, if any, is in: time for the broker to act on it
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    detail = watch.health().detail

    # The new active resumes the session and gets the alarm.
    active, present = await asyncio.to_thread(village.connect, "alertd", "alertd", clean_session=False)
    assert present, f"the alarms' session is gone:\n{village.broker.log.read_text()}"
    await asyncio.to_thread(active.expect, village.event(village.terminal_a), PAYLOAD)
    assert ("no login" in detail) is not own_account, detail
