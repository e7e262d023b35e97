"""The browser chain works end to end: a page served from this test's event loop, its JavaScript run by
headless Chromium (Debian's, through the system chromedriver), a form posted back to the server."""

from __future__ import annotations

import html
import struct
from pathlib import Path

from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.browser import WINDOW_SIZE, in_browser, save_screenshot, wait_for

VALUE = "2号户 王家"

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>值班室</title></head>
<body>
<p id="status">loading</p>
<form method="post" action="/submit">
  <input name="who" id="who"><button id="send" type="submit">提交</button>
</form>
<script>
  window.addEventListener("load", () => {
    document.getElementById("status").textContent = "ready " + navigator.language;
  });
</script>
</body></html>
"""


async def test_chromium_runs_the_page_script_and_posts_the_form() -> None:
    posted: list[tuple[str, str]] = []  # (value, Accept-Language) as the server received them

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def submit(request: web.Request) -> web.Response:
        who = (await request.post()).get("who")
        assert isinstance(who, str)
        posted.append((who, request.headers.get("Accept-Language", "")))
        body = f'<!doctype html><meta charset="utf-8"><p id="echo">{html.escape(who)}</p>'
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_post("/submit", submit)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/"

        def drive(driver: webdriver.Chrome) -> tuple[str, str, tuple[int, int], str, Path]:
            driver.get(url)
            status = wait_for(
                driver,
                lambda d: (text := d.find_element(By.ID, "status").text).startswith("ready") and text,
                5,
                what="the page's script to mark #status ready",
            )
            driver.find_element(By.ID, "who").send_keys(VALUE)
            driver.find_element(By.ID, "send").click()
            echo = wait_for(driver, lambda d: d.find_element(By.ID, "echo").text, 5, what="the posted value")
            size = driver.get_window_size()
            shot = save_screenshot(driver, "browser-smoke")
            return status, echo, (size["width"], size["height"]), driver.current_url, shot

        status, echo, window, final_url, shot = await in_browser(drive)
    finally:
        await runner.cleanup()

    assert status == "ready zh-CN"  # the script ran, in the duty room's language
    assert len(posted) == 1
    value, accept_language = posted[0]
    assert value == VALUE
    assert accept_language.startswith("zh-CN")
    assert echo == VALUE
    assert final_url == f"{url}submit"
    assert window == WINDOW_SIZE
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk: the viewport as captured
    assert width == WINDOW_SIZE[0]
    assert 0 < height <= WINDOW_SIZE[1]
