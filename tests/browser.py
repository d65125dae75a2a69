"""The web UI's tests drive Debian's headless Chromium over the DevTools protocol on a pipe.

Chromium started with `--remote-debugging-pipe` reads protocol commands on its fd 3 and writes answers
and events on its fd 4, each a JSON object ended by a NUL byte (Playwright drives Chromium this way).
That pipe is the whole driver: no chromedriver, no port, no dependency, and nothing that could download a
browser, so a test run needs no network. `Page` keeps the few Selenium names the tests use (`get`,
`execute_script`, `find_elements`, `send_keys`...). Clicks and keys are real input events at the element,
as a person's would be. Without /usr/bin/chromium a browser test skips, unless TOBIO_REQUIRE_BROWSER=1
(CI), then it fails. The waits here poll the page; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,800"]
PAGE_TIMEOUT = 60.0  # seconds: opening a page on a busy 2-core machine
SCRIPT_TIMEOUT = 30.0  # seconds: a script (or a protocol command) that has not answered by then failed
ENTER = "\n"  # in send_keys: press Enter
T = TypeVar("T")
Json = dict[str, Any]

# The innermost elements whose text (whitespace collapsed) contains the given text: what a person reads
# as "that text on the page", however many inline tags it spans (`<b>dog</b>: Max`).
_HOLDING = r"""const [text, within] = arguments;
const says = (e) => e.textContent.replace(/\s+/g, " ").includes(text);
return [...document.querySelectorAll(`${within}, ${within} *`)]
  .filter((e) => !["SCRIPT", "STYLE", "TEXTAREA"].includes(e.tagName) && says(e))
  .filter((e) => ![...e.children].some(says))
  .map((e) => e.textContent.replace(/\s+/g, " ").trim());"""


# What Chromium says when a command meets a document that has since been replaced (a navigation).
_PAGE_GONE = ("Not attached to an active page", "Cannot find context", "context was destroyed",
              "Could not find object with given id")


class BrowserError(AssertionError):
    """Chromium refused or failed a command (a test failure, with Chromium's reason)."""


class PageChanged(BrowserError):
    """The page navigated away while a script ran in it (`wait` polls again)."""


def browser_or_skip() -> None:
    """Skip (or fail under TOBIO_REQUIRE_BROWSER=1) when Chromium is missing."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("TOBIO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TOBIO_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
    pytest.skip(f"no {CHROMIUM} (bash .ci/chromium.sh installs Debian's chromium)")


class Chromium:
    """One headless Chromium process (its own new profile: no cookies) and its protocol pipe."""

    def __init__(self, *extra_flags: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="tobio-chromium-")
        self.log = Path(self.profile) / "chromium.log"
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()
        # Chromium must find the pipes at fds 3 and 4: copies above 9 cannot clash with those numbers
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        argv = [CHROMIUM, *FLAGS, *extra_flags, "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"]
        try:
            self.pid = os.posix_spawn(CHROMIUM, argv, os.environ, setpgroup=0, file_actions=[
                (os.POSIX_SPAWN_DUP2, high[0], 3), (os.POSIX_SPAWN_DUP2, high[1], 4),
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(self.log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2)])
        finally:
            for fd in (to_browser, from_browser, *high):
                os.close(fd)
        self._lock = threading.Condition()
        self._write = threading.Lock()
        self._answered: dict[int, Json] = {}
        self._next_id = 0
        self._closed = False
        self._failure = ""  # why the pipe's reader stopped, if not because Chromium exited
        self._quit = False
        self.pages: dict[str, Page] = {}
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Answers to the waiting commands, events to their page, until Chromium closes the pipe."""
        pending = b""
        try:
            while chunk := os.read(self._answers, 1 << 20):
                *messages, pending = (pending + chunk).split(b"\0")
                for raw in messages:
                    message: Json = json.loads(raw)
                    if "id" in message:
                        with self._lock:
                            self._answered[message["id"]] = message
                            self._lock.notify_all()
                    elif (page := self.pages.get(message.get("sessionId", ""))) is not None:
                        page.event(message)
        except Exception as e:  # a message this client cannot read: every waiting command fails with it
            self._failure = f" (the pipe's reader failed: {e!r})"
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()

    def send(self, method: str, params: Json | None = None, session: str = "", timeout: float = SCRIPT_TIMEOUT) -> Json:
        """Run one protocol command and return its result (BrowserError with Chromium's reason if refused)."""
        with self._lock:
            self._next_id += 1
            key = self._next_id
        message: Json = {"id": key, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        with self._write:
            try:
                while data:
                    data = data[os.write(self._commands, data):]
            except OSError as e:
                raise BrowserError(f"{method}: Chromium has exited ({e}){self.tail()}") from None
        deadline = time.monotonic() + timeout
        with self._lock:
            while key not in self._answered:
                left = deadline - time.monotonic()
                if self._closed:
                    raise BrowserError(f"{method}: Chromium has exited{self._failure}{self.tail()}")
                if left <= 0:
                    raise BrowserError(f"{method}: no answer from Chromium in {timeout:.0f} s")
                self._lock.wait(left)
            answer = self._answered.pop(key)
        if "error" in answer:
            if any(gone in str(answer["error"].get("message")) for gone in _PAGE_GONE):
                raise PageChanged(f"{method}: the page changed under it ({answer['error'].get('message')})")
            raise BrowserError(f"{method}: {answer['error'].get('message')} {answer['error'].get('data', '')}".rstrip())
        result: Json = answer.get("result", {})
        return result

    def tail(self) -> str:
        """The end of Chromium's own log, for an error message."""
        try:
            return "\nChromium's log ends:\n" + self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def page(self) -> Page:
        """The window Chromium opened (about:blank), attached and reporting its load and network events."""
        targets = self.send("Target.getTargets")["targetInfos"]
        found = [t["targetId"] for t in targets if t["type"] == "page"]
        target = found[0] if found else self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self.pages[session] = Page(self, session, target)
        page.send("Page.enable")
        page.send("Page.setLifecycleEventsEnabled", {"enabled": True})
        page.send("Network.enable")
        return page

    def quit(self) -> None:
        """Close Chromium (killing its process group if it does not go), reap it, remove its profile."""
        if self._quit:
            return
        self._quit = True
        try:
            self.send("Browser.close", timeout=10)
        except BrowserError:
            pass
        deadline = time.monotonic() + 15
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # any helper process left in its group
        except ProcessLookupError:
            pass
        os.close(self._commands)
        self._reader.join(10)
        os.close(self._answers)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """A Chromium tab, with the Selenium names the tests were written with."""

    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self.loaded: set[str] = set()  # the documents (loader ids) whose load event has fired
        self.events: list[Json] = []  # Network.* events not read yet (`network()` drains them)
        self.events_lock = threading.Lock()

    def event(self, message: Json) -> None:
        """Called on the pipe's reader thread for each event of this tab."""
        method = message["method"]
        if method.startswith("Network."):
            with self.events_lock:
                self.events.append({"method": method, "params": message.get("params", {})})
        elif method == "Page.lifecycleEvent" and message["params"]["name"] == "load":
            self.loaded.add(message["params"]["loaderId"])

    def send(self, method: str, params: Json | None = None, timeout: float = SCRIPT_TIMEOUT) -> Json:
        return self.browser.send(method, params, self.session, timeout)

    def get(self, url: str) -> None:
        """Open `url` and wait until it has loaded (an HTTP error page too: its status is in the network log)."""
        result = self.send("Page.navigate", {"url": url}, PAGE_TIMEOUT)
        if result.get("errorText") not in (None, "net::ERR_HTTP_RESPONSE_CODE_FAILURE"):
            raise BrowserError(f"{url}: {result['errorText']}")
        if "loaderId" in result:  # a new document (its load, not an earlier page's), not a jump within this one
            wait(self, lambda: result["loaderId"] in self.loaded, PAGE_TIMEOUT, f"{url} did not finish loading")

    @property
    def current_url(self) -> str:
        """The address shown for the tab (asked of the browser, so it answers while a page loads too)."""
        return str(self.browser.send("Target.getTargetInfo", {"targetId": self.target})["targetInfo"]["url"])

    def _evaluate(self, expression: str, timeout: float = SCRIPT_TIMEOUT) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           timeout)
        return _value(result)

    def execute_script(self, script: str, *args: Any) -> Any:
        """Run a function body (`arguments` holds `args`, `return` gives the result) in the page."""
        return self._evaluate(f"(function() {{ {script}\n}}).apply(null, {json.dumps(args)})")

    def execute_async_script(self, script: str, *args: Any) -> Any:
        """Run a function body whose last argument is the callback that gives the result."""
        return self._evaluate(
            f"""new Promise((done, failed) => {{
              setTimeout(() => failed(new Error("no answer in {SCRIPT_TIMEOUT:.0f} s")), {SCRIPT_TIMEOUT * 1000:.0f});
              (function() {{ {script}\n}}).apply(null, [...{json.dumps(args)}, done]);
            }})""", SCRIPT_TIMEOUT + 5)

    def find_elements(self, css: str) -> list[Element]:
        """The elements matching the CSS selector now, in document order."""
        found = self.send("Runtime.evaluate", {"expression": f"[...document.querySelectorAll({json.dumps(css)})]"})
        if "exceptionDetails" in found:
            _value(found)  # raises with the page's reason (a bad selector, a page going away)
        listed = found["result"]["objectId"]
        items = self.send("Runtime.getProperties", {"objectId": listed, "ownProperties": True})["result"]
        self.send("Runtime.releaseObject", {"objectId": listed})
        return [Element(self, p["value"]["objectId"]) for p in sorted(
            (p for p in items if p["name"].isdigit()), key=lambda p: int(p["name"]))]

    def get_cookies(self) -> list[Json]:
        """The cookies the browser would send to the current page (with httpOnly, sameSite...)."""
        cookies: list[Json] = self.send("Network.getCookies", {"urls": [self.current_url]})["cookies"]
        return cookies

    def add_cookie(self, cookie: Json) -> None:
        """Store a cookie for the current page's site, as if that site had set it."""
        if not self.send("Network.setCookie", {"url": self.current_url, **cookie}).get("success", True):
            raise BrowserError(f"Chromium refused the cookie {cookie['name']!r}")

    def save_screenshot(self, path: str) -> bool:
        Path(path).write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))
        return True

    def press_enter(self) -> None:
        """Enter, as the keyboard sends it to the focused element (keydown with a carriage return)."""
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", "unmodifiedText": "\r", **key})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})

    def quit(self) -> None:
        self.browser.quit()


