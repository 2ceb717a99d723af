"""Does every attribute and command a dashboard names exist, with the right shape?

This needs Tango, and a process that later forks (``serve --num-procs``) must
not have initialised Tango, so the server runs the check in a child process:
``python -m tango_bokeh.dashboard.check FILE...`` prints one line per
problem and exits 0 (all good, maybe warnings), 1 (errors) or 2 (could not
check: database unreachable). Devices are queried concurrently, each call
with a time-out; a device that does not answer is a warning (it may come
back), a name that does not exist is an error.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..tango.names import parse_name

if TYPE_CHECKING:
    from ..tango.listing import Attribute
from ..tango.sample import Format
from ..views.kinds import NUMBERS, kinds
from .loader import DashboardError, DashboardFile, Problem, load_all
from .schema import Reference

#: Tango errors meaning "this device (or alias) is not in the database".
_UNDEFINED = {
    "DB_DeviceNotDefined",
    "API_DeviceNotDefined",
    "API_AliasNotDefined",
    "DB_AliasNotDefined",
    "API_WrongDeviceNameSyntax",
}


class CheckUnavailable(RuntimeError):
    """The attributes could not be checked at all (no database); the message says why."""


@dataclass
class _Device:
    address: str  # what DeviceProxy takes
    shown: str  # as the file wrote it
    uses: list[tuple[DashboardFile, Reference, str]]  # (file, reference, member name)


def _databases(files: Sequence[DashboardFile]) -> list[str]:
    hosts: set[str] = set()
    for f in files:
        for ref in f.model.references():
            name = parse_name(ref.name)
            hosts.add(name.host or "")
    return sorted(hosts)


def _check_database(host: str) -> None:
    from ..tango.database import ping  # in the check's own process

    if not host and not os.environ.get("TANGO_HOST"):
        raise CheckUnavailable(
            "TANGO_HOST is not set: set it, give tango_host: in the dashboard file, "
            "or start with --no-check"
        )
    shown = host or os.environ.get("TANGO_HOST", "")
    reachable, why = ping(host or None)
    if not reachable:
        raise CheckUnavailable(
            f"the Tango database at {shown} is unreachable ({why}): "
            "cannot check attribute names (start with --no-check to serve anyway)"
        )


def _query(device: _Device, timeout_ms: int) -> list[Problem]:
    from ..tango.listing import Unlisted, list_device

    problems: list[Problem] = []
    try:
        wants_commands = any(ref.role == "command" for _, ref, _ in device.uses)
        listing = list_device(device.address, timeout_ms, commands=wants_commands)
    except Unlisted as exc:
        if not exc.answered:
            for file, ref, _ in device.uses:
                if exc.reason in _UNDEFINED:
                    message = f"{ref.name!r}: no device {device.shown!r} in the Tango database"
                else:
                    message = f"{ref.name!r}: cannot reach device {device.shown} ({exc.text})"
                problems.append(file.problem(ref.path, message))
            return problems
        warned: set[Path] = set()
        for file, ref, _ in device.uses:
            if file.path in warned:
                continue
            warned.add(file.path)
            problems.append(
                file.problem(
                    ref.path,
                    f"device {device.shown} does not answer ({exc.text}); "
                    "its names are not checked",
                    "warning",
                )
            )
        return problems
    attributes, commands = listing.attributes, listing.commands
    for file, ref, member in device.uses:
        if ref.role == "command":
            assert commands is not None
            if member.lower() not in commands:
                problems.append(
                    file.problem(
                        ref.path,
                        f"{ref.name!r} is not a command of {device.shown}"
                        + _guess(member, list(commands.values())),
                    )
                )
            continue
        info = attributes.get(member.lower())
        if info is None:
            problems.append(
                file.problem(
                    ref.path,
                    f"{ref.name!r} is not an attribute of {device.shown}"
                    + _guess(member, [a.name for a in attributes.values()]),
                )
            )
            continue
        message = _shape_problem(ref, info)
        if message:
            problems.append(file.problem(ref.path, message))
    return problems


def _guess(member: str, names: list[str]) -> str:
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(member.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _shape_problem(ref: Reference, info: Attribute) -> str | None:
    """Why the panel that names ``ref`` cannot show this attribute (the registry of view
    kinds says what each shows), or None."""
    shape, data_type = info.shape, info.data_type
    data_format = shape.format
    if ref.role == "write":
        if data_format is not Format.SCALAR:
            return (f"{ref.name!r} is {_a(data_format)} attribute: only scalars can be written "
                    f"(show it in {_shown_in(shape)})")  # fmt: skip
        if not info.writable:
            return f"{ref.name!r} is read-only: it cannot be written"
        return None
    kind = kinds().get(ref.role)
    if kind is None or kind.accepts(shape):
        return None
    if data_format not in kind.formats:
        wanted = " or ".join(sorted(kind.formats))
        return (f"{ref.name!r} is {_a(data_format)} attribute: {_a(ref.role)} panel needs "
                f"{_a(wanted)} attribute (show it in {_shown_in(shape)})")  # fmt: skip
    needs = "numbers" if kind.kinds <= NUMBERS else f"values of kind {', '.join(kind.kinds)}"
    advice = _shown_in(shape, "use")
    return f"{ref.name!r} is a {data_type} attribute: {_a(ref.role)} needs {needs} ({advice})"


def _shown_in(shape: Any, verb: str = "") -> str:
    """Which panels can show an attribute of this shape: ``a trend or a table``."""
    able = [name for name, kind in kinds().items() if kind.accepts(shape)]
    if not able:
        return "no panel shows it"
    text = " or ".join(_a(name) for name in able)
    return f"{verb} {text}" if verb else text


def check_files(files: Sequence[DashboardFile], timeout: float = 3.0) -> list[Problem]:
    """Every problem with the names the files use (raises :class:`CheckUnavailable`)."""
    for host in _databases(files):
        _check_database(host)
    devices: dict[str, _Device] = {}
    for file in files:
        for ref in file.model.references():
            name = parse_name(ref.name)
            key = name.device_address.lower()
            device = devices.get(key)
            if device is None:
                device = devices[key] = _Device(name.device_address, name.device, [])
            device.uses.append((file, ref, name.attribute))
    problems: list[Problem] = []
    if devices:
        with ThreadPoolExecutor(min(8, len(devices)), thread_name_prefix="check") as pool:
            for found in pool.map(lambda d: _query(d, int(timeout * 1000)), devices.values()):
                problems += found
    seen: set[str] = set()
    unique: list[Problem] = []
    order = defaultdict(int, {str(f.path): i for i, f in enumerate(files)})
    for problem in sorted(problems, key=lambda p: (order[p.file], p.line or 0, p.path)):
        text = str(problem)
        if text not in seen:
            seen.add(text)
            unique.append(problem)
    return unique


@dataclass
class CheckResult:
    ok: bool  # no error (warnings allowed)
    lines: list[str]  # problems, one per line, ready to print
    unavailable: bool = False


def check_in_subprocess(paths: Sequence[str | Path], timeout: float = 60.0) -> CheckResult:
    """Run the check in a fresh Python process, so this one never initialises Tango."""
    argv = [sys.executable, "-m", "tango_bokeh.dashboard.check", *map(str, paths)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return CheckResult(
            False,
            [
                f"the attribute check did not finish within {timeout:g} s "
                "(is the Tango database slow?); start with --no-check to skip it"
            ],
            unavailable=True,
        )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode not in (0, 1, 2):
        lines.append(f"the attribute check failed (exit code {done.returncode}):")
        lines += done.stderr.strip().splitlines()[-5:]
    return CheckResult(done.returncode == 0, lines, unavailable=done.returncode not in (0, 1))


def main(argv: Sequence[str]) -> int:
    try:
        files = load_all(argv)
    except DashboardError as exc:
        for problem in exc.problems:
            print(problem, flush=True)
        return 1
    try:
        problems = check_files(files)
    except CheckUnavailable as exc:
        print(exc, flush=True)
        return 2
    except Exception as exc:  # a bug or an unexpected Tango failure: say so, briefly
        print(f"the attribute check failed: {type(exc).__name__}: {exc}", flush=True)
        return 3
    for problem in problems:
        print(problem, flush=True)
    return 1 if any(p.severity == "error" for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
