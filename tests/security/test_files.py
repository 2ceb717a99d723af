"""Hostile or broken dashboard files: refused with one line naming the file, never a hang.

Findings 8 (YAML alias bombs) and 9 (deep nesting, non-UTF-8, /dev/zero, huge
files, FIFOs). Whatever could exhaust memory or hang on a regression runs in a
child process with a memory limit and a time-out, or in a thread with a
time-out, so a regression fails its test instead of taking the suite down.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tango_bokeh import files
from tango_bokeh.dashboard.check import check_in_subprocess
from tango_bokeh.dashboard.loader import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_PROBLEMS,
    DashboardError,
    load,
    parse,
)
from tango_bokeh.files import FileProblem, read_text

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tango_bokeh.cli"]
GOOD = "title: Good\npanels:\n  - table: {attributes: [sim/motor/1/Position]}\n"
MEMORY_LIMIT = 1 << 30  # of a child process (RLIMIT_DATA): a regression fails, not the machine


def bomb(levels: int, width: int = 9, merge: bool = False) -> str:
    """The "billion laughs": each level lists the previous one ``width`` times."""
    items = ",".join(['"lol"'] * width)
    lines = [f"l0: &l0 [{items}]"]
    for i in range(1, levels):
        if merge:
            lines.append(f"l{i}: &l{i} {{<<: [{','.join([f'*l{i - 1}'] * width)}]}}")
        else:
            lines.append(f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TANGO_HOST"}


_CHILD = """
import json, sys, time, tracemalloc
from tango_bokeh.dashboard.loader import DashboardError, load, parse
how, path = sys.argv[1:]
text = open(path, encoding="utf-8").read() if how == "parse" else None
tracemalloc.start()
start = time.process_time()
try:
    parse(text, path) if how == "parse" else load(path)
    error = None
except DashboardError as exc:
    error = str(exc)