class Element:
    """One element of the page (a handle the page keeps while it lives)."""

    def __init__(self, page: Page, handle: str) -> None:
        self.page = page
        self.handle = handle

    def call(self, function: str, *args: Any) -> Any:
        """Run the JavaScript `function` with `this` the element; its value."""
        return _value(self.page.send("Runtime.callFunctionOn", {
            "objectId": self.handle, "functionDeclaration": function, "returnByValue": True, "awaitPromise": True,
            "arguments": [{"value": arg} for arg in args]}))

    def is_displayed(self) -> bool:
        return bool(self.call("""function() {
          const box = this.getBoundingClientRect();
          return this.isConnected && box.width > 0 && box.height > 0
            && this.checkVisibility({opacityProperty: true, visibilityProperty: true}); }"""))

    def is_enabled(self) -> bool:
        return not self.call("function() { return this.matches(':disabled'); }")

    @property
    def text(self) -> str:
        """The text shown (as rendered: hidden parts left out)."""
        return str(self.call("function() { return this.innerText; }"))

    @property
    def value(self) -> str:
        return str(self.call("function() { return this.value; }"))

    def click(self) -> None:
        """A left click at the element's centre, as the mouse does it; fails if something else is there."""
        where = self.call("""function() {
          if (!this.isConnected) return "no longer on the page";
          this.scrollIntoView({block: "center", inline: "center"});
          const box = this.getBoundingClientRect(), x = box.left + box.width / 2, y = box.top + box.height / 2;
          const hit = document.elementFromPoint(x, y);
          return hit && (hit === this || this.contains(hit)) ? [x, y] : `covered by ${hit && hit.outerHTML.slice(0, 80)}`; }""")
        if isinstance(where, str):
            raise BrowserError(f"cannot click the element: {where}")
        mouse = {"x": where[0], "y": where[1], "button": "left", "clickCount": 1}
        self.page.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": where[0], "y": where[1]})
        self.page.send("Input.dispatchMouseEvent", {"type": "mousePressed", **mouse})
        self.page.send("Input.dispatchMouseEvent", {"type": "mouseReleased", **mouse})

    def clear(self) -> None:
        self.call("function() { this.value = ''; this.dispatchEvent(new Event('input', {bubbles: true})); }")

    def send_keys(self, *texts: str) -> None:
        """Type into the element (focused first); ENTER ("\\n") presses Enter."""
        if self.call("function() { if (!this.isConnected) return false; this.focus(); return true; }") is not True:
            raise BrowserError("cannot type: the element is no longer on the page")
        for n, part in enumerate("".join(texts).split(ENTER)):
            if n:
                self.page.press_enter()
            if part:
                self.page.send("Input.insertText", {"text": part})

    def select(self, value: str) -> None:
        """Choose the <option> with this value in a <select>, as picking it from the list does."""
        if not self.call("""function(value) {
          if (![...this.options].some((o) => o.value === value)) return false;
          this.value = value;
          this.dispatchEvent(new Event("input", {bubbles: true}));
          this.dispatchEvent(new Event("change", {bubbles: true}));
          return true; }""", value):
            raise BrowserError(f"no option {value!r} to choose")


