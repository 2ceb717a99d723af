"""The pages' websockets are compressed (permessage-deflate) unless the server is told not to.

A real Chromium opens a dashboard page on the real dashboard server (the hub on
the in-memory acquisition: what is checked is the websocket, not Tango); the
websocket's handshake response, seen through the Chrome DevTools Protocol,
says whether the server accepted Chromium's offer of permessage-deflate. Data
pushed into the hub must reach the page (the server's compressed messages are
understood) and the page's acknowledgements must reach the server (its
compressed messages are understood too), as the pacing needs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tango_bokeh.cli import main
from tango_bokeh.dashboard.loader import parse
from tango_bokeh.dashboard.server import DashboardServer, ServeOptions, Serving
from tango_bokeh.hub import Hub

from .browser import HAVE_CHROMIUM, chromium
from .conftest import wait_for
from .facility import Nginx
from .facility import missing as facility_missing
from .served import free_port

pytestmark = [pytest.mark.browser]

if not HAVE_CHROMIUM:  # pragma: no cover - .ci/run installs it
    pytest.skip("needs Chromium (/usr/bin/chromium)", allow_module_level=True)

ATTRIBUTE = "test/deflate/1/value"
PAGE = f"""
title: Deflate
refresh: 0.25 s
panels:
  - trend: {{title: Value, attributes: [{ATTRIBUTE}]}}
"""
NEWEST = """() => {
  const plot = [...Bokeh.documents[0].all_models].find(
    m => m.type === 'Figure' && m.title && m.title.text.startsWith('Value'));
  const y = plot.renderers.filter(r => r.data_source && r.data_source.data.q)
    .flatMap(r => Array.from(r.data_source.data.y));
  return y.length ? y[y.length - 1] : null;
}"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def _open(
    hub: Hub, browser: Any, level: int, where: Path | None = None
) -> tuple[str | None, float, int]:
    """Serve the page with ``level`` (behind nginx with ``where``, its directory), open it,
    push a value: the handshake's ``Sec-WebSocket-Extensions`` (None: absent), the value
    the page shows, and the acknowledgements the server had from the page."""
    hub.acquisition.configure(ATTRIBUTE, unit="mm")
    server = DashboardServer([parse(PAGE, "deflate.yaml")], hub=hub)
    nginx_port = free_port()
    options = ServeOptions(
        port=0,
        websocket_compression=level,
        allow_websocket_origin=[f"127.0.0.1:{nginx_port}"] if where else (),
    )
    running = Serving(server, options).start_thread()
    nginx = None
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    responses: list[dict[str, str]] = []
    try:
        url = running.url
        if where is not None:
            nginx = Nginx(where, [f"127.0.0.1:{running.port}"], nginx_port).start()
            url = nginx.url
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.on(
            "Network.webSocketHandshakeResponseReceived",
            lambda event: responses.append(
                {k.lower(): v for k, v in event["response"]["headers"].items()}
            ),
        )
        page.goto(f"{url}/deflate")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
        wait_for(lambda: responses, timeout=30, what="the websocket's handshake response")
        (session,) = server.sessions()
        value = 1234.5 + level
        pushed = time.time()

        def shown() -> object:
            if time.time() - pushed > 0.5:  # again, in case the first one came before the page
                hub.acquisition.push(ATTRIBUTE, value)
            return page.evaluate(NEWEST) == value

        hub.acquisition.push(ATTRIBUTE, value)
        wait_for(shown, timeout=60, interval=0.25, what="the pushed value on the page")
        wait_for(lambda: session.pace.clock.seen > 0, timeout=60, what="an acknowledgement")
        return responses[0].get("sec-websocket-extensions"), value, session.pace.clock.seen
    finally:
        page.close()
        if nginx is not None:
            nginx.stop()
        running.stop()
        running.join()


def test_websockets_are_deflated_by_default(fake_hub: Hub, browser: Any) -> None:
    assert ServeOptions().websocket_compression == 1
    extensions, _, acknowledged = _open(fake_hub, browser, ServeOptions().websocket_compression)
    assert extensions is not None and extensions.startswith("permessage-deflate")
    assert acknowledged > 0


def test_compression_0_turns_it_off(fake_hub: Hub, browser: Any) -> None:
    extensions, _, acknowledged = _open(fake_hub, browser, 0)
    assert extensions is None
    assert acknowledged > 0


def test_nginx_passes_it_through(fake_hub: Hub, browser: Any, tmp_path: Path) -> None:
    """docker/nginx's template (tests/facility.py runs it) needs nothing for it: nginx
    forwards the offer and the answer, then the frames as they are."""
    if missing := [name for name in facility_missing() if name == "nginx"]:
        pytest.skip(f"needs {missing}")
    extensions, _, acknowledged = _open(fake_hub, browser, 1, tmp_path / "nginx")
    assert extensions is not None and extensions.startswith("permessage-deflate")
    assert acknowledged > 0


def test_the_command_line_option() -> None:
    runner = CliRunner()
    shown = runner.invoke(main, ["serve", "--help"])
    assert "--websocket-compression LEVEL" in shown.output
    refused = runner.invoke(main, ["serve", "x.yaml", "--websocket-compression", "10"])
    assert refused.exit_code == 2 and "websocket-compression" in refused.output
