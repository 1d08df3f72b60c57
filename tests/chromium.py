"""A page opened in headless Chromium over the DevTools protocol (CDP), for the tests that need a real browser.

    with Chromium.launch(tmp_path) as browser:
        page = browser.open(Path("report.html"), width=1280)
        page.evaluate("document.title"), page.errors

Chromium is Debian's package (`apt-get install -y chromium`), found on PATH. The protocol is spoken over
`websockets`, which Prefect already brings: no browser download and no driver whose version has to match
the browser's. `errors` holds everything the page reported as an error: console.error and failed
console.assert calls, uncaught exceptions and rejected promises, and the browser's own log entries of
level error (a script or file that failed to load, a refused request).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

INSTALL_HINT = "Chromium is not installed (no `chromium` on PATH); install Debian's package: " \
               "apt-get install -y chromium"
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")
TIMEOUT = 60.0


class BrowserError(RuntimeError):
    """Chromium could not start, or a DevTools command failed or timed out."""


@dataclass
class Page:
    """One tab, sized to `width` CSS pixels, with what it logged as an error since it opened."""

    browser: Chromium
    session_id: str
    errors: list[str] = field(default_factory=list)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited when it is a promise), as JSON turns it into Python."""
        result = self.browser.run(self.browser.command(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session_id=self.session_id,
        ))
        if "exceptionDetails" in result:
            raise BrowserError(f"the page's script failed: {json.dumps(result['exceptionDetails'])[:2000]}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll `expression` in the page until it is truthy; its last value (falsy when the time ran out)."""
        poll = f"new Promise(done => {{ const end = Date.now() + {timeout * 1000}; (function again() {{ " \
               f"const value = ({expression}); if (value || Date.now() > end) done(value); " \
               "else setTimeout(again, 50); })(); })"
        return self.evaluate(poll)


class Chromium:
    """A headless Chromium process and one DevTools connection to it, on a private event loop."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.pages: dict[str, Page] = {}
        self.loads: dict[str, asyncio.Event] = {}
        self.socket: ClientConnection = self.run(connect(url, max_size=None, open_timeout=TIMEOUT))
        self.reader = self.loop.create_task(self._read())

    @classmethod
    @contextmanager
    def launch(cls, profile: Path) -> Iterator[Chromium]:
        """Start Chromium with a fresh profile in `profile`; AssertionError with the install hint when missing."""
        executable = shutil.which("chromium")
        assert executable, INSTALL_HINT
        process = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            url = cls._devtools_url(process)
            browser = cls(process, url)
            try:
                yield browser
            finally:
                browser.close()
        finally:
            process.kill()
            process.wait(timeout=TIMEOUT)
            if process.stderr:
                process.stderr.close()

    @staticmethod
    def _devtools_url(process: subprocess.Popen[str]) -> str:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:  # Chromium names its DevTools address on stderr once it listens
            if found := LISTENING.search(line):
                return found[1]
            seen.append(line)
        raise BrowserError("Chromium exited before it listened for DevTools:\n" + "".join(seen[-20:]))

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, TIMEOUT))

    async def command(self, method: str, params: dict[str, Any] | None = None, *,
                      session_id: str | None = None) -> dict[str, Any]:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        reply = self.pending[message_id] = self.loop.create_future()
        await self.socket.send(json.dumps(message))
        return await reply

    async def _read(self) -> None:
        async for raw in self.socket:
            message = json.loads(raw)
            if "id" in message:
                reply = self.pending.pop(message["id"])
                if "error" in message:
                    reply.set_exception(BrowserError(f"DevTools: {message['error']}"))
                else:
                    reply.set_result(message.get("result", {}))
            elif (page := self.pages.get(message.get("sessionId", ""))) is not None:
                self._event(page, message["method"], message.get("params", {}))

    def _event(self, page: Page, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            page.errors.append("console." + params["type"] + ": " + " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            page.errors.append("uncaught: " + str(details.get("exception", {}).get("description", details["text"])))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            page.errors.append(f"browser log ({params['entry']['source']}): {params['entry']['text']}")
        elif method == "Page.loadEventFired":
            self.loads[page.session_id].set()

    def open(self, path: Path, *, width: int, height: int = 900) -> Page:
        """Open a local file in a new tab `width` CSS pixels wide and wait for its load event."""
        return self.run(self._open(path, width, height))  # type: ignore[no-any-return]

    async def _open(self, path: Path, width: int, height: int) -> Page:
        target = await self.command("Target.createTarget", {"url": "about:blank"})
        attached = await self.command("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = self.pages[attached["sessionId"]] = Page(self, attached["sessionId"])
        loaded = self.loads[page.session_id] = asyncio.Event()
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            await self.command(method, session_id=page.session_id)
        await self.command("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                           session_id=page.session_id)
        loaded.clear()  # about:blank may have loaded already
        await self.command("Page.navigate", {"url": path.resolve().as_uri()}, session_id=page.session_id)
        await loaded.wait()
        return page

    def close(self) -> None:
        self.reader.cancel()
        try:
            self.run(self.socket.close())
        finally:
            self.loop.run_until_complete(asyncio.gather(self.reader, return_exceptions=True))
            self.loop.close()
