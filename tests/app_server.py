"""The app served on a free localhost port, and a headless Chromium to drive it: for the browser
test (``tests/test_browser.py``) and the benchmark that measures pages as a user meets them
(``bench/scale.py``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(store: Path, log: Path, script: str = "app/main.py",
              ready_line: str | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``streamlit run app/main.py`` (or another ``script`` of the repository) on the store
    ``store``: yields ``(url, server process)`` once healthy and, with ``ready_line``, once its
    log holds a line starting so; stopped afterwards."""
    port = free_port()
    env = {**os.environ, "STG_STORE": str(store), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited with status {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    healthy = response.read().decode().strip() == "ok"
            except OSError:
                healthy = False
            if healthy and (ready_line is None or any(line.startswith(ready_line)
                                                      for line in log.read_text(errors="replace").splitlines())):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit not ready after 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def chromium() -> str | None:
    """Chromium's executable: env ``STG_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on
    the PATH, else Debian's ``/usr/bin/chromium``; None when there is none."""
    wanted = os.environ.get("STG_CHROMIUM")
    if wanted:
        return shutil.which(wanted)
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@contextmanager
def headless_browser() -> Iterator:
    """A Playwright ``Browser`` on headless Chromium (no Playwright browser download)."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    if executable is None:
        raise RuntimeError("no Chromium executable found (apt-get install chromium, or set STG_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield browser
        finally:
            browser.close()
