"""The subscription chain decisions, from real Tango error reasons."""

import pytest

from tango_bokeh.tango.modes import Mode, Step, following, next_step


@pytest.mark.parametrize(
    ("mode", "reason", "step"),
    [
        (Mode.CHANGE, "API_EventPropertiesNotSet", Step.NEXT),
        (Mode.PERIODIC, "API_EventPropertiesNotSet", Step.NEXT),
        (Mode.ARCHIVE, "API_EventPropertiesNotSet", Step.POLL),
        (Mode.CHANGE, "API_AttributePollingNotStarted", Step.POLL),
        (Mode.CHANGE, "API_AttrNotFound", Step.FAIL),
        (Mode.PENDING, "API_DeviceNotDefined", Step.FAIL),
        (Mode.PENDING, "DB_DeviceNotDefined", Step.FAIL),
        (Mode.CHANGE, "API_CantConnectToDevice", Step.RETRY),
        (Mode.PENDING, "API_DeviceNotExported", Step.RETRY),
        (Mode.PERIODIC, "API_SomethingNew", Step.NEXT),
    ],
)
def test_next_step(mode, reason, step):
    assert next_step(mode, reason) is step


def test_chain_order():
    assert following(Mode.CHANGE) is Mode.PERIODIC
    assert following(Mode.PERIODIC) is Mode.ARCHIVE
    assert following(Mode.ARCHIVE) is Mode.POLL
    assert Mode.CHANGE.is_event and not Mode.POLL.is_event
