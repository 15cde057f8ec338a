"""Render a campaign's report.html to PNG, to look at it as a person would.

Headless Chromium (Debian's ``chromium`` package: ``apt-get install chromium``) loads the
page and takes a screenshot of the whole page, however tall, through the Chrome DevTools
protocol over a pipe (``--remote-debugging-pipe``), so nothing listens on a port and only
the standard library is needed::

    python benchmarks/render_report.py runs/<run id>/report.html report.png
    python benchmarks/render_report.py report.html report.png --width 1280 --slices 1000

``--slices H`` also writes the page cut into parts of height ``H`` pixels
(``report-1.png``, ``report-2.png`` …), each one screen of a tall page; ``--width`` is
the width of the browser window in CSS pixels. The report is self-contained, so the
page loads without a network; the browser runs without its sandbox (as root in a
container it refuses to start otherwise) and with a throw-away profile.

Chromium talks over file descriptors 3 (commands in) and 4 (replies out), one JSON message
each, ended by a NUL byte. A command to the page goes with the ``sessionId`` of the tab it
is attached to.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Browser executables tried in order when --browser is not given.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class RenderError(RuntimeError):
    """The browser is missing, stopped, or did not render the page in time."""


class DevToolsPipe:
    """One headless browser, driven through the DevTools protocol over a pipe.

    Use as a context manager: the browser starts on enter and is closed on exit.
    """

    def __init__(self, browser: str, timeout_s: float) -> None:
        self.browser = browser
        self.timeout_s = timeout_s
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> DevToolsPipe:
        self._profile = tempfile.TemporaryDirectory(prefix="render-report-")
        # Chromium reads commands from fd 3 and writes replies to fd 4. The pipe ends are
        # first moved above 4, so that putting them in place cannot overwrite each other.
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()
        child_in = _high_fd(to_browser_read)
        child_out = _high_fd(from_browser_write)

        def place_pipes() -> None:
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)
            os.close(child_in)
            os.close(child_out)

        command = [
            self.browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=place_pipes,
        )
        for fd in (to_browser_read, from_browser_write, child_in, child_out):
            os.close(fd)
        self._write = os.fdopen(to_browser_write, "wb", buffering=0)
        self._read_fd = from_browser_read
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.send("Browser.close")
        except (RenderError, OSError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._write.close()
        os.close(self._read_fd)
        self._profile.cleanup()

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept.

        Raises
        ------
        RenderError
            If the browser answers with an error, stops, or does not answer in time.
        """
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._write.write(json.dumps(message).encode() + b"\0")
        reply = self._wait_for(lambda m: m.get("id") == self._next_id, method)
        if "error" in reply:
            raise RenderError(f"{method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        """Wait for the next event named ``method`` (or take one that already arrived)."""
        for i, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(i)
        return self._wait_for(lambda m: m.get("method") == method, method)

    def _wait_for(self, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return message
                if "method" in message:
                    self._events.append(message)
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self._read_fd], [], [], max(remaining, 0))
            if not readable:
                raise RenderError(f"no answer to {what} within {self.timeout_s:.0f} s")
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise RenderError(f"the browser stopped while waiting for {what}")
            self._buffer += chunk


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 5 or above (inheritable by the browser)."""
    import fcntl

    duplicate = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
    os.set_inheritable(duplicate, True)
    return duplicate


def find_browser(name: str | None) -> str:
    """The path of the browser to run: ``name`` if given, else the first of :data:`BROWSERS`.

    Raises
    ------
    RenderError
        If no such executable is on the PATH.
    """
    for candidate in [name] if name else BROWSERS:
        found = shutil.which(candidate)
        if found:
            return found
    wanted = name or " or ".join(BROWSERS)
    raise RenderError(f"no browser found ({wanted}); on Debian: apt-get install chromium")


def render(
    page: Path,
    output: Path,
    width: int = 1280,
    slice_height: int | None = None,
    browser: str | None = None,
    timeout_s: float = 60.0,
) -> list[Path]:
    """Screenshot the whole of an HTML page, and optionally its screen-sized slices.

    Parameters
    ----------
    page
        The HTML file (a self-contained report).
    output
        The PNG of the full page; slices are written beside it as ``<stem>-<n>.png``.
    width
        Browser window width in CSS pixels.
    slice_height
        Height of each slice in CSS pixels; no slices when None.
    browser
        Browser executable; default the first of :data:`BROWSERS` on the PATH.
    timeout_s
        Longest wait for any one answer of the browser.

    Returns
    -------
    list of Path
        The full-page PNG, then the slices in page order.

    Raises
    ------
    RenderError
        If the page is missing, or the browser is missing, fails or times out.
    """
    page = Path(page).resolve()
    if not page.is_file():
        raise RenderError(f"no such page: {page}")
    output.parent.mkdir(parents=True, exist_ok=True)
    with DevToolsPipe(find_browser(browser), timeout_s) as tools:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        tools.send("Page.enable", session)
        tools.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=800,
            deviceScaleFactor=1,
            mobile=False,
        )
        tools.send("Page.navigate", session, url=page.as_uri())
        tools.wait_event("Page.loadEventFired")
        size = tools.send("Page.getLayoutMetrics", session)["cssContentSize"]
        height = math.ceil(size["height"])
        page_width = max(width, math.ceil(size["width"]))

        def shoot(path: Path, top: int, bottom: int) -> Path:
            clip = {"x": 0, "y": top, "width": page_width, "height": bottom - top, "scale": 1}
            shot = tools.send(
                "Page.captureScreenshot",
                session,
                format="png",
                clip=clip,
                captureBeyondViewport=True,
            )
            path.write_bytes(base64.b64decode(shot["data"]))
            return path

        written = [shoot(output, 0, height)]
        if slice_height:
            for n, top in enumerate(range(0, height, slice_height), start=1):
                part = output.with_name(f"{output.stem}-{n}{output.suffix}")
                written.append(shoot(part, top, min(top + slice_height, height)))
    return written


def main(argv: list[str] | None = None) -> int:
    """Render the page named on the command line; print the PNGs written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the HTML file, e.g. runs/<run id>/report.html")
    parser.add_argument("output", type=Path, help="the PNG to write (the whole page)")
    parser.add_argument("--width", type=int, default=1280, help="window width (CSS pixels)")
    parser.add_argument(
        "--slices", type=int, default=None, metavar="H", help="also write slices H pixels high"
    )
    parser.add_argument("--browser", default=None, help="browser executable (default chromium)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per browser answer")
    args = parser.parse_args(argv)
    try:
        written = render(
            args.page, args.output, args.width, args.slices, args.browser, args.timeout
        )
    except RenderError as exc:
        print(f"render_report: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