cpu = time.process_time() - start
print(json.dumps({"error": error, "cpu": cpu, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def _in_child(how: str, path: Path) -> dict[str, Any]:
    """``load(path)`` or ``parse(text)`` in a child with bounded memory and time."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, how, str(path)],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _in_thread(fn: Callable[[], Any], unblock: Callable[[], None], timeout: float = 10) -> Any:
    """``fn()``'s result or exception, failing (not hanging) when it does not return."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"did not return within {timeout} s")
    return outcome[0]


def _open_writer(fifo: Path) -> Callable[[], None]:
    def unblock() -> None:  # a reader blocked in open() or read() of the FIFO gets EOF
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return unblock


def refused(text_or_path: str | Path, name: str = "d.yaml") -> str:
    """The one-line message of the refused file (load for a path, parse for text)."""
    with pytest.raises(DashboardError) as info:
        if isinstance(text_or_path, Path):
            load(text_or_path)
        else:
            parse(text_or_path, name)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# -- files.read_text ---------------------------------------------------------------------


def test_read_text_reads_a_regular_utf8_file_up_to_the_limit(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffé\n".encode())  # a byte order mark is dropped
    assert read_text(path, what="test file", limit=6) == "é\n"
    assert read_text(str(path), what="test file", limit=1000) == "é\n"
    with pytest.raises(FileProblem) as info:
        read_text(path, what="test file", limit=5)
    assert str(info.value) == f"{path}: is 6 bytes: a test file may be at most 5 bytes"
    assert info.value.path == str(path) and isinstance(info.value, ValueError)


def test_read_text_never_reads_more_than_the_limit(tmp_path: Path):
    # /proc files say they are empty, like a file that grows while it is read.
    with pytest.raises(FileProblem) as info:
        read_text("/proc/self/maps", what="test file", limit=10)
    assert (
        str(info.value)
        == "/proc/self/maps: is larger than 10 bytes: a test file may be at most 10 bytes"
    )


def test_read_text_refuses_a_fifo_without_blocking(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome = _in_thread(lambda: read_text(fifo, what="users file", limit=1000), _open_writer(fifo))
    assert isinstance(outcome, FileProblem)
    assert str(outcome) == f"{fifo}: is a FIFO (named pipe): a users file must be a regular file"


def test_read_text_refuses_what_is_not_a_regular_file(tmp_path: Path):
    for path, kind in (("/dev/zero", "a device"), (str(tmp_path), "a directory")):
        with pytest.raises(FileProblem) as info:
            read_text(path, what="test file", limit=1000)
        assert str(info.value) == f"{path}: is {kind}: a test file must be a regular file"
    link = tmp_path / "link"
    link.symlink_to("/dev/zero")
    with pytest.raises(FileProblem, match=r"link: is a device"):
        read_text(link, what="test file", limit=1000)


def test_read_text_gives_the_offset_and_line_of_the_first_byte_not_utf8(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"title: ok\ndescription: caf\xe9 au lait\n")
    with pytest.raises(FileProblem) as info:
        read_text(path, what="test file", limit=1000)
    assert str(info.value) == (
        f"{path}: is not UTF-8 text: byte 0xe9 at offset 26 (line 2) cannot be decoded; "
        "save the test file as UTF-8"
    )


def test_read_text_says_why_a_file_cannot_be_opened(tmp_path: Path, monkeypatch):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileProblem) as info:
        read_text(missing, what="test file", limit=10)
    assert str(info.value) == f"{missing}: no such file"
    with pytest.raises(FileProblem, match=r"not-a-dir/x: cannot read the test file: a part of"):
        (tmp_path / "not-a-dir").write_text("")
        read_text(tmp_path / "not-a-dir" / "x", what="test file", limit=10)

    path = tmp_path / "secret.txt"
    path.write_text("x")
    if os.geteuid() != 0:  # root reads anything: fake the refusal below as well
        path.chmod(0)
        with pytest.raises(FileProblem) as info:
            read_text(path, what="test file", limit=10)
        assert str(info.value) == f"{path}: cannot read the test file: permission denied"
        path.chmod(0o600)

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(files.os, "open", refuse)
    with pytest.raises(FileProblem) as info:
        read_text(path, what="test file", limit=10)
    assert str(info.value) == f"{path}: cannot read the test file: permission denied"


# -- alias bombs (finding 8) -------------------------------------------------------------


@pytest.mark.parametrize("how", ["load", "parse"])
@pytest.mark.parametrize(
    "levels,merge", [(9, False), (12, False), (9, True)], ids=["9-levels", "12-levels", "merge"]
)
def test_alias_bombs_are_refused_at_once(tmp_path: Path, how: str, levels: int, merge: bool):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(levels, merge=merge))
    assert path.stat().st_size < 1000  # billions of values once expanded
    result = _in_child(how, path)
    assert result["error"] == (
        f"{path}:1: YAML anchors and aliases (&l0) are not allowed in a dashboard file: "
        "write the values out"
    )
    assert result["peak"] < 100e6
    assert result["cpu"] < 1.0  # refused at the first anchor: milliseconds


def test_an_alias_without_anchor_and_a_late_anchor_are_refused():
    assert refused(GOOD + "extra: *nowhere\n") == (
        "d.yaml:4: YAML anchors and aliases (*nowhere) are not allowed in a dashboard file: "
        "write the values out"
    )
    assert "d.yaml:3: YAML anchors and aliases (&t)" in refused(
        "title: x\npanels:\n  - table: &t {attributes: [a/b]}\n"
    )


def test_shipped_dashboards_use_no_anchors():
    for path in sorted((ROOT / "dashboards").glob("*.yaml")):
        load(path)


# -- deep nesting, many values, numbers ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{a: " * 50_000,
        "- " * 100_000 + "x",
        "".join("  " * i + "- b:\n" for i in range(200)),
    ],
    ids=["flow-lists", "flow-mappings", "block-lists", "block-mappings"],
)
def test_deep_nesting_is_refused_before_pyyaml_recurses(text: str):
    message = refused(text)
    assert re.fullmatch(
        rf"d\.yaml:\d+: lists and mappings nested more than {MAX_DEPTH} levels deep", message
    )


def test_nesting_a_dashboard_needs_is_accepted():
    rows = "".join("  " * i + "- row:\n" for i in range(20))
    parse(f"title: x\npanels:\n{rows}{'  ' * 20}- table: {{attributes: [a/b]}}\n")


def test_too_many_values_and_long_numbers_are_refused():
    assert refused("title: x\nitems: [" + "a," * MAX_NODES + "]\n") == (
        f"d.yaml:2: more than {MAX_NODES} YAML values: too big for one dashboard, split it up"
    )
    # Sexagesimal ints convert in quadratic time; long digit strings raise ValueError.
    assert refused("title: 1" + ":1" * 100_000) == "d.yaml:1: a number longer than 100 characters"
    assert refused("title: 1" + "0" * 5000) == "d.yaml:1: a number longer than 100 characters"


def test_values_pyyaml_cannot_construct_are_problems_not_tracebacks():
    assert refused("title: 2024-13-45\n") == (
        "d.yaml:1: cannot read '2024-13-45' as a YAML timestamp (month must be in 1..12)"
    )
    assert refused("title: !!bool maybe\n") == "d.yaml:1: cannot read 'maybe' as a YAML bool"
    assert refused("title: x\x00\n") == (
        "d.yaml:1: YAML syntax error: unacceptable character #x0000: "
        "special characters are not allowed"
    )


def test_text_lengths_are_bounded_and_messages_stay_short():
    long = "x" * 5000
    assert refused(f"title: t\ndescription: {long}\n" + GOOD[12:]) == (
        "d.yaml:2: description: must be at most 4000 characters (it has 5000)"
    )
    message = refused(f"title: t\npanels:\n  - table: {{attributes: [{long}]}}\n")
    assert message.startswith("d.yaml:3: panels[0].table.attributes[0]: must be at most 512")
    message = refused(GOOD + f"{long[:1000]}: 1\n")  # (a YAML key has 1024 characters at most)
    assert len(message) < 400 and "unknown key 'xxxx" in message


def test_at_most_a_hundred_problems_are_listed():
    text = "title: t\npanels:\n  - table:\n      attributes:\n" + "      - a\n" * 500
    with pytest.raises(DashboardError) as info:
        parse(text, "d.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1] == f"d.yaml: ... and {500 - MAX_PROBLEMS} more problem(s)"


def test_parse_refuses_text_larger_than_a_file_may_be():
    assert refused("title: " + "x" * MAX_FILE_BYTES) == (
        "d.yaml: more than 256 KiB of text: too big for a dashboard"
    )


# -- files that are not dashboards (finding 9) ---------------------------------------------


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50 MB dashboard whose description is the 50 MB."""
    path = tmp_path_factory.mktemp("huge") / "huge.yaml"
    with path.open("w") as f:
        f.write("title: Huge\ndescription: ")
        for _ in range(50):
            f.write("x" * 1_000_000)
        f.write("\n" + GOOD[12:])
    return path


def test_a_50_mb_file_is_refused_without_being_read(huge: Path):
    tracemalloc.start()
    try:
        message = refused(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (
        message
        == f"{huge}: is {huge.stat().st_size} bytes: a dashboard file may be at most 256 KiB"
    )
    assert peak < 10e6


def test_non_utf8_device_directory_and_fifo_are_refused(tmp_path: Path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"title: Caf\xe9\n" + GOOD[12:].encode())
    assert refused(latin1) == (
        f"{latin1}: is not UTF-8 text: byte 0xe9 at offset 10 (line 1) cannot be decoded; "
        "save the dashboard file as UTF-8"
    )
    assert refused(Path("/dev/zero")) == (
        "/dev/zero: is a device: a dashboard file must be a regular file"
    )
    assert (
        refused(tmp_path) == f"{tmp_path}: is a directory: a dashboard file must be a regular file"
    )
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    outcome = _in_thread(lambda: load(fifo), _open_writer(fifo))
    assert isinstance(outcome, DashboardError)
    assert (
        str(outcome) == f"{fifo}: is a FIFO (named pipe): a dashboard file must be a regular file"
    )


# -- tango-bokeh serve --check-only ---------------------------------------------------------


def _serve_check_only(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "serve", str(path), "--check-only"], capture_output=True, text=True,
        timeout=60, env=_env(), preexec_fn=_limit_memory, cwd=ROOT,
    )  # fmt: skip


def _one_line(result: subprocess.CompletedProcess, path: Path) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{path}"), result.stderr
    assert "slow" not in lines[0]
    return lines[0]


def test_serve_check_only_refuses_a_bomb_a_fifo_and_a_huge_file(tmp_path: Path, huge: Path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(12))
    start = time.monotonic()
    assert "anchors and aliases (&l0) are not allowed" in _one_line(_serve_check_only(path), path)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    try:
        line = _one_line(_serve_check_only(fifo), fifo)
    finally:
        _open_writer(fifo)()
    assert line.endswith("is a FIFO (named pipe): a dashboard file must be a regular file")
    assert "may be at most 256 KiB" in _one_line(_serve_check_only(huge), huge)
    assert time.monotonic() - start < 60  # three refusals, not three time-outs


def test_the_attribute_check_reports_the_loaders_message_not_a_slow_database(huge: Path):
    result = check_in_subprocess([huge], timeout=60)
    assert not result.ok and not result.unavailable
    assert result.lines == [
        f"{huge}: is {huge.stat().st_size} bytes: a dashboard file may be at most 256 KiB"
    ]
