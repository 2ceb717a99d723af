"""Simulated beamline: real PyTango device servers for trying and testing tango_bokeh.

Run one server with ``python -m tango_bokeh_devices <ServerName> <instance> [tango args]``.
The database configuration (properties, polling, event thresholds) lives in
:mod:`.catalog`; the classes each server hosts are listed in :mod:`.servers`.

This module deliberately imports nothing heavy, so that importing the catalog
does not load PyTango.
"""
