"""Live visualisation of Tango-controls device attributes with bokeh."""

from .hub import Cursor, Hub
from .magic import load_ipython_extension, unload_ipython_extension  # %load_ext tango_bokeh
from .session import Session
from .tango import AttributeInfo, AttributeName, InvalidName, Quality, Sample, parse_name

__all__ = [
    "AttributeInfo",
    "AttributeName",
    "Cursor",
    "Hub",
    "InvalidName",
    "Quality",
    "Sample",
    "Session",
    "load_ipython_extension",
    "parse_name",
    "unload_ipython_extension",
]
__version__ = "0.1.0"
