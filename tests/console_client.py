"""The duty-room console as a browser's HTTP client sees it, for the console, report and API tests: accounts
made with the real `alertd users`, logging in with the page's CSRF token, acting on incidents."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from alertd.store import reading
from tests.harness import Terminals, Village

PASSWORD = "correct horse 1"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DEVICE_ROW = re.compile(r'<tr class="(ok|attention)" data-device="([^"]+)"')


def add_user(
    village: Village, name: str, role: str, groups: str = "", password: str = PASSWORD
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "alertd.cli", "users", "add", name, "--role", role, "--password-stdin",
            "-c", str(village.settings_path)]  # fmt: skip
    if groups:
        args += ["--groups", groups]
    return subprocess.run(args, input=password + "\n", capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Console:
    """One browser's worth of the console: its own cookies."""

    base: str
    http: aiohttp.ClientSession
    csrf: str = ""

    async def login(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        async with self.http.get(f"{self.base}/login") as page:
            token = _csrf(await page.text())
        response = await self.http.post(
            f"{self.base}/login", data={"csrf": token, "name": name, "password": password}, allow_redirects=True
        )
        text = await response.text()
        if response.status == 200 and (match := CSRF.search(text)):
            self.csrf = match.group(1)  # the board's logout form carries the session's token
        return response

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(f"{self.base}{path}", allow_redirects=False) as response:
            return response.status, await response.text()

    async def post(self, path: str, data: object) -> tuple[int, str]:
        """A form POST with this session's CSRF token (pass it in `data`), redirects not followed."""
        async with self.http.post(f"{self.base}{path}", data=data, allow_redirects=False) as response:
            return response.status, await response.text()

    async def act(self, incident: int, action: str, *, csrf: str | None = None, **fields: str) -> tuple[int, str]:
        data = {"action": action, "csrf": self.csrf if csrf is None else csrf} | fields
        async with self.http.post(f"{self.base}/incidents/{incident}/act", data=data, allow_redirects=False) as r:
            return r.status, r.headers.get("Location", "") or await r.text()


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    assert match is not None, page[:500]
    return match.group(1)


@contextlib.asynccontextmanager
async def console(village: Village) -> AsyncIterator[Console]:
    # aiohttp keeps no cookies from a bare IP address unless told to: the console runs on 127.0.0.1.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Console(village.base_url, http)


async def raise_alarm(sims: Terminals, village: Village, group: int, house: int, kind: str) -> int:
    """A terminal's alarm, rung through; its incident's id."""
    before = len(sims.rung)  # (device, incident) pairs: a new incident adds nine
    await sims.alarm(f"t{group}-{house}", kind, seq=1)
    await sims.wait_until(lambda: len(sims.rung) >= before + 9)
    return await incident_of(village, f"h{group}-{house}")


async def incident_of(village: Village, household: str) -> int:
    async with reading(village.store_path) as store:
        for incident in await store.incidents(active_only=True):
            if incident.household_id == household:
                return incident.id
    raise AssertionError(f"no open incident at {household}")
