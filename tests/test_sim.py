"""The embedded control system against an existing database (TANGO_HOST set)."""

from __future__ import annotations

import pytest
import tango

from tango_bokeh.sim import ControlSystem, ControlSystemError
from tango_bokeh_devices.catalog import catalog


def test_existing_database_gets_only_the_simulated_servers(control_system, tmp_path):
    counter = [s for s in catalog(instance="ext", domain="ext") if s.server == "SimCounter"]
    system = ControlSystem(tmp_path, counter, tango_host=control_system.tango_host)
    with system:
        assert not system.embedded and system.pids()  # a server, no database of its own
        proxy = tango.DeviceProxy(f"tango://{control_system.tango_host}/ext/counter/1")
        assert proxy.read_attribute("Counts").value > 0
        db = tango.Database(*control_system.tango_host.split(":"))
        assert db.get_device_alias("ext_diode1") == "ext/counter/1"
        pids = system.pids()
    assert not any(_alive(pid) for pid in pids)


def test_no_servers_only_checks_the_database(control_system, tmp_path):
    system = ControlSystem(tmp_path, (), tango_host=control_system.tango_host, start_servers=False)
    with system:
        assert system.pids() == []


def test_state_directory_is_locked(control_system, tmp_path):
    first = ControlSystem(tmp_path, (), tango_host=control_system.tango_host, start_servers=False)
    with first, pytest.raises(ControlSystemError, match="in use"):
        ControlSystem(tmp_path, (), tango_host=control_system.tango_host).start()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
