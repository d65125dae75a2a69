"""The web UI's tests drive Debian's headless Chromium through Debian's chromedriver with Selenium.

Both binaries are named explicitly, so Selenium Manager never looks for (or downloads) a browser: a test
run needs no network. Without them a browser test skips, unless TOBIO_REQUIRE_BROWSER=1 (CI), then it
fails. The waits here poll the page (WebDriverWait); nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,800"]
PAGE_TIMEOUT = 60.0  # seconds: opening a page on a busy 2-core machine
T = TypeVar("T")

# The innermost elements whose text (whitespace collapsed) contains the given text: what a person reads
# as "that text on the page", however many inline tags it spans (`<b>dog</b>: Max`).
_HOLDING = r"""const [text, within] = arguments;
const says = (e) => e.textContent.replace(/\s+/g, " ").includes(text);
return [...document.querySelectorAll(`${within}, ${within} *`)]
  .filter((e) => !["SCRIPT", "STYLE", "TEXTAREA"].includes(e.tagName) && says(e))
  .filter((e) => ![...e.children].some(says))
  .map((e) => e.textContent.replace(/\s+/g, " ").trim());"""


def browser_or_skip() -> None:
    """Skip (or fail under TOBIO_REQUIRE_BROWSER=1) when Chromium, its driver or Selenium is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        if os.environ.get("TOBIO_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOBIO_REQUIRE_BROWSER=1 but {', '.join(missing)} is missing")
        pytest.skip(f"no {', '.join(missing)} (bash .ci/chromium.sh installs chromium and chromium-driver)")


def chromium(*extra_flags: str) -> WebDriver:
    """A new headless Chromium (its own profile: no cookies), with its network events logged."""
    browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, *extra_flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(30)
    return driver


@contextmanager
def browser(*extra_flags: str) -> Iterator[WebDriver]:
    """`chromium()` for the length of a `with`; the browser and its driver always quit afterwards."""
    driver = chromium(*extra_flags)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver, check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy (and return that); fail after `timeout` seconds."""
    from selenium.webdriver.support.ui import WebDriverWait

    def checked(_: WebDriver) -> T | Literal[False]:
        value = check()
        return False if value is None else value

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(checked, what)


def holding(driver: WebDriver, text: str, within: str = "body") -> list[str]:
    """The whole text of each element showing `text` (the innermost ones) inside the `within` CSS
    selector, read at one moment (text, not elements: a streaming reply replaces its element often)."""
    found: list[str] = driver.execute_script(_HOLDING, text, within)
    return found


def wait_text(driver: WebDriver, text: str, timeout: float = 30.0, within: str = "body") -> str:
    """The text of the first element showing `text`, once there is one."""
    return wait(driver, lambda: next(iter(holding(driver, text, within)), None), timeout, f"no {text!r} in {within}")


def wait_gone(driver: WebDriver, text: str, timeout: float = 30.0, within: str = "body") -> None:
    wait(driver, lambda: not holding(driver, text, within), timeout, f"{text!r} is still in {within}")


def wait_element(driver: WebDriver, css: str, timeout: float = 30.0, *, visible: bool = True) -> WebElement:
    """The first element matching the CSS selector, once there is one (and it is shown, if `visible`)."""
    from selenium.webdriver.common.by import By

    def found() -> WebElement | None:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if not visible or element.is_displayed():
                return element
        return None

    return wait(driver, found, timeout, f"no {'visible ' if visible else ''}{css!r} on the page")


def click_button(driver: WebDriver, label: str, timeout: float = 30.0) -> None:
    """Click the first shown, enabled button whose label is `label` (as a person would find it)."""
    from selenium.webdriver.common.by import By

    def ready() -> WebElement | None:
        for button in driver.find_elements(By.TAG_NAME, "button"):
            if button.text.strip() == label and button.is_displayed() and button.is_enabled():
                return button
        return None

    wait(driver, ready, timeout, f"no enabled button {label!r}").click()


def say(driver: WebDriver, text: str, css: str = "textarea") -> None:
    """Type `text` into the box and press Enter (the page sends on Enter)."""
    from selenium.webdriver.common.keys import Keys

    box = wait_element(driver, css, PAGE_TIMEOUT)
    box.clear()
    box.send_keys(text, Keys.ENTER)


def open_chat(url: str, text: str) -> WebDriver:
    """A new browser on the chat page at `url` with `text` sent (the caller quits it)."""
    driver = chromium()
    try:
        driver.get(url)
        say(driver, text)
    except BaseException:
        driver.quit()
        raise
    return driver


def network(driver: WebDriver) -> list[dict[str, Any]]:
    """The DevTools Network events since the last call (Chromium's performance log; reading drains it)."""
    log = driver.execute("getLog", {"type": "performance"})["value"]  # get_log(), which has no type hints
    events = [json.loads(entry["message"])["message"] for entry in log]
    return [e for e in events if e["method"].startswith("Network.")]


def requested(events: list[dict[str, Any]]) -> list[str]:
    """Every URL the page asked for in `events`: documents, scripts, images, fetches and websockets."""
    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    return urls + [e["params"]["url"] for e in events if e["method"] == "Network.webSocketCreated"]


def status_of(events: list[dict[str, Any]], url: str) -> int:
    """The HTTP status the page at `url` was served with (its last response among `events`)."""
    statuses = [e["params"]["response"]["status"] for e in events
                if e["method"] == "Network.responseReceived" and e["params"]["response"]["url"] == url]
    assert statuses, f"no response for {url} among {requested(events)}"
    return int(statuses[-1])


def goto(driver: WebDriver, url: str) -> int:
    """Open `url` and return the status it was served with (earlier network events are dropped)."""
    network(driver)
    driver.get(url)
    return status_of(network(driver), url)
