"""Live visualisation of Tango-controls device attributes with bokeh.

Names are imported on first use (PEP 562): ``import tango_bokeh`` or the pure
name parser loads neither PyTango nor bokeh's server nor the notebook code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_WHERE = {
    "Cursor": ".hub",
    "Hub": ".hub",
    "load_ipython_extension": ".magic",  # %load_ext tango_bokeh
    "unload_ipython_extension": ".magic",
    "MonitorSession": ".monitor",
    "close_all": ".notebook",
    "configure": ".notebook",
    "monitor": ".notebook",
    "status": ".notebook",
    "Session": ".session",
    "AttributeInfo": ".tango",
    "AttributeName": ".tango",
    "InvalidName": ".tango",
    "Quality": ".tango",
    "Sample": ".tango",
    "parse_name": ".tango",
    "AutoView": ".views",
    "Image": ".views",
    "Spectrum": ".views",
    "Trend": ".views",
    "ValueTable": ".views",
    "View": ".views",
    "view_for": ".views",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tango_bokeh' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # next time without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .hub import Cursor, Hub
    from .magic import load_ipython_extension, unload_ipython_extension
    from .monitor import MonitorSession
    from .notebook import close_all, configure, monitor, status
    from .session import Session
    from .tango import AttributeInfo, AttributeName, InvalidName, Quality, Sample, parse_name
    from .views import AutoView, Image, Spectrum, Trend, ValueTable, View, view_for
