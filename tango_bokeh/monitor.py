"""A ready-made monitoring page: views of Tango attributes plus the seed's controls.

:class:`MonitorSession` is what notebooks (``monitor(...)``) and dashboards
build on. Give it attribute names (a view is chosen for each once its
configuration is known) or :class:`~tango_bokeh.views.View` instances; it
lays them out under a control bar:

* update period (the seed's slider, driving ``update_callback_period``),
  history length in points and time window (trends);
* freeze (pause the tick; data keeps arriving in the hub, bounded) and clear;
* export of what is displayed (visible range and series, live and archived) as one
  long-format CSV or NeXus-style HDF5 file, written off the loop and streamed to the
  page, which downloads it itself: no extra HTTP route, works offline and in
  notebooks; :meth:`MonitorSession.save` writes the same file from Python;
* a status line with each attribute's acquisition mode, stale and error marks.

A view whose update raises shows the error in its own panel; the others keep
updating. A malformed attribute name becomes a panel with the error instead
of failing the whole page.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from bokeh.layouts import column, row
from bokeh.models import Button, Div, LayoutDOM, Select, Slider, Toggle

from .hub import Hub
from .session import Session
from .tango import InvalidName
from .tango.modes import Mode
from .tango.sample import Sample
from .views.auto import AutoView, view_for
from .views.banner import Banner, Level, Problem, attribute_problem
from .views.base import AttributeState, View
from .views.export import Export, export_button, show_status
from .views.palette import ERROR_TEXT, MODE_COLORS, MODE_TEXT, STALE_COLOR
from .views.style import FONT, PANEL_STYLES
from .views.table import ValueTable

log = logging.getLogger(__name__)

#: Time windows offered for trends (label -> seconds).
WINDOWS = {
    "1 min": 60.0,
    "5 min": 300.0,
    "10 min": 600.0,
    "30 min": 1800.0,
    "1 h": 3600.0,
    "4 h": 14400.0,
}

PAGE_STYLES = {
    "background": "#f3f5f8",
    "padding": "10px 12px",
    "border-radius": "8px",
    "font-family": FONT,
}


class Notice(View):
    """A panel for an item that could not become a view (e.g. a malformed name)."""

    def __init__(self, item: str, text: str) -> None:
        super().__init__((item,))
        self.attributes = ()  # nothing to subscribe
        self.item = item
        self.text = text
        self._banner = Banner()

    def build(self) -> LayoutDOM:
        self._banner.show([Problem(self.item, Level.ERROR, self.text)])
        return column(self._banner.model, sizing_mode="stretch_width", styles=PANEL_STYLES)

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        """Nothing to update: the panel only shows its message."""


class MonitorSession(Session):
    """A page of live views with update-period, history, freeze, clear and export controls.

    ``items`` are attribute names (any Tango name form; the view is chosen
    automatically) or View instances. ``layout="grid"`` puts ``ncols`` panels
    per row; ``"column"`` stacks them.
    """

    def __init__(
        self,
        *items: str | View,
        name: str | None = None,
        callback_period: float | None = 1.0,
        title: str | None = None,
        hub: Hub | None = None,
        layout: Literal["column", "grid"] = "column",
        ncols: int = 2,
    ) -> None:
        if layout not in ("column", "grid"):
            raise ValueError(f"layout must be 'column' or 'grid', not {layout!r}")
        if not items:
            raise ValueError("MonitorSession needs at least one attribute name or view")
        self.title = title or "Tango monitor"
        self.layout = layout
        self.ncols = max(1, int(ncols))
        self.panels: list[View] = []
        self._last: dict[str, Sample] = {}
        self._status_html = ""
        super().__init__(name, callback_period=callback_period, hub=hub)
        try:
            for item in items:
                self._add_item(item)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Close the session (see :meth:`Session.close`) and let go of its views and widgets."""
        super().close()
        # What a closed panel kept would live as long as IPython's Out keeps the session.
        self.panels = []
        self._last = {}
        for name in _PAGE_ATTRIBUTES:
            self.__dict__.pop(name, None)

    def _add_item(self, item: str | View) -> None:
        if isinstance(item, str):
            view: View = view_for(item)
        elif isinstance(item, View):
            view = item
        else:
            raise TypeError(f"expected an attribute name or a View, not {type(item).__name__}")
        try:
            self.add_view(view)
        except InvalidName as exc:
            label = item if isinstance(item, str) else (view.title or ", ".join(view.attributes))
            view = Notice(label, str(exc))
        self.panels.append(view)

    # -- page ------------------------------------------------------------------------

    def setup_document(self) -> None:
        doc = self.document
        assert doc is not None
        doc.title = self.title
        self._status = Div(text="", sizing_mode="stretch_width", margin=(2, 4, 6, 4))
        page = column(
            self._header(),
            self._controls(),
            self._status,
            self._body(),
            sizing_mode="stretch_width",
            styles=PAGE_STYLES,
        )
        doc.add_root(page)
        self._refresh_status(self.states())

    def _header(self) -> Div:
        count = len({a for v in self.panels for a in v.attributes})
        return Div(
            text=(
                f'<div style="font:600 18px {FONT};color:#111827">{html.escape(self.title)}</div>'
                f'<div style="font:12px {FONT};color:#6b7280">{count} attribute(s), '
                "live from Tango</div>"
            ),
            sizing_mode="stretch_width",
            margin=(0, 4, 6, 4),
        )

    def _controls(self) -> LayoutDOM:
        period = self.callback_period or 1.0
        self.period_slider = Slider(
            title="Update period (s)", start=0.1, end=5.0, step=0.1, value=period, width=200
        )
        self.period_slider.on_change("value_throttled", self._on_period)
        self.history_slider = Slider(
            title="History (points)", start=100, end=100_000, step=100, value=10_000, width=200
        )
        self.history_slider.on_change("value_throttled", self._on_history)
        self.window_select = Select(
            title="Time window", value="10 min", options=list(WINDOWS), width=110
        )
        self.window_select.on_change("value", self._on_window)
        self.freeze_toggle = Toggle(label="❚❚ Freeze", active=False, width=110, align="end")
        self.freeze_toggle.on_change("active", self._on_freeze)
        self.clear_button = Button(label="Clear", width=80, align="end")
        self.clear_button.on_click(self.clear)
        self.export_button = export_button(self.download, width=150,
                                           align="end")  # fmt: skip
        return row(
            self.period_slider,
            self.history_slider,
            self.window_select,
            self.freeze_toggle,
            self.clear_button,
            self.export_button,
            sizing_mode="stretch_width",
            margin=(0, 4, 4, 4),
        )

    def _body(self) -> LayoutDOM:
        models = [view.model for view in self.panels]
        if self.layout == "column" or len(models) == 1:
            return column(*models, sizing_mode="stretch_width")
        # Grid: panels fill rows of ``ncols``; tables (six columns of text) get a row each.
        rows: list[LayoutDOM] = []
        pending: list[LayoutDOM] = []
        for view, model in zip(self.panels, models, strict=True):
            if isinstance(view, ValueTable):
                rows.append(model)
                continue
            pending.append(model)
            if len(pending) == self.ncols:
                rows.append(row(*pending, sizing_mode="stretch_width"))
                pending = []
        if pending:
            rows.append(row(*pending, sizing_mode="stretch_width"))
        return column(*rows, sizing_mode="stretch_width")

    # -- controls --------------------------------------------------------------------

    def _on_period(self, _attr: str, _old: Any, new: float) -> None:
        self.update_callback_period(float(new))

    def _on_history(self, _attr: str, _old: Any, new: float) -> None:
        self.set_view_option("history_points", int(new))

    def _on_window(self, _attr: str, _old: Any, new: str) -> None:
        self.set_view_option("history_seconds", WINDOWS.get(new, 600.0))

    def _on_freeze(self, _attr: str, _old: Any, active: bool) -> None:
        if self.closed:
            return
        if active:
            self.pause()
        else:
            self.resume()
        self.freeze_toggle.label = "▶ Resume" if active else "❚❚ Freeze"
        self.freeze_toggle.button_type = "warning" if active else "default"
        self._refresh_status(self.states())

    def export_status(self, text: str) -> None:
        show_status(self.__dict__.get("export_button"), text)

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:
        """Write what the panel shows to ``path`` (any thread): the same file as its Export
        button; ``format`` "csv" or "hdf5", else from the suffix (.h5, .hdf5, .nxs: HDF5)."""
        target = Path(path)
        if format is None:
            format = "hdf5" if target.suffix.lower() in (".h5", ".hdf5", ".nxs", ".hdf") else "csv"
        target.write_bytes(self.export(format).payload)
        return target

    def set_view_option(self, name: str, value: Any) -> None:
        """Set a view option (``history_points``, ``history_seconds``) on every view taking it."""
        for view in self.panels:
            if isinstance(view, AutoView):
                view.set_option(name, value)
            elif hasattr(view, name):
                setattr(view, name, value)

    # -- tick (the loop itself is Session.on_samples) ----------------------------------

    @property
    def views(self) -> list[View]:
        """The panels, in page order (notices of names that could not become views included)."""
        return list(self.panels)

    def export_title(self) -> str:
        return self.title

    def after_update(
        self, batch: Mapping[str, Sequence[Sample]], states: Mapping[str, AttributeState]
    ) -> None:
        for name, samples in batch.items():
            if samples:
                self._last[name] = samples[-1]
        self._refresh_status(states)

    def _refresh_status(self, states: Mapping[str, AttributeState]) -> None:
        """The status line: one chip per attribute; sent only when its text changes."""
        status = self.__dict__.get("_status")
        if self.closed or status is None:  # closed (perhaps during this tick): nothing to show
            return
        chips = []
        if self.suspended and self.ready:
            chips.append(_chip("#e0a000", "frozen", "updates paused: data keeps arriving"))
        for name, state in states.items():
            chips.append(_status_chip(name, state, self._last.get(name)))
        for view in self.panels:
            if isinstance(view, Notice):
                chips.append(_chip(ERROR_TEXT, f"{view.item} · invalid name", view.text))
        text = '<div style="display:flex;flex-wrap:wrap;gap:6px">' + "".join(chips) + "</div>"
        if text != self._status_html:
            self._status_html = text
            status.text = text

    @property
    def status_text(self) -> str:
        """The status line as plain text (for logs and tests)."""
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", self._status_html)).split())


