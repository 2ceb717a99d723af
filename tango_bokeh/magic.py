"""``%tango_monitor``: the :func:`~tango_bokeh.notebook.monitor` one-liner as an IPython magic.

Load it with ``%load_ext tango_bokeh`` (or ``%load_ext tango_bokeh.magic``), then::

    %tango_monitor sim/motor/1/Position sim/counter/1/Counts --period 0.5
    panel = %tango_monitor mot1/Position --name motors --layout grid

The magic returns the session, like ``monitor()``. IPython is imported only
when the extension is loaded, so importing tango_bokeh does not need it.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as an exception (a cell error), never an exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"%tango_monitor: {message}\n{self.format_usage()}")


def _parser() -> _Parser:
    parser = _Parser(
        prog="%tango_monitor",
        description="Show live Tango attributes in the cell (see tango_bokeh.notebook.monitor).",
        add_help=False,
    )
    parser.add_argument("attributes", nargs="+", help="attribute names (any Tango name form)")
    parser.add_argument("-p", "--period", type=float, default=1.0, help="update period in s")
    parser.add_argument("-n", "--name", default=None, help="session name (replaces that one)")
    parser.add_argument("-t", "--title", default=None, help="page title")
    parser.add_argument("--layout", choices=("column", "grid"), default="column")
    parser.add_argument("--ncols", type=int, default=2, help="panels per row with --layout grid")
    return parser


def tango_monitor(line: str) -> Any:
    """%tango_monitor ATTRIBUTE [ATTRIBUTE ...] [--period S] [--name N] [--title T] [--layout column|grid] [--ncols K]"""  # noqa: E501
    from .notebook import monitor

    args = _parser().parse_args(shlex.split(line))
    options: dict[str, Any] = {"layout": args.layout, "ncols": args.ncols}
    if args.title:
        options["title"] = args.title
    return monitor(*args.attributes, name=args.name, period=args.period, **options)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%tango_monitor`` (what ``%load_ext tango_bokeh`` calls)."""
    ipython.register_magic_function(tango_monitor, magic_kind="line", magic_name="tango_monitor")


def unload_ipython_extension(ipython: Any) -> None:
    ipython.magics_manager.magics["line"].pop("tango_monitor", None)
