"""Routine bokeh warnings are DEBUG: a page gone between two ticks writes nothing red."""

from __future__ import annotations

import logging

from tango_bokeh.logs import lower_routine_warnings

WS = "bokeh.server.views.ws"


def test_a_send_to_a_closed_page_is_debug_and_other_warnings_stay(caplog):
    lower_routine_warnings()
    lower_routine_warnings()  # idempotent
    assert len(logging.getLogger(WS).filters) >= 1
    with caplog.at_level(logging.INFO):
        logging.getLogger(WS).warning("Failed sending message as connection was closed")
        logging.getLogger(WS).warning("Refusing websocket connection from Origin 'x'")
    assert [r.getMessage() for r in caplog.records] == [
        "Refusing websocket connection from Origin 'x'"
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=WS):
        logging.getLogger(WS).warning("Failed sending message as connection was closed")
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
