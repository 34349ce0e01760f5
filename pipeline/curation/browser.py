"""Headless Chromium for the sheet tests and the benchmark (Playwright driving the system's Chromium).

The flags keep Chromium off the network: without them it keeps trying to reach update and sync services.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--mute-audio"]


def chromium_path() -> str | None:
    """GEOPIXELD_CHROMIUM, else Debian's /usr/bin/chromium, else `chromium` or `chromium-browser` on PATH."""
    env = os.environ.get("GEOPIXELD_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def launch(playwright):
    """A headless Chromium browser from a started `sync_playwright()`."""
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("Chromium not found (install Debian's `chromium`, or set GEOPIXELD_CHROMIUM)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
