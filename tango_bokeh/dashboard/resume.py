"""Pages that resume by themselves after any outage of their server, however long.

BokehJS 3.9 cannot resume a page on its own: its receiver keeps a half-read
message across reconnects (``Expected binary fragment but received text
fragment``), a restarted server has none of the page's models, its session
token is checked again on reconnect, and it gives up after five attempts
(~31 s). So each dashboard page turns bokeh's reconnection off and does it
the robust way instead: when the connection is lost, the page says so
("dashboard server unreachable since 10:31:07, retrying in 4 s"), probes
the server's ``/alive`` with back-off (never giving up), and loads itself
afresh as soon as the server answers, with the tabs that were open and the
scroll position it had. A fresh load is a fresh, server-signed session
with a fresh token, so the page's age never matters.
"""

from __future__ import annotations

from bokeh.document import Document
from bokeh.models import CustomJS

#: The path the page probes (answered by :class:`~.server.AliveHandler`, no login, tiny).
ALIVE_PATH = "/alive"
#: Back-off between probes, in seconds: doubling up to the maximum, for ever.
FIRST_RETRY, MAX_RETRY = 1.0, 15.0

_ON_LOST = """
const guard = window.tangoBokehResume || (window.tangoBokehResume = {since: null, timer: null});
if (guard.since !== null) return;  // already resuming
guard.since = new Date();
const docs = window.Bokeh ? window.Bokeh.documents : [];
const state = {scroll: window.scrollY, tabs: {}};
for (const d of docs) {
  for (const m of d.all_models) {
    if (m.type === "Tabs") state.tabs[m.name || m.id] = m.active;
  }
}
try { sessionStorage.setItem(key, JSON.stringify(state)); } catch (e) {}
let banner = document.getElementById("tango-bokeh-resume");
if (banner === null) {
  banner = document.createElement("div");
  banner.id = "tango-bokeh-resume";
  banner.setAttribute("role", "alert");
  banner.style.cssText = "position:fixed;top:0;left:0;right:0;z-index:10000;padding:8px 16px;" +
    "background:#b00020;color:#fff;font:14px system-ui,sans-serif;text-align:center";
  document.body.appendChild(banner);
}
const since = guard.since.toLocaleTimeString([], {hour12: false});
let wait = first;
const say = (text) => { banner.textContent = "Dashboard server unreachable since " + since +
  " (values shown are frozen); " + text; };
const probe = () => {
  say("checking now ...");
  fetch(alive, {cache: "no-store", credentials: "same-origin"}).then((r) => {
    if (r.ok) { say("it is back: reloading ..."); window.location.reload(); }
    else throw new Error(String(r.status));
  }).catch(() => {
    let left = Math.round(wait);
    say("retrying in " + left + " s.");
    const tick = setInterval(() => {
      left -= 1;
      if (left > 0) say("retrying in " + left + " s."); else clearInterval(tick);
    }, 1000);
    guard.timer = setTimeout(probe, wait * 1000);
    wait = Math.min(wait * 2, most);
  });
};
guard.timer = setTimeout(probe, 500);
"""

_ON_READY = """
let saved = null;
try { saved = JSON.parse(sessionStorage.getItem(key) || "null"); } catch (e) {}
if (saved === null) return;
sessionStorage.removeItem(key);
for (const d of (window.Bokeh ? window.Bokeh.documents : [])) {
  for (const m of d.all_models) {
    if (m.type === "Tabs") {
      const active = saved.tabs[m.name || m.id];
      if (active !== undefined && active < m.tabs.length) m.active = active;
    }
  }
}
setTimeout(() => window.scrollTo(0, saved.scroll || 0), 200);
"""


def install(doc: Document, page: str) -> None:
    """Make the page of ``doc`` (served at ``page``) resume by itself after an outage."""
    key = f"tango-bokeh-resume:{page}"
    args = {"key": key, "alive": ALIVE_PATH, "first": FIRST_RETRY, "most": MAX_RETRY}
    doc.config.reconnect_session = False  # bokeh's reconnect cannot resume a page (see above)
    doc.config.notify_connection_status = False  # the page says it itself, with the time
    doc.js_on_event("connection_lost", CustomJS(args=args, code=_ON_LOST))
    doc.js_on_event("document_ready", CustomJS(args={"key": key}, code=_ON_READY))
