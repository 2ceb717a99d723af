"""The Tango database, asked in one place: is it there (health check, name check, CLI), and
what the embedded control system registers in it; and whether a device answers."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import tango

from .errors import describe


def connect(host: str | None = None) -> tango.Database:
    """The database at ``host`` (``name:port``), or the one ``TANGO_HOST`` names."""
    if host:
        name, port = host.rsplit(":", 1)
        return tango.Database(name, int(port))
    return tango.Database()


def ping(host: str | None = None) -> tuple[bool, str]:
    """``(True, "reachable")`` or ``(False, why)``; blocks up to Tango's client time-out."""
    try:
        connect(host).get_info()
    except tango.DevFailed as exc:
        return False, describe(exc)[1]
    return True, "reachable"


def register_device(
    db: tango.Database,
    name: str,
    tango_class: str,
    server: str,
    *,
    properties: Mapping[str, Any] | None = None,
    polled: Mapping[str, int] | None = None,
    attribute_properties: Mapping[str, Mapping[str, Any]] | None = None,
    alias: str | None = None,
) -> None:
    """Add device ``name`` of ``tango_class`` to ``server`` (``Server/instance``), with its
    properties, device-side polling (attribute -> period in ms) and alias."""
    info = tango.DbDevInfo()
    info.name, info._class, info.server = name, tango_class, server
    db.add_device(info)
    if properties:
        db.put_device_property(name, dict(properties))
    if polled:
        flat: list[str] = []
        for attribute, period in polled.items():
            flat += [attribute.lower(), str(period)]
        db.put_device_property(name, {"polled_attr": flat})
    if attribute_properties:
        db.put_device_attribute_property(
            name, {a: dict(p) for a, p in attribute_properties.items()}
        )
    if alias:
        with contextlib.suppress(tango.DevFailed):
            db.delete_device_alias(alias)
        db.put_device_alias(name, alias)


def answers(address: str, timeout_ms: int = 1000) -> bool:
    """Whether the device at ``address`` (a full Tango name) answers a ping now."""
    try:
        proxy = tango.DeviceProxy(address)
        proxy.set_timeout_millis(timeout_ms)
        proxy.ping()
    except tango.DevFailed:
        return False
    return True


def resolve_alias(alias: str, host: str | None = None) -> str | None:
    """The device name ``alias`` stands for in the database at ``host``; None if it names none
    (or the database cannot be asked)."""
    try:
        return str(connect(host).get_device_alias(alias))
    except tango.DevFailed:
        return None
