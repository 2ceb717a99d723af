"""A dashboard model -> one session per browser page: the views, their layout, the header.

Each page gets its own :class:`DashboardSession` and its own view objects
(bokeh models belong to one Document), but every session of the process
reads the same :meth:`Hub.default` channels: N viewers cost one Tango
subscription per attribute. Attributes come only from the file; nothing in
the URL can add one.
"""

from __future__ import annotations

import contextlib
import html
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from bokeh.core.templates import get_env
from bokeh.models import Button, Column, Div, LayoutDOM, Row, TabPanel, Tabs, Toggle

from ..hub import Hub
from ..session import Session
from ..views.archive_fill import ArchiveFill, SharedArchive
from ..views.export import export_button, show_status
from ..views.kinds import kinds
from . import resume
from .auth import ANONYMOUS, Viewer, login_link
from .control import Actuator, Controls
from .loader import DashboardFile, format_path
from .pace import Pace
from .schema import VIEW_KINDS, Panel

log = logging.getLogger(__name__)

#: The page around the bokeh roots: a calm background (body CSS is outside bokeh's shadow DOM).
PAGE_TEMPLATE = get_env().from_string(
    """{% extends "file.html.jinja" %}
{% block postamble %}
<style>
  html, body { background: #eef1f5; margin: 0; }
  body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
  .bk-root, body > div { margin: 0 auto; }
</style>
{% endblock %}"""
)

HEADER_STYLE = {
    "background": "#1d2733",
    "color": "#ffffff",
    "padding": "10px 18px",
    "border-radius": "0 0 8px 8px",
}
#: Containers that are not views themselves (views bring their own panel style).
CARD_STYLE = {
    "background": "#ffffff",
    "border-radius": "8px",
    "box-shadow": "0 1px 3px rgba(0, 0, 0, 0.12)",
    "padding": "8px 10px",
}
#: Subscriptions made per loop iteration when a page opens (each costs ~0.1 ms on the loop).
SUBSCRIBE_BATCH = 50
#: URL arguments bokeh itself adds (embedding); anything else is refused.
_BOKEH_ARGUMENTS = ("bokeh-",)


def make_view(kind: str, spec: Any, qualify: Callable[[str], str]) -> Any:
    """The view object for one panel of the file (names qualified with the file's host)."""
    return kinds()[kind].build(spec, qualify)


