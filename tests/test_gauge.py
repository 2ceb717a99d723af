"""The gauge view kind, added through the registry alone: a module, this test, its docs."""

from __future__ import annotations

import time

from bokeh.document import Document

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import AttributeInfo, Quality, Sample
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.gauge import Gauge
from tango_bokeh.views.kinds import kinds
from tango_bokeh.views.wire import WireTap

CURRENT = "sim/beam/current/Current"


def test_a_gauge_panel_is_a_dashboard_key_and_builds_a_gauge():
    dashboard = parse(
        f"title: Wall\npanels:\n  - gauge: {{attribute: {CURRENT}, title: Ring current}}\n",
        "wall.yaml",
    )
    (panel,) = dashboard.model.panels
    assert panel.kind == "gauge"
    assert [r.role for r in dashboard.model.references()] == ["gauge"]
    view = kinds()["gauge"].build(panel.content, dashboard.model.qualify)
    assert isinstance(view, Gauge) and view.title == "Ring current"


def test_a_gauge_shows_the_value_on_its_quality_colour_and_sends_only_changes():
    gauge = Gauge(CURRENT)
    doc = Document()
    doc.add_root(gauge.model)
    tap = WireTap(doc)
    info = AttributeInfo(CURRENT, unit="mA", display_format="%.1f")
    states = {CURRENT: AttributeState(CURRENT, info, Mode.CHANGE, None)}
    now = time.time()
    gauge.update({CURRENT: [Sample(now, 199.54)]}, now, states)
    assert "199.5" in gauge.shown and "mA" in gauge.shown
    tap.reset()
    gauge.update({CURRENT: [Sample(now + 1, 199.52)]}, now + 1, states)  # same figure shown
    assert tap.events == []
    gauge.update({CURRENT: [Sample(now + 2, 150.0, Quality.ALARM)]}, now + 2, states)
    assert "150.0" in gauge.shown and len(tap.events) == 1


def test_the_registry_refuses_a_second_kind_of_the_same_name():
    import pytest

    from tango_bokeh.views.kinds import ViewKind, register

    gauge = kinds()["gauge"]
    with pytest.raises(ValueError, match="exists already"):
        register(ViewKind("gauge", Gauge, gauge.options, gauge.build, gauge.formats))
    assert not any(kind.auto is not None for name, kind in kinds().items() if name == "gauge")


def test_every_registered_kind_is_documented():
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    dashboards = (docs / "dashboards.md").read_text()
    for name, kind in kinds().items():
        assert f"\n### {name}\n" in dashboards, f"docs/dashboards.md has no '### {name}' section"
        for field in kind.options.model_fields:
            assert f"`{field}`" in dashboards, f"docs/dashboards.md does not name {name}.{field}"
