"""Choosing a view from what an attribute is.

An attribute's format and type are only known once acquisition has read its
configuration, after the session has started. So :func:`view_for` returns the
concrete view when the caller already has the :class:`AttributeInfo`, and an
:class:`AutoView` otherwise: a panel that shows "waiting for ..." (or the
error, for a wrong name) and becomes the right view on the first tick that
brings the configuration. The session never has to wait, and a notebook cell
returns at once.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from bokeh.layouts import column
from bokeh.models import LayoutDOM

from ..tango.modes import Mode
from ..tango.sample import AttributeInfo, Format, Kind, Sample
from .banner import Level, Problem
from .base import AttributeState, View
from .export_formats import PageRanges, Shown
from .kinds import kinds
from .panel import PanelView
from .style import PANEL_STYLES
from .table import ValueTable


def _view_classes() -> list[type[View]]:
    return [kind.view for kind in kinds().values()]


def view_class(info: AttributeInfo) -> type[View] | None:
    """The view for an attribute of this format and type (None: not displayable).

    The kind of lowest ``auto`` rank that accepts it (see :mod:`.kinds`); a spectrum of
    strings is shown as a table of its items.
    """
    if info.format is Format.SPECTRUM and info.kind is Kind.STRING:
        return ValueTable
    able = [k for k in kinds().values() if k.auto is not None and k.accepts(info)]
    return min(able, key=lambda k: k.auto or 0).view if able else None


def _accepted(cls: type[View], options: Mapping[str, Any]) -> dict[str, Any]:
    names = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in names}


def _check_options(options: Mapping[str, Any]) -> None:
    known = set().union(*(inspect.signature(c.__init__).parameters for c in _view_classes()))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"no view takes the option(s) {', '.join(unknown)}")


def view_for(attribute: str, info: AttributeInfo | None = None, **options: Any) -> View:
    """The view that suits ``attribute``; an :class:`AutoView` when ``info`` is not known yet.

    ``options`` go to the chosen view when it takes them (``title``,
    ``history_points``, ``palette``...); an option no view takes is an error.
    """
    _check_options(options)
    if info is None:
        return AutoView(attribute, **options)
    cls = view_class(info)
    if cls is None:
        return Unsupported(attribute, _unsupported_text(info), title=options.get("title"))
    return cls(attribute, **_accepted(cls, options))


def _unsupported_text(info: AttributeInfo) -> str:
    what = f"{info.format} of {info.kind} ({info.dtype})"
    return f"cannot be displayed: {what} attributes are not supported"


class Unsupported(PanelView):
    """A panel that only says why an attribute cannot be shown."""

    def __init__(self, attribute: str, reason: str, *, title: str | None = None) -> None:
        super().__init__((attribute,), title=title)
        self.reason = reason

    def build(self) -> LayoutDOM:
        self._banner.show([Problem(self.attributes[0], Level.ERROR, self.reason)])
        return column(self._banner.model, sizing_mode="stretch_width", styles=PANEL_STYLES)

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._observe(batch, states)


class AutoView(PanelView):
    """A placeholder that becomes the right view when the attribute's configuration arrives."""

    def __init__(self, attribute: str, **options: Any) -> None:
        _check_options(options)
        super().__init__((attribute,), title=options.get("title"))
        self.attribute = attribute
        self.options = options
        self.inner: View | None = None
        self._pending: dict[str, Any] = {}  # options set through controls before the choice

    def build(self) -> LayoutDOM:
        self._banner.show(
            [Problem(self.attribute, Level.INFO, "waiting for the attribute's configuration…")]
        )
        self._box = column(self._banner.model, sizing_mode="stretch_width", styles=PANEL_STYLES)
        return self._box

    @property
    def kind(self) -> type[View] | None:
        """The class of view chosen, once chosen."""
        return type(self.inner) if self.inner is not None else None

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._observe(batch, states)
        if self.inner is None:
            state = states.get(self.attribute)
            if state is not None and state.info is not None:
                self._choose(state.info)
            else:
                self._waiting(state)
                return
        assert self.inner is not None
        self.inner.update(batch, now, states)

    def _choose(self, info: AttributeInfo) -> None:
        inner = view_for(self.attribute, info, **self.options)
        for name, value in self._pending.items():
            if hasattr(inner, name):
                setattr(inner, name, value)
        self.inner = inner
        # The chosen view's panel replaces the placeholder's content (one change).
        self._box.update(children=[inner.model], styles={})

    def _waiting(self, state: AttributeState | None) -> None:
        if state is not None and state.mode is Mode.FAILED:
            text, level = state.status or "acquisition failed", Level.ERROR
        elif state is not None and state.status:
            text, level = f"retrying: {state.status}", Level.WARNING
        else:
            text, level = "waiting for the attribute's configuration…", Level.INFO
        self._banner.show([Problem(self.attribute, level, text)])

    def set_option(self, name: str, value: Any) -> None:
        """Set a view option (e.g. ``history_points``) now or once the view is chosen."""
        if self.inner is not None:
            if hasattr(self.inner, name):
                setattr(self.inner, name, value)
        else:
            self._pending[name] = value

    @property
    def problem_text(self) -> str:
        """What the panel shows now: the chosen view's banner once there is one."""
        return (
            self.inner.problem_text if isinstance(self.inner, PanelView) else super().problem_text
        )

    def show_problem(self, text: str | None) -> None:
        if self.inner is not None:
            self.inner.show_problem(text)
        else:
            super().show_problem(text)

    def clear(self) -> None:
        if self.inner is not None:
            self.inner.clear()

    def to_csv(self) -> str:
        return self.inner.to_csv() if self.inner is not None else ""

    def shown(self, page: PageRanges | None = None) -> list[Shown]:
        return self.inner.shown(page) if self.inner is not None else []
