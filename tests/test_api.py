"""The console's JSON API against a real daemon: bearer tokens made by `alertd users token`, the same roles
and groups as the pages, actions through the engine, no cookie accepted, and docs/openapi.json describing
exactly the routes the daemon serves."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web

from alertd.web.api import PREFIX, add_api
from tests.console_client import console, raise_alarm
from tests.harness import Village, running_daemon, terminals

ROOT = Path(__file__).resolve().parent.parent


def token_for(village: Village, name: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "users", "token", name, "--label", "test",
         "-c", str(village.settings_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("alertd_")
    return token


async def call(village: Village, token: str | None, method: str, path: str, body: object = None) -> tuple[int, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{village.base_url}{PREFIX}{path}", json=body, headers=headers) as response,
    ):
        return response.status, json.loads(await response.text())


async def test_the_api_acts_with_the_tokens_role_and_groups(village: Village) -> None:
    duty, leader, viewer = await asyncio.gather(
        *(asyncio.to_thread(token_for, village, n) for n in ("老周", "陈国庆", "观察员"))
    )
    async with running_daemon(village), terminals(village) as sims:
        g1 = await raise_alarm(sims, village, 1, 5, "fire")
        g2 = await raise_alarm(sims, village, 2, 6, "gas")

        status, listed = await call(village, duty, "GET", "/incidents?open=true")
        assert status == 200
        assert isinstance(listed, list)
        assert {i["id"] for i in listed} == {g1, g2}
        status, listed = await call(village, leader, "GET", "/incidents")
        assert isinstance(listed, list)
        assert [i["id"] for i in listed] == [g1]
        assert (await call(village, leader, "GET", f"/incidents/{g2}"))[0] == 403
        assert (await call(village, leader, "POST", f"/incidents/{g2}/actions", {"action": "acknowledge"}))[0] == 403
        assert (await call(village, viewer, "POST", f"/incidents/{g1}/actions", {"action": "acknowledge"}))[0] == 403

        status, answer = await call(village, leader, "POST", f"/incidents/{g1}/actions",
                                    {"action": "acknowledge", "note": "马上到"})  # fmt: skip
        assert status == 200
        assert isinstance(answer, dict)
        assert answer["actor"] == "陈国庆 (api:127.0.0.1)"
        await sims.wait_until(lambda: len(sims.stops(g1)) == 9)
        status, answer = await call(village, leader, "POST", f"/incidents/{g1}/actions", {"action": "acknowledge"})
        assert status == 409  # acknowledged already
        status, record = await call(village, duty, "GET", f"/incidents/{g1}")
        assert isinstance(record, dict)
        assert record["acknowledged_by"] == "陈国庆 (api:127.0.0.1)"
        assert ("note", "马上到") in [(t["event"], t["detail"]) for t in record["timeline"]]
        assert all("****" in n["address"] for n in record["notifications"] if n["channel"] == "sms")

        assert (await call(village, duty, "POST", f"/incidents/{g2}/actions", {"action": "explode"}))[0] == 400
        status, answer = await call(
            village, duty, "POST", f"/incidents/{g2}/actions", {"action": "resolve", "outcome": "real"}
        )
        assert status == 200
        status, answer = await call(village, duty, "POST", f"/incidents/{g2}/evaluation", {"satisfaction": "satisfied"})
        assert status == 200
        assert answer == {
            "ok": True, "result": f"incident {g2} rated satisfied", "verdict": "evaluated",
            "actor": "老周 (api:127.0.0.1)",
        }  # fmt: skip

        status, devices = await call(village, leader, "GET", "/devices")
        assert isinstance(devices, list)
        assert {d["group"] for d in devices} == {"g1"}
        assert (await call(village, leader, "GET", "/devices?group=g2"))[0] == 403
        assert (await call(village, duty, "GET", "/reports?month=1999-01"))[0] == 200
        assert (await call(village, duty, "GET", "/reports?month=nope"))[0] == 400


async def test_no_token_a_wrong_one_or_a_session_cookie_opens_nothing(village: Village) -> None:
    token = await asyncio.to_thread(token_for, village, "老周")
    async with running_daemon(village), console(village) as browser:
        await browser.login("老周")  # a logged-in browser: its cookie must not work on the API
        async with browser.http.get(f"{village.base_url}{PREFIX}/incidents") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await call(village, None, "GET", "/incidents"))[0] == 401
        assert (await call(village, token[:-2] + "xx", "GET", "/incidents"))[0] == 401
        assert (await call(village, token, "GET", "/incidents"))[0] == 200
        revoked = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "alertd.cli", "users", "revoke", "老周", "-c", str(village.settings_path)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert "revoked 1" in revoked.stdout
        assert (await call(village, token, "GET", "/incidents"))[0] == 401


def test_the_openapi_file_describes_exactly_the_served_routes() -> None:
    spec = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert spec["servers"] == [{"url": PREFIX}]
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    app = web.Application()
    add_api(app)
    served = {
        (route.method, route.resource.canonical.removeprefix(PREFIX).replace("{id:\\d+}", "{id}"))
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert served == documented
