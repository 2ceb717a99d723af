"""What every panel-shaped view shares: a banner of problems and the newest sample per attribute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..tango.sample import Sample
from .banner import Banner, Level, Problem, problems
from .base import AttributeState, View


class PanelView(View):
    """A :class:`View` that shows its attributes' problems above its content.

    :meth:`update` takes the steps every panel takes, so that no view can
    forget one: remember the newest sample and state of each attribute, then
    :meth:`draw` (the subclass's own work), then the banner of problems
    (stale, error, invalid, the view's own failure). Subclasses report
    verdicts of their own (an unsupported type...) through :meth:`_own_problems`.
    """

    def __init__(self, attributes: Sequence[str], *, title: str | None = None) -> None:
        super().__init__(attributes, title=title)
        self._banner = Banner()
        self._last: dict[str, Sample] = {}
        self._states: Mapping[str, AttributeState] = {}
        self._failure: str | None = None

    @property
    def problem_text(self) -> str:
        """The banner's plain text ('' when all is well)."""
        return self._banner.text

    def _observe(
        self, batch: Mapping[str, Sequence[Sample]], states: Mapping[str, AttributeState]
    ) -> None:
        if self._model is None:
            self.model  # noqa: B018 - build on first use
        self._states = states
        for name in self.attributes:
            samples = batch.get(name)
            if samples:
                self._last[name] = samples[-1]

    def update(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        self._observe(batch, states)
        self.draw(batch, now, states)
        self._refresh_banner()

    def draw(
        self,
        batch: Mapping[str, Sequence[Sample]],
        now: float,
        states: Mapping[str, AttributeState],
    ) -> None:
        """Apply the new samples (the banner is done by :meth:`update`): at most one update
        per data source, none if nothing changed. Default: nothing."""

    def _own_problems(self) -> dict[str, Problem]:
        return {}

    def _refresh_banner(self) -> None:
        found = problems(self.attributes, self._states, self._last, self._own_problems())
        if self._failure:
            found.append(Problem(self.title or type(self).__name__, Level.ERROR, self._failure))
        self._banner.show(found)

    def show_problem(self, text: str | None) -> None:
        self._failure = text
        if self._model is not None:
            self._refresh_banner()
