"""Live visualisation of Tango-controls device attributes with bokeh."""

from .hub import Cursor, Hub
from .magic import (  # %load_ext tango_bokeh
    load_ipython_extension as load_ipython_extension,
)
from .magic import (
    unload_ipython_extension as unload_ipython_extension,
)
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
    "parse_name",
]
__version__ = "0.1.0"