def _value(result: Json) -> Any:
    """A script's value from Runtime.evaluate/callFunctionOn, or its exception as an error."""
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        reason = details.get("exception", {}).get("description") or details.get("text", "")
        if any(gone in reason for gone in _PAGE_GONE):
            raise PageChanged(reason)
        raise BrowserError(f"the script failed in the page: {reason}")
    return result["result"].get("value")


def chromium(*extra_flags: str) -> Page:
    """A new headless Chromium (its own profile: no cookies) on a blank page, its network events logged."""
    browser_or_skip()
    process = Chromium(*extra_flags)
    try:
        return process.page()
    except BaseException:
        process.quit()
        raise


@contextmanager
def browser(*extra_flags: str) -> Iterator[Page]:
    """`chromium()` for the length of a `with`; the browser always quits afterwards."""
    page = chromium(*extra_flags)
    try:
        yield page
    finally:
        page.quit()


def wait(page: Page, check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy (and return that); fail after `timeout` seconds.
    A check that ran while the page navigated is tried again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except PageChanged:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise BrowserError(f"after {timeout:.0f} s: {what or 'the page never got there'}")
        time.sleep(0.05)


def holding(page: Page, text: str, within: str = "body") -> list[str]:
    """The whole text of each element showing `text` (the innermost ones) inside the `within` CSS
    selector, read at one moment (text, not elements: a streaming reply replaces its element often)."""
    found: list[str] = page.execute_script(_HOLDING, text, within)
    return found


def wait_text(page: Page, text: str, timeout: float = 30.0, within: str = "body") -> str:
    """The text of the first element showing `text`, once there is one."""
    return wait(page, lambda: next(iter(holding(page, text, within)), None), timeout, f"no {text!r} in {within}")


def wait_gone(page: Page, text: str, timeout: float = 30.0, within: str = "body") -> None:
    wait(page, lambda: not holding(page, text, within), timeout, f"{text!r} is still in {within}")


def wait_element(page: Page, css: str, timeout: float = 30.0, *, visible: bool = True) -> Element:
    """The first element matching the CSS selector, once there is one (and it is shown, if `visible`)."""

    def found() -> Element | None:
        for element in page.find_elements(css):
            if not visible or element.is_displayed():
                return element
        return None

    return wait(page, found, timeout, f"no {'visible ' if visible else ''}{css!r} on the page")


def click_button(page: Page, label: str, timeout: float = 30.0) -> None:
    """Click the first shown, enabled button whose label is `label` (as a person would find it)."""

    def ready() -> Element | None:
        for button in page.find_elements("button"):
            if button.text.strip() == label and button.is_displayed() and button.is_enabled():
                return button
        return None

    wait(page, ready, timeout, f"no enabled button {label!r}").click()


def say(page: Page, text: str, css: str = "textarea") -> None:
    """Type `text` into the box and press Enter (the page sends on Enter)."""
    box = wait_element(page, css, PAGE_TIMEOUT)
    box.clear()
    box.send_keys(text, ENTER)


def open_chat(url: str, text: str) -> Page:
    """A new browser on the chat page at `url` with `text` sent (the caller quits it)."""
    page = chromium()
    try:
        page.get(url)
        say(page, text)
    except BaseException:
        page.quit()
        raise
    return page


def network(page: Page) -> list[Json]:
    """The DevTools Network events since the last call (reading drains them)."""
    with page.events_lock:
        events, page.events = page.events, []
    return events


def requested(events: list[Json]) -> list[str]:
    """Every URL the page asked for in `events`: documents, scripts, images, fetches and websockets."""
    urls = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    return urls + [e["params"]["url"] for e in events if e["method"] == "Network.webSocketCreated"]


def status_of(events: list[Json], url: str) -> int:
    """The HTTP status the page at `url` was served with (its last response among `events`)."""
    statuses = [e["params"]["response"]["status"] for e in events
                if e["method"] == "Network.responseReceived" and e["params"]["response"]["url"] == url]
    assert statuses, f"no response for {url} among {requested(events)}"
    return int(statuses[-1])


def goto(page: Page, url: str) -> int:
    """Open `url` and return the status it was served with (earlier network events are dropped)."""
    network(page)
    page.get(url)
    return status_of(network(page), url)
