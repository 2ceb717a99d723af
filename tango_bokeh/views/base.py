"""What every view is: plain objects given samples, owning their bokeh models.

A view knows nothing of Tango subscriptions. Its session subscribes to
:attr:`View.attributes`, and on each tick calls :meth:`View.update` with the
samples that are new since the previous tick plus the current
:class:`AttributeState` of each attribute (metadata, acquisition mode, error).
Views are reusable in notebooks and dashboards alike; each Document needs its
own view instances (bokeh models belong to one Document).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from bokeh.models import LayoutDOM

from ..tango.sample import Sample
from ..tango.state import AttributeState  # re-exported: views and their tests import it here
from .export_formats import PageRanges, Shown

__all__ = ["AttributeState", "View"]


class View(abc.ABC):
    """Base class of trends, spectra, images and tables."""

    def __init__(self, attributes: Sequence[str], *, title: str | None = None) -> None:
        if not attributes:
            raise ValueError(f"{type(self).__name__} needs at least one attribute")
        self.attributes: tuple[str, ...] = tuple(attributes)
        self.title = title
        self._model: LayoutDOM | None = None

    @property
    def model(self) -> LayoutDOM:
        """The bokeh layout of this view, built on first access."""
        if self._model is None:
            self._model = self.build()
        return self._model

    @abc.abstractmethod
    def build(self) -> LayoutDOM:
        """Create the bokeh models (figures, sources, widgets) of this view."""

    @abc.abstractmethod
    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        """Apply the new samples: at most one update per data source, none if nothing changed."""

    def clear(self) -> None:  # noqa: B027 - optional hook
        """Forget what is displayed (the "clear" control)."""

    def to_csv(self) -> str:
        """What is displayed, as CSV text of this view alone."""
        return ""

    def shown(self, page: PageRanges | None = None) -> list[Shown]:
        """What is displayed now, as copies the export writes off the loop (on the loop);
        ``page``: the ranges the page shows (see :data:`PageRanges`), when it sent them.

        Default: nothing (a view that shows no plotted data exports none).
        """
        return []

    def show_problem(self, text: str | None) -> None:  # noqa: B027 - optional hook
        """Show a failure of the view itself (e.g. its update raised) in its panel; None clears it.

        Default: nothing. Sessions call it so that one broken view says so in
        place while the others keep updating.
        """
