"""The duty-room console over HTTP, as a browser uses it: accounts made with `alertd users`, log in and out,
the live board and its event stream, acting on an incident, and the server's refusals (scope, CSRF, a
foreign origin, a viewer, throttled logins). A real daemon (in this process), a real broker, real SQLite.
The page itself, in a real browser, is tests/test_console_browser.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import aiohttp

from alertd.core.desk import FOLLOW_UP_STEP
from alertd.core.model import Kind
from alertd.core.records import Batch, Incident, State
from alertd.store import Store, reading
from tests.console_client import DEVICE_ROW, PASSWORD, add_user, console, incident_of, raise_alarm
from tests.harness import (
    Village,
    resident_phone,
    running_daemon,
    terminals,
    write_village,
)


async def test_a_duty_officer_sees_every_group_and_a_leader_only_theirs(village: Village) -> None:
    async with (
        running_daemon(village),
        terminals(village) as sims,
        console(village) as duty,
        console(village) as leader,
    ):
        assert (await duty.login("老周")).status == 200
        assert (await leader.login("陈国庆")).status == 200
        await sims.alarm("t1-2", "fire", seq=1)
        await sims.alarm("t2-3", "medical", seq=1)
        await sims.wait_until(lambda: len(sims.rung) >= 18)
        g1, g2 = await incident_of(village, "h1-2"), await incident_of(village, "h2-3")

        status, rows = await duty.get("/board/rows")
        assert status == 200
        assert f'data-id="{g1}"' in rows
        assert f'data-id="{g2}"' in rows
        assert "2号户 1组" in rows
        assert "火警" in rows
        assert "急病求助" in rows

        status, rows = await leader.get("/board/rows")
        assert f'data-id="{g1}"' in rows
        assert f'data-id="{g2}"' not in rows
        assert (await leader.get(f"/incidents/{g2}"))[0] == 403
        assert (await leader.act(g2, "acknowledge"))[0] == 403
        async with reading(village.store_path) as store:
            untouched = await store.incident(g2)
        assert untouched is not None
        assert untouched.acknowledged_at is None
        status, page = await leader.get(f"/incidents/{g1}")
        assert status == 200
        assert "2号户 1组" in page


async def test_acknowledging_on_the_console_stops_the_terminals_and_is_in_the_timeline(village: Village) -> None:
    async with running_daemon(village), terminals(village) as sims, console(village) as duty:
        await duty.login("老周")
        incident = await raise_alarm(sims, village, 1, 4, "panic")
        status, where = await duty.act(incident, "acknowledge", note="电话联系上了，马上到")
        assert status == 303
        assert where.startswith(f"/incidents/{incident}?m=%E5%B7%B2%E8%AE%B0%E5%BD%95")  # 已记录
        await sims.wait_until(lambda: len(sims.stops(incident)) == 9)
        async with reading(village.store_path) as store:
            record = await store.incident(incident)
            timeline = await store.timeline(incident)
        assert record is not None
        assert record.acknowledged_by == "老周 (web:127.0.0.1)"
        assert ("acknowledged", "老周 (web:127.0.0.1) (console)") in [(t.event, t.actor) for t in timeline]
        assert ("note", "电话联系上了，马上到") in [(t.event, t.detail) for t in timeline]
        status, page = await duty.get(f"/incidents/{incident}")
        assert "电话联系上了，马上到" in page
        # Again: refused by the core (already acknowledged), said on the page, nothing sent.
        status, where = await duty.act(incident, "acknowledge")
        assert status == 303
        assert "m=%E5%B7%B2" not in where
        assert "already" in unquote(where)


async def test_posts_without_the_csrf_token_or_from_another_origin_are_refused(village: Village) -> None:
    async with running_daemon(village), terminals(village) as sims, console(village) as duty:
        await duty.login("老周")
        incident = await raise_alarm(sims, village, 1, 1, "fire")
        assert (await duty.act(incident, "acknowledge", csrf=""))[0] == 403
        assert (await duty.act(incident, "acknowledge", csrf="x" * 43))[0] == 403
        async with duty.http.post(
            f"{duty.base}/incidents/{incident}/act",
            data={"action": "acknowledge", "csrf": duty.csrf},
            headers={"Origin": "http://evil.example"},
            allow_redirects=False,
        ) as response:
            assert response.status == 403
        # A login form posted without the token its page set (login CSRF) is refused too.
        async with duty.http.post(f"{duty.base}/login", data={"name": "老周", "password": PASSWORD}) as response:
            assert response.status == 403
        async with reading(village.store_path) as store:
            record = await store.incident(incident)
        assert record is not None
        assert record.acknowledged_at is None  # none of them acted


async def test_a_viewer_reads_and_cannot_act(village: Village) -> None:
    async with running_daemon(village), terminals(village) as sims, console(village) as viewer:
        await viewer.login("观察员")
        incident = await raise_alarm(sims, village, 2, 1, "fire")
        status, page = await viewer.get(f"/incidents/{incident}")
        assert status == 200
        assert 'id="actions"' not in page  # no buttons
        assert (await viewer.act(incident, "acknowledge"))[0] == 403


async def test_pages_need_a_session_and_logging_out_ends_it(village: Village) -> None:
    async with running_daemon(village), console(village) as someone:
        assert (await someone.get("/"))[0] == 303
        assert (await someone.get("/board/rows"))[0] == 401
        assert (await someone.get("/events"))[0] == 401
        response = await someone.login("老周", "wrong password")
        assert response.status == 401
        assert "wrong name or password" in await response.text()
        await someone.login("老周")
        assert (await someone.get("/"))[0] == 200
        cookie = {c.key: c.value for c in someone.http.cookie_jar}["alertd_session"]
        async with someone.http.post(f"{someone.base}/logout", data={"csrf": someone.csrf}) as response:
            assert response.status == 200  # followed to the login page
        # The old cookie, replayed, opens nothing: the session is gone from the store.
        async with (
            aiohttp.ClientSession() as replay,
            replay.get(f"{someone.base}/board/rows", headers={"Cookie": f"alertd_session={cookie}"}) as response,
        ):
            assert response.status == 401


async def test_logins_are_throttled_per_account(village: Village) -> None:
    async with running_daemon(village), console(village) as attacker, console(village) as owner:
        for _ in range(5):
            assert (await attacker.login("陈国庆", "guess guess")).status == 401
        response = await owner.login("陈国庆")  # the right password, but the account is resting
        assert response.status == 401
        assert "too many failed logins" in await response.text()
        assert (await owner.login("老周")).status == 200  # another account is not affected


async def test_the_board_hears_a_new_alarm_as_an_event(village: Village) -> None:
    async with running_daemon(village), terminals(village) as sims, console(village) as duty:
        await duty.login("老周")
        async with duty.http.get(f"{duty.base}/events", timeout=aiohttp.ClientTimeout(total=20)) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            events: list[tuple[str, str]] = []  # (event, data)

            async def next_event() -> tuple[str, str]:
                event = data = ""
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data = line.removeprefix("data: ")
                    elif not line and event:
                        return event, data
                raise AssertionError(f"stream ended after {events}")

            async with asyncio.timeout(5):
                events.append(await next_event())
            assert events == [("hello", "{}")]
            await sims.alarm("t1-6", "gas", seq=1)
            async with asyncio.timeout(5):
                events.append(await next_event())
        incident = await incident_of(village, "h1-6")
        assert events[1] == ("changed", f'{{"id": {incident}}}')


def test_users_cli_refuses_what_cannot_be_an_account(tmp_path: Path) -> None:
    village = write_village(tmp_path, groups=1)
    assert add_user(village, "老周", "duty").returncode == 0
    again = add_user(village, "老周", "duty")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    leaderless = add_user(village, "组长", "leader")
    assert leaderless.returncode == 1
    assert "at least one group" in leaderless.stderr
    elsewhere = add_user(village, "组长", "leader", groups="g9")
    assert elsewhere.returncode == 1
    assert "no group g9" in elsewhere.stderr
    short = add_user(village, "短", "duty", password="1234")
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr
    forged = add_user(village, "x (web:1.2.3.4)", "duty")
    assert forged.returncode == 1
    listed = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "users", "list", "-c", str(village.settings_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert listed.stdout.splitlines() == ["老周\tduty\tall groups\tactive"]


async def test_stopping_the_daemon_ends_the_open_boards_streams_at_once(village: Village) -> None:
    async with console(village) as duty:
        async with running_daemon(village):
            await duty.login("老周")
            stream = await duty.http.get(f"{duty.base}/events", timeout=aiohttp.ClientTimeout(total=90))
            async with asyncio.timeout(5):
                assert (await stream.content.readline()).decode().strip() == "event: hello"
            stopping = time.monotonic()
        # Without ending them, the HTTP side would wait for the streams (aiohttp's 60 s shutdown timeout).
        assert time.monotonic() - stopping < 10
        async with asyncio.timeout(5):
            await stream.content.read()  # the stream has ended: the browser reconnects to the next daemon
        stream.close()


async def test_the_devices_page_filters_by_group_and_need_and_keeps_to_the_users_groups(village: Village) -> None:
    async with (
        running_daemon(village),
        terminals(village) as sims,
        console(village) as duty,
        console(village) as leader,
    ):
        await duty.login("老周")
        await leader.login("陈国庆")
        await sims.publish("t1-3", {"type": "heartbeat", "battery": 12})  # seen now, battery low
        await raise_alarm(sims, village, 1, 2, "fire")

        def devices(page: str) -> dict[str, str]:
            """device id -> 'ok' or 'attention', as the page's rows say"""
            return {device: state for state, device in DEVICE_ROW.findall(page)}

        status, page = await duty.get("/devices")
        assert status == 200
        everything = devices(page)
        assert {d for d in everything if d.startswith("t")} == {f"t{g}-{h}" for g in (1, 2) for h in range(1, 11)}
        assert everything["t1-3"] == "attention"  # 12 % is low
        status, page = await duty.get("/devices?group=g2")
        assert set(devices(page)) == {d for d in everything if d[1:].startswith("2-")}
        status, page = await duty.get("/devices?problems=1")
        assert set(devices(page)) == {d for d, state in everything.items() if state == "attention"}
        assert set(devices(page).values()) == {"attention"}

        status, page = await leader.get("/devices")
        assert set(devices(page)) == {d for d in everything if d[1:].startswith("1-")}
        assert (await leader.get("/devices?group=g2"))[0] == 403


