"""Headless Chromium as the browser tests launch it (Debian's package; no download)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
#: Without the networking flags Chromium keeps trying to reach hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HAVE_CHROMIUM = Path(CHROMIUM).exists()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium through Playwright, closed on exit (skips when not installed)."""
    if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
        pytest.skip(f"needs Chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
