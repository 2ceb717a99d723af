"""The lamps view kind, added through the registry alone: its module, this test, its docs."""

from __future__ import annotations

import time

from bokeh.document import Document

from tango_bokeh.dashboard.loader import parse
from tango_bokeh.tango.modes import Mode
from tango_bokeh.tango.sample import AttributeInfo, Kind, Sample
from tango_bokeh.views.base import AttributeState
from tango_bokeh.views.kinds import kinds
from tango_bokeh.views.lamp import OFF, ON, Lamps
from tango_bokeh.views.wire import WireTap

SHUTTER = "sim/shutter/1/Open"
STATE = "sim/motor/1/State"


def test_a_lamps_panel_is_a_dashboard_key_and_builds_lamps():
    dashboard = parse(
        "title: Wall\npanels:\n"
        f"  - lamps: {{attributes: [{SHUTTER}, {STATE}], labels: [Shutter, Motor]}}\n",
        "wall.yaml",
    )
    (panel,) = dashboard.model.panels
    assert panel.kind == "lamps"
    view = kinds()["lamps"].build(panel.content, dashboard.model.qualify)
    assert isinstance(view, Lamps) and view.labels == ["Shutter", "Motor"]
    assert kinds()["lamps"].accepts(AttributeInfo(SHUTTER, kind=Kind.BOOL))
    assert not kinds()["lamps"].accepts(AttributeInfo(SHUTTER, kind=Kind.NUMBER))


def test_lamps_show_booleans_states_and_errors_and_send_only_changes():
    lamps = Lamps([SHUTTER, STATE])
    doc = Document()
    doc.add_root(lamps.model)
    tap = WireTap(doc)
    states = {
        SHUTTER: AttributeState(SHUTTER, AttributeInfo(SHUTTER, kind=Kind.BOOL), Mode.CHANGE, None),
        STATE: AttributeState(STATE, AttributeInfo(STATE, kind=Kind.STATE), Mode.CHANGE, None),
    }
    now = time.time()
    lamps.update({SHUTTER: [Sample(now, True)], STATE: [Sample(now, "MOVING")]}, now, states)
    assert lamps.lamp(SHUTTER, states) == (ON, "on")
    assert lamps.lamp(STATE, states)[1] == "MOVING" and "MOVING" in lamps.shown
    tap.reset()
    lamps.update({SHUTTER: [Sample(now + 1, True)]}, now + 1, states)  # nothing changed
    assert tap.events == []
    lamps.update({SHUTTER: [Sample(now + 2, False)]}, now + 2, states)
    assert lamps.lamp(SHUTTER, states) == (OFF, "off") and len(tap.events) == 1
    error = Sample(now + 3, None, error="device sim/shutter/1 is not answering")
    lamps.update({SHUTTER: [error]}, now + 3, states)
    assert lamps.lamp(SHUTTER, states)[1] == "no value"
    assert "not answering" in lamps.problem_text  # the base view's banner says why
