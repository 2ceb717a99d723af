"""Headless Chromium as the browser tests launch it (Debian's package; no download)."""

from __future__ import annotations

from pathlib import Path

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
