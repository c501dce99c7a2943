"""Drive a real headless Chromium over the DevTools protocol, with the standard library only.

Chromium's ``--remote-debugging-pipe`` speaks the DevTools protocol over two inherited file
descriptors (it reads commands on fd 3 and writes replies and events on fd 4, each message a JSON
object ended by a NUL byte), so no websocket library and no debugging port are needed.
Protocol reference: https://chromedevtools.github.io/devtools-protocol/ (Target, Page, Runtime,
Log, Network, Emulation domains).

    with Browser() as browser:
        page = browser.open(Path("index.html"), width=1280, height=900)
        page.problems()            # console errors, uncaught exceptions, network requests
        page.evaluate("document.title")
        png = page.screenshot()    # bytes of a full-page PNG
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
LOCAL_SCHEMES = ("file:", "data:", "about:", "blob:")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process; ``open`` gives a fresh tab that records console and network events."""

    def __init__(self, binary: str | None = None, timeout: float = 60.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no Chromium found: apt-get install chromium")
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []

    def __enter__(self) -> "Browser":
        self._profile = tempfile.TemporaryDirectory(prefix="edgehad-chromium-")
        commands_r, commands_w = os.pipe()   # we write, Chromium reads on its fd 3
        replies_r, replies_w = os.pipe()     # Chromium writes on its fd 4, we read
        # posix_spawn, not subprocess's fork + preexec_fn: the test process runs threads (torch, JAX),
        # and forking those is unsafe. Its dup2 actions put the pipe ends on fds 3 and 4; the sources are
        # first moved to fds >= 5 (close-on-exec) so that no action overwrites the source of a later one.
        child_r = fcntl.fcntl(commands_r, fcntl.F_DUPFD_CLOEXEC, 5)
        child_w = fcntl.fcntl(replies_w, fcntl.F_DUPFD_CLOEXEC, 5)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        args = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--mute-audio", "--hide-scrollbars", "about:blank"]
        try:
            self.pid = os.posix_spawn(self.binary, args, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2), (os.POSIX_SPAWN_DUP2, child_r, 3),
                (os.POSIX_SPAWN_DUP2, child_w, 4)])
        finally:
            for fd in (commands_r, replies_w, child_r, child_w, devnull):
                os.close(fd)
        self._out, self._in = commands_w, replies_r
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # already gone or not answering: fall through to terminate
            pass
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                os.kill(self.pid, sig)
            if self._reaped(timeout=10):
                break
        for fd in (self._out, self._in):
            os.close(fd)
        self._profile.cleanup()

    def _reaped(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for our Chromium to exit; True once it has (and was reaped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return True
            time.sleep(0.05)
        return False

    def returncode(self) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already
            return None
        return os.waitstatus_to_exitcode(status) if pid == self.pid else None

    # -- the wire ---------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its ``result``; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == self._next_id, timeout)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None) -> dict:
        for i, event in enumerate(self._events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self._events[i]
        return self._wait(lambda m: m.get("method") == method and m.get("sessionId") == session, timeout)

    def _wait(self, wanted, timeout: float | None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" not in message:
                    self._events.append(message)
                if wanted(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the DevTools pipe (exit code {self.returncode()})")
                self._buffer += chunk

    def events(self, session: str) -> list[dict]:
        return [e for e in self._events if e.get("sessionId") == session]

    # -- pages -----------------------------------------------------------------------------------
    def open(self, path: Path, width: int = 1280, height: int = 900) -> "Page":
        """Load ``path`` in a new tab of ``width`` x ``height`` CSS pixels and wait for its load event."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self._events = [e for e in self._events if e.get("sessionId") != session]  # about:blank's own events
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        self.wait_event("Page.loadEventFired", session=session)
        page = Page(self, session, width, height)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # painted once
        return page


class Page:
    def __init__(self, browser: Browser, session: str, width: int, height: int):
        self.browser, self.session, self.width, self.height = browser, session, width, height

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited if a promise), or BrowserError if it threw."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, log errors, and every non-local request."""
        found = []
        for e in self.browser.events(self.session):
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                 for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                found.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                found.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if not url.startswith(LOCAL_SCHEMES):
                    found.append(f"network request: {url}")
            elif method == "Network.loadingFailed":
                found.append(f"failed load: {p.get('errorText')} ({p.get('type')})")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.browser.events(self.session)
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self) -> bytes:
        """A PNG of the whole page (taller than the window if the page is)."""
        metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = max(self.height, int(size["height"] + 0.5))
        self.browser.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height,
                                                                 "deviceScaleFactor": 1, "mobile": False},
                          session=self.session)
        shot = self.browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 session=self.session)
        self.browser.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                                 "deviceScaleFactor": 1, "mobile": False},
                          session=self.session)
        return base64.b64decode(shot["data"])
