"""Thread contracts written as code: which thread a session's method may be called from.

A bokeh Document is not thread-safe: its models may be changed only on the
thread of its server loop (bokeh marks the opposite case, handlers that run
without the Document lock, with ``without_document_lock``). Sessions are called
from everywhere — notebook cells, Tango-side threads, timers, tests — so each
public method of :class:`~tango_bokeh.session.Session` says which thread it
expects:

* :func:`any_thread`: safe from any thread as it is (it touches no model, or
  routes what does through :func:`document_thread`);
* :func:`document_thread`: the body touches the Document; called on the
  Document's loop it runs at once, called from another thread it is queued
  onto that loop through the session's one thread-safe entry
  (``Session._in_document``: bokeh's next-tick callback, which tornado's
  ``IOLoop.add_callback`` makes thread-safe) and returns ``None``.
* :func:`loop_only`: must be called on the Document's loop (ticks, page set-up);
  :data:`CHECK` (``TANGO_BOKEH_CHECK_THREADS=1``; the tests set it) turns a
  call from elsewhere into :class:`WrongThread` instead of a silent race.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The attribute a marked method carries, naming its contract.
CONTRACT = "__thread_contract__"
ANY = "any thread"
QUEUED = "document thread (queued from any other)"
LOOP = "document thread only"

#: Raise :class:`WrongThread` when a :func:`loop_only` method is called off its loop.
CHECK = os.environ.get("TANGO_BOKEH_CHECK_THREADS", "") not in ("", "0")


class WrongThread(RuntimeError):
    """A method meant for the Document's loop was called from another thread."""


class DocumentOwner(Protocol):
    """What the decorators need of the object whose method they wrap."""

    def on_document_thread(self) -> bool: ...

    def _in_document(self, callback: Callable[[], None]) -> None: ...


def any_thread(method: F) -> F:
    """Mark ``method`` as safe to call from any thread."""
    setattr(method, CONTRACT, ANY)
    return method


def document_thread(method: F) -> F:
    """Run ``method`` on its owner's Document loop: at once there, queued from elsewhere."""

    @functools.wraps(method)
    def wrapper(self: DocumentOwner, *args: Any, **kwargs: Any) -> Any:
        if self.on_document_thread():
            return method(self, *args, **kwargs)
        self._in_document(functools.partial(method, self, *args, **kwargs))
        return None

    setattr(wrapper, CONTRACT, QUEUED)
    return wrapper  # type: ignore[return-value]


def loop_only(method: F) -> F:
    """Mark ``method`` as one for the Document's loop; checked when :data:`CHECK` is on."""
    if not CHECK:
        setattr(method, CONTRACT, LOOP)
        return method

    @functools.wraps(method)
    def wrapper(self: DocumentOwner, *args: Any, **kwargs: Any) -> Any:
        if not self.on_document_thread():
            raise WrongThread(
                f"{type(self).__name__}.{method.__name__} runs on its Document's loop only; "
                "from another thread use safe_document_modifications()"
            )
        return method(self, *args, **kwargs)

    setattr(wrapper, CONTRACT, LOOP)
    return wrapper  # type: ignore[return-value]


def contract(method: Callable[..., Any]) -> str | None:
    """The thread contract ``method`` declares, if any."""
    return getattr(method, CONTRACT, None)


class LazyPool:
    """Worker threads shared by a whole process, made at the first call (importing a
    module starts no thread), off the bokeh loop's path. Thread-safe."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers, self._name = workers, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=self._name)
            return self._pool


__all__ = [
    "CHECK",
    "LazyPool",
    "WrongThread",
    "any_thread",
    "contract",
    "document_thread",
    "loop_only",
]
