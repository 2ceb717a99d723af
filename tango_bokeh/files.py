"""Reading a file an operator names (a dashboard, the users file): bounded, never blocking.

A path on the command line may be a FIFO (opening or reading it would wait
for a writer forever), a device such as ``/dev/zero`` (endless), a directory,
a file far too big or not UTF-8. :func:`read_text` refuses each of them with
a :class:`FileProblem` whose text is one line naming the file, instead of a
hang, a ``MemoryError`` or a traceback; it never reads more than ``limit + 1``
bytes, even from a file that grows while it is read.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["FileProblem", "read_text"]

_CHUNK = 1 << 20

_ERRNO_TEXT = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ELOOP: "too many symbolic links (a link loop?)",
    errno.ENAMETOOLONG: "the path is too long",
    errno.ENXIO: "no such device",
    errno.ENODEV: "no such device",
    errno.EIO: "input/output error",
}


class FileProblem(ValueError):
    """A file that cannot be used; ``str()`` is one line: ``PATH: what is wrong``."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_problem(path: str, what: str, exc: OSError) -> FileProblem:
    if exc.errno == errno.ENOENT:
        return FileProblem(path, "no such file")
    text = _ERRNO_TEXT.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return FileProblem(path, f"cannot read the {what}: {text}")


def _check_mode(path: str, what: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise FileProblem(path, f"is {_kind(mode)}: a {what} must be a regular file")


def _too_big(path: str, what: str, limit: int, size: int | None) -> FileProblem:
    how_big = f"is {size} bytes" if size is not None else f"is larger than {_size(limit)}"
    return FileProblem(path, f"{how_big}: a {what} may be at most {_size(limit)}")


def read_text(path: str | os.PathLike[str], *, what: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes long.

    ``what`` names the file in messages ("dashboard file", "users file").
    Raises :class:`FileProblem` for a missing or unreadable file, anything
    but a regular file (checked before opening, and again on the open file),
    a file over ``limit`` bytes, or bytes that are not UTF-8 (the message
    gives the offset and line of the first bad byte). A leading UTF-8 byte
    order mark is dropped.
    """
    name = os.fspath(path)
    try:
        _check_mode(name, what, os.stat(name).st_mode)  # a device or FIFO is not even opened
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not wait.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(name, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _os_problem(name, what, exc) from None
    try:
        info = os.fstat(fd)
        _check_mode(name, what, info.st_mode)
        if info.st_size > limit:
            raise _too_big(name, what, limit, info.st_size)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise _os_problem(name, what, exc) from None
    finally:
        os.close(fd)
    if total > limit:
        raise _too_big(name, what, limit, None)  # it grew while being read
    data = b"".join(chunks)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FileProblem(
            name,
            f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}) cannot be decoded; save the {what} as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text