class DashboardSession(Session):
    """One browser page of one dashboard file."""

    def __init__(
        self,
        dashboard: DashboardFile,
        *,
        viewer: Viewer = ANONYMOUS,
        actuator: Actuator | None = None,
        can_login: bool = False,
        hub: Hub | None = None,
        name: str | None = None,
        ticking: bool = True,
        authorize: Callable[[Viewer], bool] | None = None,
        archive: SharedArchive | None = None,
    ) -> None:
        self.dashboard = dashboard
        #: The dashboard's archive (its ``archive:`` key), shared by the server's pages.
        self.archive = archive
        self.authorize = authorize
        self.viewer = viewer
        #: The client address of the page request (audit lines, per-address limits).
        self.address = "?"
        self.pace: Pace | None = None
        self.actuator = actuator or Actuator()
        self.can_login = can_login
        self.controls: list[Controls] = []
        self._built: dict[tuple[str | int, ...], Any] = {}  # panel path -> view or error text
        self._panel_views: list[Any] = []
        self._pending: list[tuple[str, float | None]] = []  # subscriptions not made yet
        period = dashboard.model.refresh if ticking else None
        super().__init__(name, callback_period=period, hub=hub)
        try:
            self._make_views()
        except Exception:
            self.close()
            raise

    def _make_views(self) -> None:
        model = self.dashboard.model
        default_poll = model.poll_period
        for path, panel in model.walk():
            if panel.kind not in VIEW_KINDS:
                continue
            spec = panel.content
            try:
                view = make_view(panel.kind, spec, model.qualify)
            except Exception as exc:  # a view refusing its options: show it in place
                log.warning("%s: %s: %s", self.dashboard.path, format_path(path), exc)
                self._built[path] = f"{format_path((*path, panel.kind))}: {exc}"
                continue
            if self.archive is not None:  # trends draw archived history before live data
                fill = ArchiveFill(self.archive, self.safe_document_modifications)
                if hasattr(view, "set_option"):  # an AutoView: its trend gets it, once chosen
                    view.set_option("archive", fill)
                elif hasattr(view, "use_archive"):
                    view.use_archive(fill)
            period = spec.poll_period or default_poll
            self._pending += [(attribute, period) for attribute in view.attributes]
            self._panel_views.append(view)
            self._built[path] = view

    @property
    def views(self) -> list[Any]:
        return list(self._panel_views)

    def attach(self, doc: Any) -> None:
        """Build the page, then subscribe in batches (a big page never stalls the loop)."""
        super().attach(doc)
        if doc.session_context is None:  # a bare Document: no loop to spread the work on
            self._subscribe_pending(len(self._pending))
        else:
            doc.add_next_tick_callback(self._subscribe_batch)

    def _subscribe_batch(self) -> None:
        if self._subscribe_pending(SUBSCRIBE_BATCH) and self.document is not None:
            with contextlib.suppress(AttributeError, RuntimeError, ValueError):  # doc gone
                self.document.add_next_tick_callback(self._subscribe_batch)

    def _subscribe_pending(self, count: int) -> bool:
        """Subscribe up to ``count`` queued attributes; True if some remain."""
        if self.closed:
            self._pending.clear()
            return False
        batch, self._pending = self._pending[:count], self._pending[count:]
        for attribute, period in batch:
            try:
                self.subscribe(attribute, period)
            except Exception as exc:  # a name the views will report; keep the others
                log.warning("%s: cannot subscribe %s: %s", self.dashboard.path, attribute, exc)
        return bool(self._pending)

    def log_name(self) -> str:
        return str(self.dashboard.path)

    def export_title(self) -> str:
        return self.dashboard.title

    def tick(self) -> None:
        """A tick, unless the page has not applied the earlier ones yet (see :mod:`.pace`)."""
        pace = self.pace
        if pace is not None and pace.behind():
            self.periodic_callback()  # logins are still checked
        else:
            super().tick()
        if pace is not None:
            pace.beat()

    def periodic_callback(self) -> None:
        authorize = self.authorize
        if self.viewer.authenticated and authorize is not None and not authorize(self.viewer):
            self.log_out()
        if self.controls:
            writable = {
                name: (state.info.writable if state.info is not None else None)
                for name, state in self.states().items()
            }
            for controls in self.controls:
                controls.narrow_to_writable(writable)

    # -- the page ---------------------------------------------------------------------------

    def setup_document(self) -> None:
        doc = self.document
        assert doc is not None
        doc.title = self.dashboard.title
        doc.template = PAGE_TEMPLATE
        resume.install(doc, f"/{self.dashboard.name}")
        self.pace = Pace(self.dashboard.model.refresh)
        self.pace.install(doc)
        body = [self._header(), self._toolbar()]
        body += [
            self._layout(("panels", i), panel)
            for i, panel in enumerate(self.dashboard.model.panels)
        ]
        doc.add_root(
            Column(
                *body,
                sizing_mode="stretch_width",
                styles={"padding": "0 14px 14px 14px", "gap": "12px"},
                name="dashboard",
            )
        )

    def log_out(self) -> None:
        """The login of this page ended (logout elsewhere, user removed): read-only at once."""
        log.info("%s: the login of %s ended; page %s is read-only now",
                 self.dashboard.name, self.viewer, self.name)  # fmt: skip
        self.viewer = ANONYMOUS
        for controls in self.controls:
            controls.revoke()
        header = getattr(self, "_header_div", None)
        if header is not None:
            header.text = self._header_text()

    def _header(self) -> LayoutDOM:
        self._header_div = Div(
            text=self._header_text(),
            sizing_mode="stretch_width",
            styles=HEADER_STYLE,
            stylesheets=[":host > div, .bk-clearfix { width: 100%; }"],
            name="dashboard-header",
        )
        return self._header_div

    def _toolbar(self) -> LayoutDOM:
        """Freeze, clear and export, as a notebook panel has them (the session's own features)."""
        self.freeze_toggle = Toggle(label="❚❚ Freeze", active=False, width=110,
                                    name="dashboard-freeze")  # fmt: skip
        self.freeze_toggle.on_change("active", self._on_freeze)
        clear = Button(label="Clear", width=80, name="dashboard-clear")
        clear.on_click(self.clear)
        export = self.export_button = export_button(
            self.download, width=150, name="dashboard-export"
        )
        return Row(
            Div(sizing_mode="stretch_width"),
            self.freeze_toggle,
            clear,
            export,
            sizing_mode="stretch_width",
            styles={"gap": "6px"},
            name="dashboard-toolbar",
        )

    def export_status(self, text: str) -> None:
        show_status(getattr(self, "export_button", None), text)

    def _on_freeze(self, _attr: str, _old: Any, active: bool) -> None:
        self.freeze(active)
        self.freeze_toggle.label = "▶ Resume" if active else "❚❚ Freeze"
        self.freeze_toggle.button_type = "warning" if active else "default"

    def _header_text(self) -> str:
        model = self.dashboard.model
        name = self.dashboard.name
        if self.viewer.authenticated:
            who = (
                f"{html.escape(str(self.viewer))} · "
                "<a href='/logout' style='color:#cfe0ff'>log out</a>"
            )
        elif self.can_login:
            who = f"<a href='{login_link('/' + name)}' style='color:#cfe0ff'>log in</a>"
        else:
            who = "read-only"
        description = ""
        if model.description:
            description = (
                "<div style='font-size:13px;color:#c2cedb;margin-top:2px'>"
                f"{html.escape(model.description)}</div>"
            )
        return (
            "<div style='display:flex;align-items:center;justify-content:space-between;"
            "width:100%;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif'>"
            f"<div><div style='font-size:20px;font-weight:600'>{html.escape(model.title)}</div>"
            f"{description}</div>"
            "<div style='font-size:13px;text-align:right;line-height:1.6'>"
            "<a href='/' style='color:#cfe0ff'>all dashboards</a>"
            f"<br>{who}</div></div>"
        )

    def _layout(self, path: tuple[str | int, ...], panel: Panel) -> LayoutDOM:
        kind = panel.kind
        if kind == "row":
            children = [self._layout((*path, "row", i), p) for i, p in enumerate(panel.content)]
            return Row(*children, sizing_mode="stretch_width", styles={"gap": "12px"})
        if kind == "column":
            children = [self._layout((*path, "column", i), p) for i, p in enumerate(panel.content)]
            return Column(*children, sizing_mode="stretch_width", styles={"gap": "12px"})
        if kind == "tabs":
            tabs = [
                TabPanel(
                    title=title,
                    child=Column(
                        *[self._layout((*path, "tabs", title, i), p) for i, p in enumerate(panels)],
                        sizing_mode="stretch_width",
                        styles={"gap": "12px", "padding-top": "8px"},
                    ),
                )
                for title, panels in panel.content.items()
            ]
            # A stable name: a page reloading itself (resume.py) finds its open tab by it,
            # also on another replica or process, where bokeh's model ids differ.
            return Tabs(
                tabs=tabs,
                sizing_mode="stretch_width",
                styles=CARD_STYLE,
                name=panel_key((*path, "tabs")),
            )
        return self._card(path, panel)

    def _card(self, path: tuple[str | int, ...], panel: Panel) -> LayoutDOM:
        built = self._built.get(path)
        key = panel_key((*path, panel.kind))
        if isinstance(built, str) or built is None:
            content: LayoutDOM = Div(
                styles=CARD_STYLE,
                text=(
                    "<b style='color:#b00020'>This panel cannot be shown.</b><br>"
                    f"{html.escape(str(built))}"
                ),
                sizing_mode="stretch_width",
            )
            parts = [content]
        else:
            content = built.model
            if getattr(content, "sizing_mode", None) in (None, "fixed"):
                content.sizing_mode = "stretch_width"
            parts = [content]
            spec = panel.content
            writable = [self.dashboard.model.qualify(a) for a in getattr(spec, "writable", [])]
            commands = [
                c.model_copy(update={"command": self.dashboard.model.qualify(c.command)})
                for c in spec.commands
            ]
            if writable or commands:
                labels = _labels(spec, self.dashboard.model.qualify)
                controls = Controls(
                    self,
                    self.viewer,
                    self.actuator,
                    writable,
                    labels,
                    commands,
                    login_link("/" + self.dashboard.name) if self.can_login else None,
                    key,
                    narrow=getattr(spec, "write", False) is True,
                    authorize=self.authorize,
                )
                self.controls.append(controls)
                parts.append(controls.model)
        if len(parts) == 1 and not isinstance(built, str) and built is not None:
            content.name = content.name or key
            return content
        return Column(*parts, sizing_mode="stretch_width", styles={"gap": "0"}, name=key)


