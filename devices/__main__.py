"""``python -m tango_bokeh_devices <ServerName> <instance> [tango args...]``: run one server."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Start the named server; the Tango database must already know its devices."""
    args = sys.argv[1:] if argv is None else argv
    from .servers import SERVER_CLASSES

    if len(args) < 2 or args[0] not in SERVER_CLASSES:
        names = ", ".join(SERVER_CLASSES)
        print(
            "usage: python -m tango_bokeh_devices <ServerName> <instance> [tango args...]\n"
            f"ServerName is one of: {names}",
            file=sys.stderr,
        )
        return 2
    from tango.server import run

    server, instance, *extra = args
    run(SERVER_CLASSES[server], args=[server, instance, *extra])
    return 0


if __name__ == "__main__":
    sys.exit(main())
