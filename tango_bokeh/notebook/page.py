"""Display: what an output shows in the page.

:func:`output_script` is the ``<script>`` of an output (it loads BokehJS from the
kernel's server once per page, claims the output's session, embeds it with
BokehJS's own client and frees it when the output leaves the page);
:func:`notice` is the document a page gets instead of a session that is not live.
The BokehJS internals the script uses are listed in
:data:`~tango_bokeh.notebook.internals.BOKEHJS_INTERNALS`.
"""

from __future__ import annotations

import html
import json
from typing import Any
from uuid import uuid4

from bokeh import __version__ as bokeh_version
from bokeh.models import Div
from bokeh.resources import Resources

from .outputs import CLOSED, GONE, REFUSED, STOPPED, TEXTS


def output_script(url: str, token: str, name: str) -> str:
    """The ``<script>`` of an output: load BokehJS from our server once per page, then embed.

    bokeh's autoload reloads BokehJS for every output (replacing ``window.Bokeh``
    under other bokeh outputs of the page), builds resource URLs from the host
    only (breaking path-prefixed proxies) and keeps every document it embedded
    for the page's lifetime. Here the page trades the output's token for a
    session, embeds it with BokehJS's own client, and frees it (connection,
    views, document) when the server closes it or the output leaves the page.
    """
    root = url if url.endswith("/") else url + "/"
    urls = [f"{u}?v={bokeh_version}" for u in Resources(mode="server", root_url=root).js_files]
    scheme, rest = root.split("://", 1)
    values = {
        "$VERSION": bokeh_version,
        "$URLS": urls,
        "$CLAIM": f"{root}tango-bokeh/claim?output={token}",
        "$WS": f"{'wss' if scheme == 'https' else 'ws'}://{rest}ws",
        "$TEXTS": TEXTS,
        "$CODES": {"closed": CLOSED, "gone": GONE, "refused": REFUSED, "stopped": STOPPED},
        "$NAME": name,
    }
    element_id = f"tango-bokeh-{uuid4().hex}"
    script = _PAGE.replace("$ID", json.dumps(element_id))
    for key, value in values.items():
        # JSON inside a <script>: "</" must not end the element
        script = script.replace(key, json.dumps(value).replace("</", "<\\/"))
    return f'<script id="{element_id}">{script}</script>'