def panel_key(path: tuple[str | int, ...]) -> str:
    """A model name for the panel at ``path`` (``panels-3-tabs-motor-control-0-table``)."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, path)).lower()).strip("-")


def _labels(spec: Any, qualify: Callable[[str], str]) -> dict[str, str]:
    attributes = getattr(spec, "attributes", [])
    labels = getattr(spec, "labels", None) or attributes
    return {qualify(a): label for a, label in zip(attributes, labels, strict=False)}


class RefusedSession(Session):
    """What a URL that tries to pass arguments gets: an explanation, and no subscription."""

    def __init__(self, dashboard: DashboardFile, arguments: Mapping[str, Any]) -> None:
        self.dashboard = dashboard
        self.arguments = sorted(arguments)
        super().__init__(callback_period=None)

    def setup_document(self) -> None:
        doc = self.document
        assert doc is not None
        doc.title = f"{self.dashboard.title}: refused"
        names = ", ".join(html.escape(a) for a in self.arguments)
        doc.add_root(
            Div(
                name="refused",
                text=(
                    "<div style='font-family:system-ui,sans-serif;padding:24px'>"
                    "<h2 style='color:#b00020'>Refused: this dashboard takes no URL arguments</h2>"
                    f"<p>The request carried <code>{names}</code>. What a dashboard shows comes "
                    "only from its file on the server; attributes cannot be added from the URL.</p>"
                    f"<p><a href='/{html.escape(self.dashboard.name)}'>Open the dashboard</a> · "
                    "<a href='/'>all dashboards</a></p></div>"
                ),
            )
        )


def url_arguments(doc: Any) -> dict[str, Any]:
    """The page's query arguments that are not bokeh's own."""
    context = doc.session_context
    request = getattr(context, "request", None) if context is not None else None
    arguments = getattr(request, "arguments", None) or {}
    return {k: v for k, v in arguments.items() if not k.startswith(_BOKEH_ARGUMENTS)}