#: The page's models a MonitorSession holds (released on close).
_PAGE_ATTRIBUTES = (
    "_status",
    "period_slider",
    "history_slider",
    "window_select",
    "freeze_toggle",
    "clear_button",
    "export_button",
)


def _status_chip(name: str, state: AttributeState, last: Sample | None) -> str:
    problem = attribute_problem(name, state, last)
    color = MODE_COLORS.get(state.mode, "#808080")
    text = f"{name} · {MODE_TEXT.get(state.mode, str(state.mode))}"
    tip = state.status or ""
    if problem is not None:
        tip = problem.text
        if problem.level is Level.ERROR:
            color, text = ERROR_TEXT, f"{text} · error"
        elif last is not None and last.stale:
            color, text = STALE_COLOR, f"{text} · stale"
        elif state.mode is not Mode.PENDING:
            color, text = STALE_COLOR, f"{text} · invalid"
    return _chip(color, text, tip)


def _chip(color: str, text: str, tip: str = "") -> str:
    return (
        f'<span title="{html.escape(tip)}" style="display:inline-flex;align-items:center;'
        "gap:5px;background:#ffffff;border:1px solid #d9dee7;border-radius:12px;"
        f'padding:1px 9px;font:12px {FONT};color:#374151">'
        f'<span style="width:8px;height:8px;border-radius:50%;background:{color};'
        f'display:inline-block"></span>{html.escape(text)}</span>'
    )


__all__ = ["Export", "MonitorSession", "Notice"]  # Export: from views.export, kept here too