async def test_the_roster_masks_phones_but_for_admins_and_keeps_to_the_users_groups(village: Village) -> None:
    async with running_daemon(village), console(village) as admin, console(village) as leader:
        await admin.login("管理员")
        await leader.login("陈国庆")
        full, masked = resident_phone(1, 3), resident_phone(1, 3)[:6] + "****" + resident_phone(1, 3)[-4:]
        status, page = await admin.get("/roster")
        assert status == 200
        assert full in page
        assert 'data-household="h2-1"' in page
        status, page = await leader.get("/roster")
        assert status == 200
        assert full not in page
        assert masked in page
        assert 'data-household="h1-3"' in page
        assert 'data-household="h2-1"' not in page  # another group's households are not theirs to see


async def test_a_resolved_alarm_is_rated_on_the_console_and_its_household_was_asked(village: Village) -> None:
    async with (
        running_daemon(village),
        terminals(village) as sims,
        console(village) as duty,
        console(village) as viewer,
    ):
        await duty.login("老周")
        await viewer.login("观察员")
        incident = await raise_alarm(sims, village, 2, 4, "fire")
        assert (await duty.act(incident, "resolve", outcome="real"))[0] == 303
        page = (await duty.get(f"/incidents/{incident}"))[1]
        assert 'id="evaluate"' in page
        assert 'id="evaluate"' not in (await viewer.get(f"/incidents/{incident}"))[1]
        assert (await viewer.http.post(
            f"{viewer.base}/incidents/{incident}/evaluate", data={"csrf": viewer.csrf, "satisfaction": "fair"},
            allow_redirects=False,
        )).status == 403  # fmt: skip
        async with duty.http.post(
            f"{duty.base}/incidents/{incident}/evaluate",
            data={"csrf": duty.csrf, "satisfaction": "dissatisfied"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
        async with reading(village.store_path) as store:
            record = await store.incident(incident)
            notes = await store.notifications(incident)
        assert record is not None
        assert record.satisfaction is not None
        assert record.satisfaction.value == "dissatisfied"
        assert record.evaluated_by == "老周 (web:127.0.0.1) (console)"
        # The household was asked (its one resident), and the grid worker is told to call them back.
        texts = {(n.recipient, n.body.split("，")[0]) for n in notes if n.step == FOLLOW_UP_STEP}
        assert ("p2-4", "【联防】4号户 2组") in texts
        assert any(
            r == "grid" and "回访" in b for r, b in {(n.recipient, n.body) for n in notes if n.step == FOLLOW_UP_STEP}
        )
        page = (await duty.get(f"/incidents/{incident}"))[1]
        assert 'id="rated"' in page
        assert "不满意" in page


PASSWORD_SHOWN = re.compile(r'id="password">.*?<code>([^<]+)</code>', re.S)


async def test_an_admin_manages_accounts_on_the_page_and_everyone_else_is_refused(village: Village) -> None:
    async with running_daemon(village), console(village) as admin, console(village) as duty, console(village) as new:
        await admin.login("管理员")
        await duty.login("老周")
        assert (await duty.get("/admin/users"))[0] == 403
        assert (await duty.post("/admin/users", {"csrf": duty.csrf, "do": "disable", "name": "管理员"}))[0] == 403
        fields = [("csrf", admin.csrf), ("do", "add"), ("name", "小王"), ("role", "grid"), ("groups", "g2")]
        status, page = await admin.post("/admin/users", fields)
        assert status == 200
        match = PASSWORD_SHOWN.search(page)
        assert match is not None  # shown once, on this answer, not in a URL
        assert "小王" in page
        assert (await new.login("小王", match.group(1))).status == 200
        rows = (await new.get("/devices"))[1]
        assert {device[1:].split("-")[0] for _, device in DEVICE_ROW.findall(rows)} == {"2"}  # a grid worker of g2
        assert (await admin.post("/admin/users", {"csrf": admin.csrf, "do": "disable", "name": "小王"}))[0] == 303
        assert (await new.get("/board/rows"))[0] == 401  # disabled: the session is gone at once
        page = (await admin.get("/admin/users"))[1]
        assert "user added" in page
        assert "user disabled" in page
        assert "小王 (grid, g2)" in page


async def test_the_board_shows_every_open_incident_even_past_two_hundred(village: Village) -> None:
    # Once cut at the store's default of 200 (newest first), silently: the oldest alarms left the board.
    store = await Store.open(village.store_path)
    try:
        t0 = 1_800_000_000.0
        batch = Batch(t0)
        for n in range(1, 206):
            batch.incidents[n] = Incident(n, "h1-1", "g1", Kind.FIRE, "default", State.ACKNOWLEDGED, t0 + n, t0 + n)
        await store.commit(batch)
    finally:
        await store.close()
    async with running_daemon(village), console(village) as duty:
        await duty.login("老周")
        status, rows = await duty.get("/board/rows")
        assert status == 200
        assert rows.count('<tr class="incident') == 205
        assert 'data-id="1"' in rows  # the oldest too


async def test_accounts_added_at_once_on_a_new_store_all_land(tmp_path: Path) -> None:
    # Four `alertd users add` before the store existed built over each other's draft: all failed, and a 0-byte
    # alertd.db was left that every later command refused.
    village = write_village(tmp_path, groups=1)
    done = await asyncio.gather(*(asyncio.to_thread(add_user, village, f"值班{n}", "duty") for n in range(4)))
    assert [d.returncode for d in done] == [0, 0, 0, 0], [d.stderr[-300:] for d in done]
    listed = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "users", "list", "-c", str(village.settings_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert sorted(line.split("\t")[0] for line in listed.stdout.splitlines()) == [f"值班{n}" for n in range(4)]
