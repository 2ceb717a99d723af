"""Tango attribute names in every form users type them.

Accepted forms (case-insensitive, as Tango itself is):

* ``tango://host:port/dom/fam/member/attr`` (optionally ``#dbase=no`` is refused)
* ``dom/fam/member/attr``
* ``alias/attr`` where ``alias`` is a device alias

Parsing is pure (no Tango call), so it is cheap enough for the bokeh loop;
aliases are resolved later, by the acquisition threads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_HOST = r"(?P<host>[A-Za-z0-9_.\-]+:\d{1,5})"
_SEGMENT = r"[A-Za-z0-9_.\-+]+"
_FULL = re.compile(rf"^tango://{_HOST}/(?P<rest>.+)$", re.IGNORECASE)
_REST = re.compile(rf"^(?P<device>{_SEGMENT}(?:/{_SEGMENT}/{_SEGMENT})?)/(?P<attr>{_SEGMENT})$")


class InvalidName(ValueError):
    """A string that is not a Tango attribute name."""


@dataclass(frozen=True)
class AttributeName:
    """A parsed attribute name; ``key`` is what identifies it in the hub."""

    device: str  # dom/fam/member, or a device alias
    attribute: str
    host: str | None = None  # "host:port" when given explicitly

    @property
    def is_alias(self) -> bool:
        return self.device.count("/") == 0

    @property
    def device_address(self) -> str:
        """What to give ``DeviceProxy``."""
        return f"tango://{self.host}/{self.device}" if self.host else self.device

    @property
    def key(self) -> str:
        """Canonical, case-folded identity of the attribute in this process."""
        base = f"{self.device}/{self.attribute}".lower()
        return f"tango://{self.host.lower()}/{base}" if self.host else base

    def __str__(self) -> str:
        return f"{self.device_address}/{self.attribute}"


def _default_host() -> str | None:
    host = os.environ.get("TANGO_HOST", "").split(",")[0].strip()
    return host.lower() or None


def parse_name(name: str) -> AttributeName:
    """Parse ``name`` or raise :class:`InvalidName` saying what is wrong with it."""
    if not isinstance(name, str):
        raise InvalidName(f"attribute name must be a string, not {type(name).__name__}")
    text = name.strip()
    if not text:
        raise InvalidName("empty attribute name")
    if "#" in text:
        raise InvalidName(f"{name!r}: '#dbase=no' style names are not supported")
    host = None
    match = _FULL.match(text)
    if match:
        host = match.group("host")
        text = match.group("rest")
    elif "://" in text:
        raise InvalidName(f"{name!r}: expected tango://host:port/domain/family/member/attribute")
    rest = _REST.match(text)
    if not rest:
        raise InvalidName(
            f"{name!r}: expected domain/family/member/attribute or device-alias/attribute"
        )
    if host is not None and host.lower() == _default_host():
        host = None  # the same control system as TANGO_HOST: share the channel
    return AttributeName(device=rest.group("device"), attribute=rest.group("attr"), host=host)
