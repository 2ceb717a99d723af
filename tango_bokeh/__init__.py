"""Live visualisation of Tango-controls device attributes with bokeh."""

from .hub import Cursor, Hub
from .magic import load_ipython_extension, unload_ipython_extension  # %load_ext tango_bokeh
from .monitor import MonitorSession
from .notebook import close_all, configure, monitor, status
from .session import Session
from .tango import AttributeInfo, AttributeName, InvalidName, Quality, Sample, parse_name
from .views import AutoView, Image, Spectrum, Trend, ValueTable, View, view_for

__all__ = [
    "AttributeInfo",
    "AttributeName",
    "AutoView",
    "Cursor",
    "Hub",
    "Image",
    "InvalidName",
    "MonitorSession",
    "Quality",
    "Sample",
    "Session",
    "Spectrum",
    "Trend",
    "ValueTable",
    "View",
    "close_all",
    "configure",
    "load_ipython_extension",
    "monitor",
    "parse_name",
    "status",
    "unload_ipython_extension",
    "view_for",
]
__version__ = "0.1.0"
