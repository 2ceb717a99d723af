"""Device servers that other machines (or containers) can reach: ``--server-address``.

By default the simulated servers listen on loopback only. In a container their
clients live in other containers, so ``tango-bokeh sim --server-address 0.0.0.0``
makes them listen on every interface (omniORB's empty endpoint host).
"""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from tango_bokeh.cli import main
from tango_bokeh.sim import ControlSystem
from tango_bokeh_devices.catalog import DEMO

pytestmark = pytest.mark.tango

BEAM = next(s for s in DEMO if s.server == "SimBeamCurrent")


def _listening(pid: int) -> set[str]:
    return {
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }


@pytest.mark.parametrize(
    ("server_host", "expected"), [(None, {"127.0.0.1"}), ("0.0.0.0", {"0.0.0.0", "::"})]
)
def test_servers_listen_where_asked(tmp_path: Path, server_host: str | None, expected: set[str]):
    import tango

    system = ControlSystem(tmp_path, (BEAM,), server_host=server_host)
    with system:
        device = BEAM.devices[0].name
        assert tango.DeviceProxy(f"tango://{system.tango_host}/{device}").ping() >= 0
        server_pid = system._servers[BEAM.full_name].pid
        listening = _listening(server_pid)
        assert listening and listening <= expected, listening


def test_sim_offers_the_option():
    help_text = CliRunner().invoke(main, ["sim", "--help"]).output
    assert "--server-address" in help_text
