"""Writes and commands: the one place that changes a device on an operator's behalf.

The caller (a dashboard's controls) decides who may do what; this module
only does it, on a small pool of worker threads (never on a bokeh loop),
with one proxy per device and a client time-out, and turns the text an
operator typed into the attribute's or the command's type. Outcomes come
back as :class:`Written` / :class:`Ran`, refusals as :class:`Refused`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import tango

from .errors import describe
from .names import parse_name
from .proxies import ProxyCache

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Refused(Exception):
    """A write or command that did not happen; the message says why and is shown to the user."""


@dataclass(frozen=True)
class Written:
    attribute: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Ran:
    command: str
    argument: str | None
    reply: Any


class Actuator:
    """Writes attributes and runs commands on a small pool; one proxy per device."""

    def __init__(self, timeout_ms: int = 3000, workers: int = 2) -> None:
        self._timeout_ms = timeout_ms
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._proxies = ProxyCache(timeout_ms)
        self._lock = threading.Lock()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._lock:
            if self._pool is None:  # created on first use, after any fork
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="tango-write")
            return self._pool.submit(fn, *args)

    def _proxy(self, device: str) -> Any:
        return self._proxies.get(device)

    def write(self, attribute: str, text: str) -> Future[Written]:
        """Write ``text`` (converted to the attribute's type) to ``attribute``."""
        return self._submit(self._write, attribute, text)

    def run(self, command: str, argument: str | None) -> Future[Ran]:
        """Run ``command`` with ``argument`` (converted to its input type), or none."""
        return self._submit(self._run, command, argument)

    def _write(self, attribute: str, text: str) -> Written:
        name = parse_name(attribute)
        try:
            proxy = self._proxy(name.device_address)
            old = proxy.read_attribute(name.attribute)
            config = proxy.get_attribute_config(name.attribute)
            value = convert(text, old.value, config)
            proxy.write_attribute(name.attribute, value)
        except tango.DevFailed as exc:
            raise Refused(f"{attribute}: {describe(exc)[1]}") from None
        except ValueError as exc:
            raise Refused(f"{attribute}: {exc}") from None
        return Written(attribute, plain(old.value), plain(value))

    def _run(self, command: str, argument: str | None) -> Ran:
        name = parse_name(command)
        try:
            proxy = self._proxy(name.device_address)
            if argument is None:
                reply = proxy.command_inout(name.attribute)
            else:
                info = proxy.command_query(name.attribute)
                reply = proxy.command_inout(name.attribute, convert_argument(argument, info))
        except tango.DevFailed as exc:
            raise Refused(f"{command}: {describe(exc)[1]}") from None
        except ValueError as exc:
            raise Refused(f"{command}: {exc}") from None
        return Ran(command, argument, plain(reply))

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def plain(value: Any) -> Any:
    """numpy scalars and enums as plain Python values, for logs."""
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            return value
    if hasattr(value, "value") and isinstance(value.value, int):  # IntEnum
        return int(value)
    return value


def convert(text: str, old: Any, config: Any) -> Any:
    """The text typed in the page as the attribute's type (taken from its current value)."""
    raw = text.strip()
    labels = list(getattr(config, "enum_labels", None) or [])
    if labels:
        if raw in labels:
            return labels.index(raw)
        try:
            index = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not one of {', '.join(labels)}") from None
        if not 0 <= index < len(labels):
            raise ValueError(f"{index} is not one of 0..{len(labels) - 1}")
        return index
    current = plain(old)
    if isinstance(current, bool):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not true or false")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
    if isinstance(current, str):
        return text
    raise ValueError(f"values of type {type(current).__name__} cannot be written from a dashboard")


def convert_argument(text: str, info: Any) -> Any:
    """A command argument typed in the page, as the command's input type."""
    kind = str(getattr(info, "in_type", "")).rsplit(".", 1)[-1]
    raw = text.strip()
    try:
        if kind in ("DevDouble", "DevFloat"):
            return float(raw)
        if kind in ("DevShort", "DevLong", "DevLong64", "DevUShort", "DevULong", "DevULong64"):
            return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a valid {kind} argument") from None
    if kind == "DevBoolean":
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ValueError(f"{raw!r} is not true or false")
    if kind == "DevString":
        return text
    if kind == "DevVoid":
        return None
    raise ValueError(f"commands taking {kind} cannot be run from a dashboard")
