"""Drive headless Chromium from a test: a static server on 127.0.0.1 and the DevTools protocol over a pipe.

``--remote-debugging-pipe`` makes Chromium read protocol messages (JSON, each ending in NUL) from fd 3 and write
them to fd 4, so no websocket client and no debugging port are needed. Every wait is bounded.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def log_message(self, *args):
        pass


@contextmanager
def static_server(root: Path):
    """Serve ``root`` on 127.0.0.1 at a free port (bound by the OS); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class Chromium:
    """One headless Chromium with one page, driven by DevTools protocol commands (``call``)."""

    def __init__(self, executable: str, width: int = 1200, height: int = 900, timeout: float = 60.0):
        self.timeout, self._id, self._buf = timeout, 0, b""
        self._profile = tempfile.mkdtemp(prefix="tinygan-chromium-")
        to_child, self._write = os.pipe()  # we write commands, chromium reads them on fd 3
        self._read, from_child = os.pipe()  # chromium writes replies on fd 4

        def fds():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        to_child, from_child = _high(to_child), _high(from_child)  # so that dup2 onto 3, 4 clobbers neither
        args = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                "--remote-debugging-pipe", f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
                "about:blank"]
        # close_fds=False: fds 3 and 4 (dup2 clears close-on-exec) must survive; all others are close-on-exec
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("no reply from Chromium in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe (crashed or exited)")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str):
        """The value of ``expression`` (awaited if a promise); RuntimeError with the page's message if it throws."""
        r = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(d.get("exception", {}).get("description") or d.get("text"))
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None):
        """Poll ``expression`` until it is truthy (bounded); returns its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise TimeoutError(f"page: {expression!r} still false after {timeout or self.timeout:.0f} s")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._write)
        os.close(self._read)
        shutil.rmtree(self._profile, ignore_errors=True)


def _high(fd: int) -> int:
    """``fd`` moved to a number above 4, so that dup2 onto 3 and 4 in the child cannot clobber it."""
    if fd > 4:
        return fd
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new
