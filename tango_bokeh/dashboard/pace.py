"""Each page at its own pace: a page that falls behind gets the newest state, not a backlog.

A bokeh server writes every change of a session's Document to its websocket
as soon as it is made, and a slow page (a busy tab, a weak laptop, twenty
dashboards on one screen) queues them up: operators then look at minutes-old
data with nothing on screen saying so. TCP gives no help, because a browser
reads the socket whatever its page's main thread is doing.

So the page acknowledges: every tick the session stamps :class:`PageClock`
``sent`` with the server's time, and the page, when it has applied that
change, copies it into ``seen`` (a ``js_on_change`` callback, so it runs
after everything sent before it). When ``sent - seen`` exceeds the
allowance, the session skips its view updates: samples wait in the hub's
ring (bounded; trends get them all in one batch when the page catches up,
spectra and images only their newest frame), except for one update per
acknowledgement, so that a page slower than the allowance still gets the
newest state at its own pace (and a frozen one nothing). The page shows its own lag
when it is behind by more than a few ticks, and ``/metrics`` shows each
dashboard's worst lag and the ticks skipped.

Thread contract: everything here runs on the session's Document loop.
"""

from __future__ import annotations

import time

from bokeh.core.properties import Float
from bokeh.document import Document
from bokeh.model import DataModel
from bokeh.models import CustomJS


class PageClock(DataModel):
    """The server's time at the last tick (``sent``) and the newest the page applied (``seen``)."""

    sent = Float(default=0.0)
    seen = Float(default=0.0)
    period = Float(default=1.0)


#: Runs in the page each time ``sent`` arrives: acknowledge it, and say when the page is late.
#: A busy page reads its messages in bursts (late ones, then at once a fresh one), so the note
#: stays for a few seconds after the last late tick rather than flickering with each burst.
_ON_SENT = """
const clock = cb_obj;
clock.seen = clock.sent;
const now = Date.now() / 1000;
const state = window.tangoBokehPace || (window.tangoBokehPace = {offset: Infinity, until: 0});
state.offset = Math.min(state.offset, now - clock.sent);  // clock skew plus the best latency
const late = now - clock.sent - state.offset;
const limit = Math.max(3 * clock.period, 3);
if (late > limit) {
  state.worst = now < state.until ? Math.max(state.worst, late) : late;
  state.until = now + Math.max(5, 4 * limit);
}
let note = document.getElementById("tango-bokeh-lag");
if (now < state.until) {
  if (note === null) {
    note = document.createElement("div");
    note.id = "tango-bokeh-lag";
    note.setAttribute("role", "status");
    note.style.cssText = "position:fixed;bottom:0;right:0;z-index:10000;padding:6px 12px;" +
      "background:#ffb300;color:#1d2733;font:13px system-ui,sans-serif;border-radius:6px 0 0 0";
    document.body.appendChild(note);
  }
  note.textContent = "This page is up to " + Math.round(state.worst) + " s behind the server: " +
    "it is showing older data while it catches up.";
} else if (note !== null) {
  note.remove();
}
"""


class Pace:
    """One page's allowance; :meth:`behind` decides whether a tick updates the views."""

    def __init__(self, period: float, allowance: float | None = None) -> None:
        self.period = period
        #: How far (in server seconds) the page may trail before updates pause.
        self.allowance = allowance if allowance is not None else max(3 * period, 2.0)
        self.clock = PageClock(period=period, name="tango-bokeh-page-clock")
        self.skipped = 0
        self._granted = 0.0  # server time of the last update let through to a trailing page
        self._installed = False

    def install(self, doc: Document) -> None:
        self.clock.js_on_change("sent", CustomJS(code=_ON_SENT))
        doc.add_root(self.clock)
        self._installed = True

    @property
    def lag(self) -> float:
        """Seconds of server time the page has not acknowledged yet (0 before its first tick)."""
        if not self._installed or self.clock.sent == 0.0:
            return 0.0
        seen = self.clock.seen or self.clock.sent
        return max(0.0, self.clock.sent - seen)

    def behind(self) -> bool:
        """True if this tick should leave the views alone (the page has not caught up).

        A page that trails by more than the allowance still gets one update per
        acknowledgement it makes: once it has applied the last update let through,
        the next tick brings it the newest state. A slow page (its round trip alone
        longer than the allowance, as on an overloaded machine) is thus updated at
        its own pace instead of never; a frozen page, which acknowledges nothing,
        gets nothing more.
        """
        if not self._installed or self.clock.seen == 0.0:
            return False  # no acknowledgement yet: a page that never answers is not paced
        now = time.time()
        if now - self.clock.seen <= self.allowance:
            return False
        if self.clock.seen >= self._granted:  # it applied the last update let through
            self._granted = now  # this tick's stamp (beat) is at least this
            return False
        self.skipped += 1
        return True

    def beat(self) -> None:
        """Stamp this tick (the page acknowledges it when it has applied it)."""
        if self._installed:
            self.clock.sent = time.time()
