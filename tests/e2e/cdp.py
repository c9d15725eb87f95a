"""A minimal Chrome DevTools Protocol client: headless Chromium driven over one websocket.

Why not Playwright: it downloads its own browser build. Why not Selenium: it needs
a chromedriver whose version matches the browser (and Selenium Manager tries to
download one when it is not found). CDP is spoken by the ``chromium`` binary
itself, so the only moving part is the browser: start it with
``--remote-debugging-port=0``, read the port it chose from ``DevToolsActivePort``
in its profile directory, and send JSON commands over a websocket.

Every wait here waits for a condition (evaluated in the page) with a bounded
timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserMissingError(RuntimeError):
    pass


class PageError(AssertionError):
    """A script raised in the page, or a condition did not hold in time."""


def find_chromium() -> str:
    """The Chromium binary: ``$SURESTEP_CHROMIUM``, else the first of :data:`CANDIDATES` on PATH."""
    explicit = os.environ.get("SURESTEP_CHROMIUM")
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise BrowserMissingError(f"SURESTEP_CHROMIUM={explicit!r} is not an executable")
        return found
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissingError(
        "headless Chromium is needed for the dashboard tests and none was found on PATH: "
        "install Debian's package (apt-get install -y chromium), point SURESTEP_CHROMIUM at a "
        "binary, or set SURESTEP_SKIP_BROWSER=1 to skip these tests"
    )


class Browser:
    """One headless Chromium process and one page (tab) in it."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 860) -> None:
        self.binary = binary or find_chromium()
        self.profile = tempfile.mkdtemp(prefix="surestep-chromium-")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--headless=new",
                "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-color-profile=srgb",
                f"--window-size={width},{height}",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._ids = itertools.count(1)
        self._stack = contextlib.ExitStack()
        self._events: list[dict[str, Any]] = []
        self.console: list[str] = []
        try:
            # Entered as a context manager, as websockets wants, and left in close().
            self.ws: ClientConnection = self._stack.enter_context(
                connect(self._websocket_url(), max_size=None, open_timeout=30)
            )
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            self.page("Page.enable")
            self.page("Runtime.enable")
            self.page(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
        except BaseException:
            self.close()
            raise

    def _websocket_url(self, timeout: float = 30.0) -> str:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise BrowserMissingError(
                    f"{self.binary} exited with {self.process.returncode}: {err[-800:]}"
                )
            try:
                port, path = marker.read_text().split("\n")[:2]
            except (FileNotFoundError, ValueError):
                # Chromium writes the file once it listens; wait on the process, bounded.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.05)
                continue
            return f"ws://127.0.0.1:{port.strip()}{path.strip()}"
        raise BrowserMissingError(
            f"{self.binary} did not open its DevTools port within {timeout:.0f}s"
        )

    # -- protocol

    def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise PageError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._event(reply)

    def page(self, method: str, **params: Any) -> Any:
        return self.call(method, session=self.session, **params)

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("method") == "Runtime.consoleAPICalled":
            args = event["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif event.get("method") == "Runtime.exceptionThrown":
            details = event["params"].get("exceptionDetails", {})
            self.console.append(
                "exception: "
                + str(details.get("exception", {}).get("description") or details.get("text"))
            )

    # -- what a test uses

    def goto(self, url: str) -> None:
        """Load ``url`` as a new document (through about:blank, so a URL that differs
        only in its #fragment still loads the page afresh)."""
        self.page("Page.navigate", url="about:blank")
        self.wait_for("location.href === 'about:blank' && document.readyState === 'complete'")
        self.page("Page.navigate", url=url)
        self.wait_for("location.protocol !== 'about:' && document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` in the page (promises awaited)."""
        result = self.page(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise PageError(f"{text}\n  while evaluating: {expression}")
        return result.get("result", {}).get("value")

    def wait_for(self, condition: str, timeout: float = 15.0) -> Any:
        """Wait (in the page, re-checking every 50 ms) until ``condition`` is truthy; its value."""
        script = f"""new Promise((resolve, reject) => {{
            const start = Date.now();
            const check = () => {{
                let value, error;
                try {{ value = ({condition}); }} catch (e) {{ error = e; }}
                if (value) return resolve(value);
                if (Date.now() - start > {timeout * 1000:.0f})
                    return reject(new Error("condition did not hold in {timeout}s: "
                        + {json.dumps(condition)} + (error ? " (" + error + ")" : "")));
                setTimeout(check, 50);
            }};
            check();
        }})"""
        return self.evaluate(script)

    def text(self, selector: str) -> str:
        return str(
            self.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''")
        )

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element (scrolled into view first), as a
        person clicks: once the element has stayed where it is for one re-check (a page
        still laying out, a section loaded above it, would move it under the pointer) and
        is what the pointer is over."""
        box = self.wait_for(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return null;
                el.scrollIntoView({{block: "center"}});
                const r = el.getBoundingClientRect();
                const here = r.width && r.height ? [r.x, r.y, r.width, r.height].join() : null;
                const before = window.__surestepClickAt;
                window.__surestepClickAt = here;
                if (!here || here !== before) return null;
                const point = {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
                const hit = document.elementFromPoint(point.x, point.y);
                return hit && (hit === el || el.contains(hit)) ? point : null;
            }})()"""
        )
        self.evaluate("window.__surestepClickAt = null")
        for kind in ("mousePressed", "mouseReleased"):
            self.page(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box["x"],
                y=box["y"],
                button="left",
                clickCount=1,
            )

    def type(self, selector: str, text: str) -> None:
        """Focus the element, clear it, and type ``text`` as keyboard input."""
        self.click(selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).select?.()")
        self.page("Input.insertText", text=text)

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.page("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": size["height"],
                "scale": 1,
            }
        data = self.page("Page.captureScreenshot", **params)["data"]
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
        return target

    def close(self) -> None:
        try:
            if hasattr(self, "ws"):
                with contextlib.suppress(Exception):
                    self.call("Browser.close")
            self._stack.close()
        finally:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