_PAGE = """
(function () {
  const version = $VERSION, urls = $URLS, claim = $CLAIM, wsUrl = $WS, texts = $TEXTS;
  const codes = $CODES, name = $NAME, root = window;
  const script = document.currentScript || document.getElementById($ID);
  const key = "_tango_bokeh_loading_" + version;

  function notice(output, text, error) {
    const div = document.createElement("div");
    div.className = "tango-bokeh-notice";
    div.style.cssText = "font-family:sans-serif;padding:4px 0";
    div.style.color = error ? "#b00020" : "#555";
    div.textContent = text;
    output.body.replaceChildren(div);
  }

  function banner(output, text) {
    output.banner.textContent = text || "";
    output.banner.style.display = text ? "block" : "none";
  }

  // Free what BokehJS holds for this output: connection, views, document.
  function release(output) {
    const conn = output.conn;
    if (conn != null) {
      try {
        if (!conn.closed_permanently && conn.session != null) conn.close();
        else {
          conn.closed_permanently = true;
          if (conn.session != null) conn.session._connection_closed();
          if (conn.socket != null) conn.socket.close(1000, "output removed");
        }
      } catch (error) { console.debug("tango_bokeh: closing", error); }
    }
    if (output.views != null) {
      try { output.views.clear(); } catch (error) { console.debug("tango_bokeh: views", error); }
      output.views = null;
    }
    const doc = conn != null && conn.session != null ? conn.session.document : null;
    if (doc != null) {
      try { doc.clear({sync: false}); } catch (error) { console.debug("tango_bokeh: doc", error); }
      const docs = root.Bokeh.documents, i = docs.indexOf(doc);
      if (i >= 0) docs.splice(i, 1);
    }
  }

  function teardown(output, text, error) {
    if (!output.closed) {
      output.closed = true;
      clearInterval(output.timer);
      release(output);
      output.body.replaceChildren();
      banner(output, null);
    }
    if (text) notice(output, text, error);
  }

  // The output left the page (cleared, replaced, its notebook closed): free it. A cell
  // that JupyterLab's windowing detached while its notebook stays open is kept.
  function watch(output) {
    const el = output.el;
    const windowed = !el.isConnected && output.cell != null && output.cell.contains(el)
      && output.panel != null && output.panel.isConnected;
    if (el.isConnected || windowed) { output.goneSince = null; return; }
    const now = Date.now();
    if (output.goneSince == null) output.goneSince = now;
    else if (now - output.goneSince >= 2000) teardown(output, null);
  }

  function connect(output, token) {
    if (output.closed) return;
    const {ClientConnection} = root.Bokeh.require("client/connection");
    const {add_document_standalone} = root.Bokeh.require("embed/standalone");
    const conn = output.conn = new ClientConnection(wsUrl, token, null);
    const onOpen = conn._on_open.bind(conn), onClose = conn._on_close.bind(conn);
    conn._on_open = (resolve, reject) => { banner(output, null); onOpen(resolve, reject); };
    conn._on_close = (event, reject) => {
      const ours = event.code >= 4000 && event.code < 4100;
      if (ours) conn.closed_permanently = true;  // the server said why: no reconnection
      onClose(event, reject);
      if (output.closed) return;
      if (ours) {
        const text = event.code == codes.gone ? null : event.code == codes.closed ? texts.closed
          : event.code == codes.stopped ? texts.stopped : texts.refused;
        teardown(output, text);
        return;
      }
      const session = conn.session;
      const retrying = !conn.closed_permanently && session != null
        && conn._reconnection_attempts_left > 0 && session.document.config.reconnect_session;
      if (retrying) banner(output, texts.reconnecting);
      else teardown(output, texts.lost);
    };
    conn.connect()
      .then((session) => add_document_standalone(session.document, output.body, [], false))
      .then((views) => {
        output.views = views;
        if (output.closed) release(output);  // it went away while it was being built
      })
      .catch((error) => {
        if (!output.closed) teardown(output, texts.lost);
        console.debug("tango_bokeh: " + name, error);
      });
  }

  // BokehJS 3.9's PlotView adds a visualViewport "resize" listener that nothing removes,
  // so every plot a page ever showed stays in memory: remove it with its view.
  function patchPlots() {
    const viewport = root.visualViewport;
    let PlotView = null;
    try { PlotView = root.Bokeh.require("models/plots/plot_canvas").PlotView; } catch (e) {}
    if (viewport == null || PlotView == null || PlotView.prototype._tango_bokeh_patched) return;
    const proto = PlotView.prototype, connect = proto.connect_signals, remove = proto.remove;
    proto._tango_bokeh_patched = true;
    proto.connect_signals = function () {
      const added = this._tango_bokeh_viewport = this._tango_bokeh_viewport || [];
      const add = viewport.addEventListener;
      viewport.addEventListener = function (type, listener, options) {
        added.push([type, listener, options]);
        return add.call(viewport, type, listener, options);
      };
      try { return connect.call(this); } finally { delete viewport.addEventListener; }
    };
    proto.remove = function () {
      for (const [type, listener, options] of this._tango_bokeh_viewport || [])
        viewport.removeEventListener(type, listener, options);
      this._tango_bokeh_viewport = [];
      return remove.call(this);
    };
  }

  function start() {
    if (script == null || script.parentNode == null) return;
    patchPlots();
    const el = document.createElement("div");
    el.className = "tango-bokeh-output";
    const banner = document.createElement("div");
    banner.className = "tango-bokeh-banner";
    banner.style.cssText = "display:none;color:#555;background:#eceff3;font-family:sans-serif;"
      + "padding:2px 8px;margin-bottom:4px;border-radius:4px";
    const body = document.createElement("div");
    el.append(banner, body);
    script.parentNode.insertBefore(el, script);
    const output = {el, banner, body, cell: el.closest(".jp-Cell"),
      panel: el.closest(".jp-NotebookPanel"), conn: null, views: null, closed: false,
      goneSince: null, timer: null};
    output.timer = setInterval(() => watch(output), 1000);
    fetch(claim, {cache: "no-store"})
      .then((reply) => reply.json())
      .then((reply) => {
        if (reply.token) connect(output, reply.token);
        else if (reply.error) teardown(output, reply.error, true);
        else teardown(output, reply.refused || texts.refused);
      })
      .catch((error) => {
        teardown(output, texts.unreachable);
        console.debug("tango_bokeh: " + name, error);
      });
  }

  const ready = root.Bokeh !== undefined && root.Bokeh.version === version
    && root.Bokeh.Widgets !== undefined && root.Bokeh.Tables !== undefined;
  if (ready && root[key] === undefined) { start(); return; }
  if (root[key] === undefined) {
    root[key] = urls.reduce((chain, url) => chain.then(() => new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = url;
      tag.onload = resolve;
      tag.onerror = () => reject(new Error("tango_bokeh: cannot load " + url));
      document.head.appendChild(tag);
    })), Promise.resolve());
    root[key].catch(() => { delete root[key]; });
  }
  root[key].then(start, (error) => console.error(error));
})();
"""


def notice(text: str, *, error: bool = False) -> Any:
    colour = "#b00020" if error else "#555"
    return Div(
        text=f'<div style="color:{colour};font-family:sans-serif">{html.escape(text)}</div>',
        name="tango-bokeh-notice",
    )
