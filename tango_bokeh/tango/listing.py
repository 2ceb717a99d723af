"""What a device offers: its attributes (with their shape) and commands, for the name check.

One query per device (``attribute_list_query``, ``command_list_query`` when
asked), turned into our own types so that the dashboard's name check never
touches PyTango.
"""

from __future__ import annotations

from dataclasses import dataclass

import tango

from .convert import format_of, kind_of
from .errors import describe
from .sample import AttributeInfo


class Unlisted(Exception):
    """The device could not be listed: ``reason`` (Tango's) and ``text`` say why.

    ``answered`` is False when the device is unknown or unreachable (no proxy),
    True when a proxy was made but the device did not answer the queries.
    """

    def __init__(self, reason: str, text: str, answered: bool) -> None:
        super().__init__(text)
        self.reason, self.text, self.answered = reason, text, answered


@dataclass(frozen=True)
class Attribute:
    """One attribute of a listing: its shape as views see it, its Tango type, writability."""

    name: str
    shape: AttributeInfo  # format and kind (what a view accepts)
    data_type: str  # Tango's type name, e.g. DevDouble
    writable: bool


@dataclass(frozen=True)
class Listing:
    """A device's attributes and (when asked) commands, by lower-case name."""

    attributes: dict[str, Attribute]
    commands: dict[str, str] | None


def list_device(address: str, timeout_ms: int, commands: bool = False) -> Listing:
    """List the device at ``address``; :class:`Unlisted` if it cannot be."""
    try:
        proxy = tango.DeviceProxy(address)
        proxy.set_timeout_millis(timeout_ms)
    except tango.DevFailed as exc:
        raise Unlisted(*describe(exc), answered=False) from None
    try:
        infos = proxy.attribute_list_query()
        names = [c.cmd_name for c in proxy.command_list_query()] if commands else None
    except tango.DevFailed as exc:
        raise Unlisted(*describe(exc), answered=True) from None
    attributes = {}
    for info in infos:
        shape = AttributeInfo(
            info.name, format=format_of(info.data_format), kind=kind_of(info.data_type)[0]
        )
        data_type = str(tango.CmdArgType.values[info.data_type]).rsplit(".", 1)[-1]
        writable = info.writable != tango.AttrWriteType.READ
        attributes[info.name.lower()] = Attribute(info.name, shape, data_type, writable)
    return Listing(attributes, None if names is None else {n.lower(): n for n in names})


__all__ = ["Attribute", "Listing", "Unlisted", "list_device"]
