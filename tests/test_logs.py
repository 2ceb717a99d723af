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


class _Session:
    def subscribe(self, connection):
        pass

    def unsubscribe(self, connection):
        pass


def test_a_late_message_of_a_closed_page_is_debug_not_an_error_traceback(caplog):
    """bokeh asserts its connection still has a session; a message handled after the page
    closed fails that assertion. The real assertion, raised by bokeh's own code, is logged as
    bokeh's websocket handler logs it: DEBUG. Any other AssertionError stays an ERROR."""
    from bokeh.server.connection import ServerConnection

    lower_routine_warnings()
    connection = ServerConnection(None, None, None, _Session())
    connection.detach_session()
    ws = logging.getLogger(WS)
    with caplog.at_level(logging.INFO):
        try:
            connection.session  # noqa: B018 - what bokeh's handlers do
        except AssertionError as exc:
            ws.error("Handler or its work threw an exception: %r", exc, exc_info=True)
        try:
            raise AssertionError("ours")
        except AssertionError as exc:
            ws.error("Handler or its work threw an exception: %r", exc, exc_info=True)
    assert [r.getMessage() for r in caplog.records] == [
        "Handler or its work threw an exception: AssertionError('ours')"
    ]
