"""One ``DeviceProxy`` per device and client, made once: the one proxy cache.

A proxy costs a database query and a connection; acquisition, writes and
commands, and the demo's motion each keep theirs (their time-outs differ),
through this one class. Thread contract: any thread (one lock; a proxy made
twice by a race is dropped, the first one kept).
"""

from __future__ import annotations

import threading
from typing import Any

import tango


class ProxyCache:
    """Proxies by device address (any case), with the client time-out ``timeout_ms``."""

    def __init__(self, timeout_ms: int) -> None:
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._proxies: dict[str, Any] = {}

    def get(self, address: str, timeout_ms: int | None = None) -> Any:
        """The proxy of ``address``, made on first use with ``timeout_ms`` (default: the
        cache's); ``DevFailed`` if it cannot be made."""
        key = address.lower()
        with self._lock:
            proxy = self._proxies.get(key)
        if proxy is None:
            proxy = tango.DeviceProxy(address)
            proxy.set_timeout_millis(self.timeout_ms if timeout_ms is None else timeout_ms)
            with self._lock:
                proxy = self._proxies.setdefault(key, proxy)
        return proxy

    def __len__(self) -> int:
        with self._lock:
            return len(self._proxies)

    def clear(self) -> None:
        with self._lock:
            self._proxies.clear()


__all__ = ["ProxyCache"]
