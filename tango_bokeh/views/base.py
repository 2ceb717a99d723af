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
from dataclasses import dataclass

from bokeh.models import LayoutDOM

from ..tango.modes import Mode
from ..tango.polling import PollRate
from ..tango.sample import AttributeInfo, Sample


@dataclass(frozen=True)
class AttributeState:
    """What a view may know about an attribute besides its samples."""

    name: str  # as the user wrote it
    info: AttributeInfo | None  # None until acquisition has read the configuration
    mode: Mode  # change/periodic/archive event, poll, pending (retrying), failed
    status: str | None  # why it is pending/failed (a Tango error text), else None
    lost: int = 0  # samples this reader lost to ring overflow so far
    queue_full: int = 0  # times Tango's event queue was found full (events lost before the hub)
    poll: PollRate | None = None  # under client polling: how often it is read, and why


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
        """What is displayed, as CSV (the "export" control)."""
        return ""

    def show_problem(self, text: str | None) -> None:  # noqa: B027 - optional hook
        """Show a failure of the view itself (e.g. its update raised) in its panel; None clears it.

        Default: nothing. Sessions call it so that one broken view says so in
        place while the others keep updating.
        """
