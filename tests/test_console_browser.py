"""The duty-room console in a real browser (Debian's headless Chromium, tests/browser.py) against a real
daemon, broker and store: log in, a new alarm appears on the open board by itself, acknowledging from the
page stops the terminals, a grid worker is refused another group's incident, a POST without the CSRF token
is refused, log out. Screenshots of each step go to the test artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from alertd.store import reading
from tests.browser import chromium, save_screenshot, wait_for
from tests.console_client import PASSWORD, add_user, incident_of
from tests.harness import Village, forget_session, running_daemon, terminals, write_village

BOARD_WITHIN_S = 2.0  # the bound: an alarm on an open board


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[webdriver.Chrome]:
    with contextlib.ExitStack() as stack:
        yield await asyncio.to_thread(stack.enter_context, chromium())


def log_in(driver: WebDriver, village: Village, name: str) -> None:
    driver.get(f"{village.base_url}/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "rows"), 5, what="the board after logging in")


def board_link_up(driver: WebDriver) -> bool:
    # The page marks its event stream connected: from here on, a commit reaches it.
    return "up" in (driver.find_element(By.ID, "link").get_attribute("class") or "")


async def test_the_console_in_a_browser(tmp_path: Path) -> None:
    village = write_village(tmp_path, groups=2)
    for name, role, groups in (("老周", "duty", ""), ("小李", "grid", "g1")):
        done = await asyncio.to_thread(add_user, village, name, role, groups)
        assert done.returncode == 0, done.stderr
    try:
        async with running_daemon(village), terminals(village) as sims, browser() as driver:
            # Log in: the board, empty.
            await asyncio.to_thread(log_in, driver, village, "老周")
            await asyncio.to_thread(wait_for, driver, board_link_up, 5, what="the board's event stream")
            assert "没有未处置的警情" in await asyncio.to_thread(lambda: driver.find_element(By.ID, "rows").text)
            await asyncio.to_thread(save_screenshot, driver, "console-1-empty-board")

            # An alarm over MQTT appears on the open board, without a reload, within 2 s.
            started = time.monotonic()
            await sims.alarm("t1-2", "fire", seq=1)
            row = await asyncio.to_thread(
                wait_for, driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.incident.alarm"), BOARD_WITHIN_S,
                what="the alarm's row on the board",
            )  # fmt: skip
            assert time.monotonic() - started < BOARD_WITHIN_S
            text = await asyncio.to_thread(lambda: row[0].text)
            assert "火警" in text
            assert "2号户 1组" in text
            assert "无人确认" in text
            # The page noticed a new alarm (it plays a tone and flashes the title for it).
            fresh = await asyncio.to_thread(
                lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-new-alarms")
            )
            assert fresh == "1"
            await asyncio.to_thread(save_screenshot, driver, "console-2-alarm-on-board")
            incident = await incident_of(village, "h1-2")
            await sims.wait_until(lambda: len(sims.rings(incident)) == 9)

            # Acknowledge from the incident page: the terminals are told to stop.
            def acknowledge(d: WebDriver) -> str:
                d.find_element(By.CSS_SELECTOR, f"tr[data-id='{incident}'] a").click()
                wait_for(d, lambda d: d.find_elements(By.ID, "acknowledge"), 5, what="the incident page")
                d.find_element(By.ID, "note").send_keys("已电话联系，网格员在路上")
                d.find_element(By.ID, "acknowledge").click()
                wait_for(d, lambda d: d.find_elements(By.ID, "message"), 5, what="the action's outcome")
                save_screenshot(d, "console-3-acknowledged")
                return str(d.find_element(By.ID, "record").text)

            record = await asyncio.to_thread(acknowledge, driver)
            await sims.wait_until(lambda: len(sims.stops(incident)) == 9)
            assert "老周 (web:127.0.0.1)" in record
            assert "已电话联系，网格员在路上" in record
            async with reading(village.store_path) as store:
                acknowledged = await store.incident(incident)
            assert acknowledged is not None
            assert acknowledged.acknowledged_by == "老周 (web:127.0.0.1)"

            # A POST without the CSRF token, from the page's own origin, is refused.
            status = await asyncio.to_thread(
                driver.execute_script,
                "return fetch('/incidents/' + arguments[0] + '/act', {method: 'POST', credentials: 'same-origin',"
                " body: new URLSearchParams({action: 'resolve'})}).then(r => r.status);",
                incident,
            )
            assert status == 403
            async with reading(village.store_path) as store:
                still = await store.incident(incident)
            assert still is not None
            assert still.resolved_at is None

            # Log out: back at the login page, and the board is closed to this browser.
            def log_out(d: WebDriver) -> str:
                d.find_element(By.ID, "logout").click()
                wait_for(d, lambda d: d.find_elements(By.ID, "login"), 5, what="the login page")
                d.get(f"{village.base_url}/")
                wait_for(d, lambda d: d.find_elements(By.ID, "login"), 5, what="the login page again")
                return str(d.current_url)

            assert (await asyncio.to_thread(log_out, driver)).endswith("/login")

            # A grid worker of group 1 cannot open group 2's incident.
            await sims.alarm("t2-5", "gas", seq=1)
            await sims.wait_until(lambda: len(sims.rung) >= 18)
            other = await incident_of(village, "h2-5")
            await asyncio.to_thread(log_in, driver, village, "小李")

            def open_other(d: WebDriver) -> tuple[str, str]:
                rows = d.find_element(By.ID, "rows").text
                d.get(f"{village.base_url}/incidents/{other}")
                save_screenshot(d, "console-4-grid-worker-refused")
                return rows, str(d.find_element(By.TAG_NAME, "body").text)

            rows, refused = await asyncio.to_thread(open_other, driver)
            assert "5号户 2组" not in rows  # not on their board either
            assert "2号户 1组" in rows
            assert "not in your groups" in refused
    finally:
        await forget_session(village)


def board_link_down(driver: WebDriver) -> bool:
    return "down" in (driver.find_element(By.ID, "link").get_attribute("class") or "")


async def test_an_open_board_reconnects_by_itself_after_the_daemon_restarts(tmp_path: Path) -> None:
    village = write_village(tmp_path, groups=1)
    done = await asyncio.to_thread(add_user, village, "老周", "duty")
    assert done.returncode == 0, done.stderr
    try:
        async with browser() as driver, terminals(village) as sims:
            async with running_daemon(village):
                await asyncio.to_thread(log_in, driver, village, "老周")
                await asyncio.to_thread(wait_for, driver, board_link_up, 5, what="the board's event stream")
            # The daemon is gone (SIGTERM-like stop): the page notices, and nobody touches it.
            await asyncio.to_thread(wait_for, driver, board_link_down, 10, what="the board to see the daemon go")
            async with running_daemon(village):
                # The session is in the store: the same page reconnects and is live again, no reload, no login.
                await asyncio.to_thread(wait_for, driver, board_link_up, 15, what="the board to reconnect")
                await sims.alarm("t1-3", "fire", seq=1)
                rows = await asyncio.to_thread(
                    wait_for, driver, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.incident.alarm"), 5,
                    what="the new alarm on the reconnected board",
                )  # fmt: skip
                assert "3号户 1组" in await asyncio.to_thread(lambda: rows[0].text)
                assert (await asyncio.to_thread(lambda: driver.current_url)).endswith("/")
                await asyncio.to_thread(save_screenshot, driver, "console-5-reconnected")
    finally:
        await forget_session(village)
