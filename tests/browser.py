"""A real browser for tests: headless Chromium from Debian's packages, driven by selenium.

`scripts/test.sh` installs Debian's `chromium` and `chromium-driver` when they are missing; selenium is
always pointed at the system chromedriver and browser, so it never downloads a driver or a browser of its
own (selenium-manager is not consulted when the Service has an executable path).

Selenium is blocking, the daemon side is asyncio. A test that serves pages from its own event loop (an
aiohttp app, the daemon's web side) must never call selenium on that loop: the loop would stop while the
browser waits for a page the loop should serve. Two ways:

- the whole browser session in a worker thread, which is what `in_browser` does:

      def drive(driver: webdriver.Chrome) -> str:
          driver.get(url)
          return wait_for(driver, lambda d: d.find_element(By.ID, "status").text, 5)

      shown = await in_browser(drive)

- or, to interleave browser steps with awaits on the daemon, enter `chromium()` on a worker thread
  (starting the browser blocks for a second or so) and run each blocking step with `asyncio.to_thread`:

      with contextlib.ExitStack() as stack:
          driver = await asyncio.to_thread(stack.enter_context, chromium())
          await asyncio.to_thread(driver.get, url)
          await some_daemon_event()
          await asyncio.to_thread(wait_for, driver, condition, 5)

  (the ExitStack quits the browser on the loop's thread at the end: a short blocking call, acceptable
  in a test).

A worker thread cannot be cancelled: keep every wait bounded (`wait_for` has a timeout) so a failing test
ends instead of leaving the browser running past the test's timeout.

Screenshots go to `$ALERTD_TEST_ARTIFACTS`, else `<repo>/test-artifacts/` (git-ignored); `wait_for`
saves one on timeout, named after the running test.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TypeVar

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "WINDOW_SIZE",
    "BrowserTimeoutError",
    "artifacts_dir",
    "chromium",
    "in_browser",
    "save_screenshot",
    "wait_for",
]

# Debian's packages (scripts/test.sh installs them): the browser's launcher and the matching driver.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW_SIZE = (1366, 768)  # the duty room's PC
LANGUAGE = "zh-CN"
REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class BrowserTimeoutError(AssertionError):
    """A `wait_for` condition did not hold in time; the message names the page and the screenshot."""


def _options(profile: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}",
        f"--user-data-dir={profile}",
        f"--lang={LANGUAGE}",
        "--no-first-run",
        "--no-default-browser-check",
    ):
        options.add_argument(arg)
    # --lang alone does not reach navigator.language and Accept-Language on Linux; the profile's pref does.
    options.add_experimental_option("prefs", {"intl.accept_languages": f"{LANGUAGE},zh"})
    return options


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, through the system chromedriver; quit on exit, always."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(
                f"{path} is missing: bash scripts/test.sh installs Debian's chromium and chromium-driver"
            )
    with tempfile.TemporaryDirectory(prefix="alertd-chromium-", ignore_cleanup_errors=True) as profile:
        driver = webdriver.Chrome(options=_options(profile), service=Service(executable_path=CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


async def in_browser(fn: Callable[[webdriver.Chrome], T]) -> T:
    """Run `fn(driver)` in a fresh `chromium()` session on a worker thread; the event loop stays free."""

    def session() -> T:
        with chromium() as driver:
            return fn(driver)

    return await asyncio.to_thread(session)


def artifacts_dir() -> Path:
    """Where test artifacts go: `$ALERTD_TEST_ARTIFACTS`, else `<repo>/test-artifacts/`; created."""
    folder = Path(os.environ.get("ALERTD_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """Save the viewport as `<artifacts>/<name>.png` (the name made file-safe); return the path."""
    safe = re.sub(r"[^\w.-]+", "_", name).strip("._") or "screenshot"
    path = artifacts_dir() / f"{safe}.png"
    path.write_bytes(driver.get_screenshot_as_png())
    return path


def wait_for(
    driver: WebDriver,
    condition: Callable[[WebDriver], T | Literal[False]],
    timeout_s: float,
    *,
    what: str | None = None,
) -> T:
    """Poll `condition(driver)` until it returns something truthy, and return that.

    `NoSuchElementException` counts as "not yet" (selenium's default). On timeout: a screenshot is saved
    and `BrowserTimeoutError` names what was awaited, the page's URL and title, and the screenshot.
    """
    try:
        return WebDriverWait(driver, timeout_s).until(condition)
    except TimeoutException as exc:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        try:
            shot: Path | str = save_screenshot(driver, f"timeout-{test or 'wait_for'}")
        except Exception as shot_exc:  # noqa: BLE001 - the timeout is the error to report, not this
            shot = f"none ({shot_exc!r})"
        raise BrowserTimeoutError(
            f"waited {timeout_s} s for {what or getattr(condition, '__name__', repr(condition))}"
            f" at {driver.current_url} (title {driver.title!r}); screenshot: {shot}"
        ) from exc
