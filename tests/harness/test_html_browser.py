"""The HTML matrix page in a real browser (Debian's chromium, headless).

Drives the page over the DevTools protocol (``--remote-debugging-pipe``, stdlib only):
moves the mouse onto a cell (the tooltip shows its details), clicks it (the details panel
pins them), reads the cell's status and details, and saves a screenshot in the test's tmpdir.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.features import feature_by_name
from harness.matrix import build_matrix
from harness.render import render_html
from harness.requirements import requirement_rows

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]


class PipeBrowser:
    """A minimal DevTools client over chromium's --remote-debugging-pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # runs in the child: commands on fd 3, replies on fd 4
            cmd_in, reply_out = os.dup(to_child_r), os.dup(from_child_w)  # never clobber one with the other
            os.dup2(cmd_in, 3)
            os.dup2(reply_out, 4)

        self.proc = subprocess.Popen(  # fds 3/4 are kept open: close_fds runs after preexec_fn
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4, to_child_r, from_child_w), preexec_fn=wire,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.session: str | None = None

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            chunk = os.read(self._from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raise TimeoutError(method)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for _ in range(100):
            # the new target starts on about:blank: wait for *our* document to finish loading
            if self.evaluate(f"location.href === {json.dumps(url)} && document.readyState === 'complete'"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{url} did not load")

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_child)
        os.close(self._from_child)


@pytest.fixture()
def browser(tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (nox -s browser installs it)")
    b = PipeBrowser(binary, tmp_path / "profile")
    yield b
    b.close()


def test_cell_status_and_details_on_hover_and_click(browser, pypi_scans, tmp_path):
    rows = requirement_rows([], [feature_by_name("mtp"), feature_by_name("moe"), feature_by_name("attention_backend")])
    page = tmp_path / "matrix.html"
    page.write_text(render_html(build_matrix(list(pypi_scans.values()), rows)))
    browser.open(page.as_uri())

    selector = 'td.cell[data-row="mtp"][data-revision="pypi:0.11.0"]'
    cell = browser.evaluate(f"""(() => {{ const td = document.querySelector('{selector}');
        td.scrollIntoView({{block: 'center', inline: 'center'}}); const r = td.getBoundingClientRect();
        return {{x: r.x + r.width / 2, y: r.y + r.height / 2, status: td.dataset.status,
                 details: td.dataset.details, colour: getComputedStyle(td).backgroundColor}}; }})()""")
    assert cell["status"] == "missing" and "missing: field:mtp_num_layers" in cell["details"]
    assert cell["colour"] == "rgb(200, 55, 59)"  # the "missing" red

    browser.mouse("mouseMoved", cell["x"], cell["y"])
    tip = browser.evaluate("(() => { const t = document.getElementById('tip');"
                           " return {shown: getComputedStyle(t).display, text: t.textContent}; })()")
    assert tip == {"shown": "block", "text": cell["details"]}

    browser.mouse("mousePressed", cell["x"], cell["y"])
    browser.mouse("mouseReleased", cell["x"], cell["y"])
    panel = browser.evaluate("(() => { const d = document.getElementById('details');"
                             " return {text: d.textContent, status: d.dataset.status, row: d.dataset.row}; })()")
    assert panel == {"text": cell["details"], "status": "missing", "row": "mtp"}
    assert browser.evaluate(f"document.querySelector('{selector}').classList.contains('selected')")

    shot = tmp_path / "matrix.png"
    shot.write_bytes(base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"})["data"]))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
