"""Dashboard files: YAML text -> a validated Dashboard, or errors with file, line and key.

PyYAML parses; the composed node tree gives every key path its line number;
pydantic validates. Each problem is reported as ``file:line: key.path[0]:
message`` — the form editors and CI logs link to.

A file may be hostile or broken, and must never hang or crash the server:
files are read with a size limit (:data:`MAX_FILE_BYTES`, by
:func:`tango_bokeh.files.read_text`), and the YAML is composed by a loader
that refuses anchors and aliases (an "alias bomb" of a few hundred bytes
expands to gigabytes), stops at :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_NODES` values (PyYAML's composer recurses and is slow), and
refuses numbers longer than :data:`MAX_NUMBER_CHARS` (converting them is
quadratic) — each as a problem with file and line.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..files import FileProblem, read_text
from .schema import Dashboard

Path_ = tuple[str | int, ...]

#: URL paths the server uses itself: a dashboard file may not be named like them.
RESERVED_NAMES = frozenset(
    {"static", "metrics", "healthz", "alive", "login", "logout", "favicon.ico"}
)
_URL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")

#: Largest dashboard file read. A dashboard is written by hand (dashboards/demo.yaml is
#: 3 KiB); 256 KiB is a page of well over a thousand panels.
MAX_FILE_BYTES = 256 * 1024
#: Deepest nesting of YAML lists and mappings: a container panel takes 2 or 3 levels.
MAX_DEPTH = 64
#: Most YAML values (scalars, lists, mappings) in one file: bounds parsing time and memory
#: (demo.yaml has 250; PyYAML, in pure Python, composes about 20 000 a second).
MAX_NODES = 10_000
#: Longest number, in characters (Python converts long digit strings in quadratic time).
MAX_NUMBER_CHARS = 100
#: Problems listed for one file; the rest are counted.
MAX_PROBLEMS = 100
#: Values quoted in messages are cut to this many characters.
_QUOTE_CHARS = 60


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dashboard file, where it is and what to do about it."""

    file: str
    line: int | None
    path: str  # "panels[2].trend.attributes[0]", or "" for the whole file
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.path}: {self.message}" if self.path else self.message
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{what}"


class DashboardError(Exception):
    """Dashboard files that cannot be served; ``problems`` says why, one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class DashboardFile:
    """A validated dashboard plus where it came from (for URLs and error lines)."""

    path: Path
    model: Dashboard
    lines: dict[Path_, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The URL path of the dashboard: the file name without its suffix."""
        return self.path.stem

    @property
    def title(self) -> str:
        return self.model.title

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path``, or of its closest enclosing key."""
        return _line_of(self.lines, path)

    def problem(self, path: Path_, message: str, severity: str = "error") -> Problem:
        return Problem(str(self.path), self.line_of(path), format_path(path), message, severity)


def format_path(path: Iterable[str | int]) -> str:
    """``("panels", 2, "trend", "attributes", 0)`` -> ``panels[2].trend.attributes[0]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) and len(part) <= _QUOTE_CHARS:
            text += f".{part}" if text else part
        else:
            text += f"[{_short(part)}]"
    return text


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


# -- bounded YAML -----------------------------------------------------------------------


class _Refused(Exception):
    """YAML this loader will not compose: a problem at ``mark``."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader without anchors or aliases, with bounded nesting, size and numbers.

    Checked as each event arrives, before the composer (which recurses) goes
    one level deeper, so no input makes it recurse more than :data:`MAX_DEPTH`
    levels or build more than :data:`MAX_NODES` nodes.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise _Refused(
                event.start_mark,
                f"YAML anchors and aliases ({sign}{_short(event.anchor, quote=False)}) are not "
                "allowed in a dashboard file: write the values out",
            )
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(
                event.start_mark,
                f"more than {MAX_NODES} YAML values: too big for one dashboard, split it up",
            )
        if not isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(
                event.start_mark,
                f"lists and mappings nested more than {MAX_DEPTH} levels deep",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if (
            isinstance(node, yaml.ScalarNode)
            and node.tag in _NUMBER_TAGS
            and len(node.value) > MAX_NUMBER_CHARS
        ):
            raise _Refused(node.start_mark, f"a number longer than {MAX_NUMBER_CHARS} characters")
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, _Refused):
            raise
        except Exception as exc:  # e.g. the date 2024-13-45, or "!!bool maybe"
            kind = str(node.tag).rsplit(":", 1)[-1]
            detail = f" ({exc})" if type(exc) is ValueError else ""
            raise _Refused(
                node.start_mark, f"cannot read {_short(node.value)} as a YAML {kind}{detail}"
            ) from None


def _short(value: Any, quote: bool = True) -> str:
    """``repr(value)`` (or ``str`` when not ``quote``), cut for a one-line message."""
    text = repr(value) if quote else str(value)
    if len(text) <= _QUOTE_CHARS:
        return text
    return text[: _QUOTE_CHARS - 4] + ("...'" if quote and text[0] == "'" else "...")


def _compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree and the data of one YAML document (raises YAMLError or _Refused)."""
    if len(text) > MAX_FILE_BYTES:  # characters: never more than the bytes of a file
        raise _Refused(
            None, f"more than {MAX_FILE_BYTES // 1024} KiB of text: too big for a dashboard"
        )
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        try:
            data = loader.construct_document(node) if node is not None else None
        except (yaml.YAMLError, _Refused):
            raise
        except Exception as exc:  # PyYAML constructors have more failures than YAMLError
            raise _Refused(node.start_mark, f"cannot read the YAML: {exc}") from None
    finally:
        loader.dispose()
    return node, data


# -- YAML with positions ---------------------------------------------------------------


def _positions(node: yaml.Node, path: Path_, lines: dict[Path_, int], dupes: list[Path_]) -> None:
    """Record the line of every key and list item under ``node``; collect duplicate keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            here = (*path, key)
            if key in seen:
                dupes.append(here)
                lines[here] = key_node.start_mark.line + 1  # point at the repetition
            seen.add(key)
            lines.setdefault(here, key_node.start_mark.line + 1)
            _positions(value_node, here, lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, (*path, i), lines, dupes)


def _yaml_error(file: str, exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):  # no mark, and a multi-line str()
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        what = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "character"
        return Problem(file, line, "", f"YAML syntax error: unacceptable {what}: {exc.reason}")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    text = f"YAML syntax error: {problem}"
    if context:
        text += f" ({context})"
    if mark is not None:
        text += f" at column {mark.column + 1}"
    return Problem(file, mark.line + 1 if mark is not None else None, "", text)


# -- pydantic errors -> problems ------------------------------------------------------------


def _inner_types(annotation: Any) -> list[Any]:
    """The model classes reachable one step down an annotation (lists, dicts, unions)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _inner_types(typing.get_args(annotation)[0])
    if origin in (list, tuple, set, dict, typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if origin is dict:
            args = args[1:]
        return [t for arg in args for t in _inner_types(arg)] or list(args)
    return [annotation]


def _model_at(data: Any, path: Path_) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` (for "did you mean")."""
    current: Any = Dashboard
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            candidates = _inner_types(info.annotation)
        else:
            candidates = [current]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        current = models[0] if models else None
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _clean_path(loc: tuple[Any, ...], data: Any, keep_last: bool) -> Path_:
    """Keep the parts of a pydantic ``loc`` that walk the data (drop union/type tags)."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict):
            key = next((k for k in current if str(k) == str(part)), None)
            if key is not None:
                path.append(str(key))
                current = current[key]
                continue
            if last and keep_last:
                path.append(str(part))
            continue
        if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
            continue
    return tuple(path)


_PLAIN = {
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "string_type": "expected text",
    "list_type": "expected a list ([a, b] or one '- ' item per line)",
    "tuple_type": "expected a list of two numbers, e.g. [0, 10]",
    "dict_type": "expected a mapping (key: value lines)",
    "model_type": "expected a mapping (key: value lines)",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "too_short": "needs at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_long": "must be at most {max_length} characters",
    "string_pattern_mismatch": "expected host:port, e.g. tango.example.org:10000",
}


def _message(error: dict[str, Any], data: Any, path: Path_) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        model = _model_at(data, _model_path(path[:-1]))
        allowed = list(model.model_fields) if model is not None else []
        text = f"unknown key {_short(key)}"
        guess = difflib.get_close_matches(str(key), allowed, n=1)
        if guess:
            text += f" (did you mean {guess[0]!r}?)"
        if allowed:
            text += f"; allowed here: {', '.join(allowed)}"
        return text
    if kind == "missing":
        return f"required key {path[-1]!r} is missing" if path else "required key is missing"
    ctx = error.get("ctx") or {}
    plain = _PLAIN.get(kind)
    message = plain.format(**ctx) if plain else str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    value = error.get("input")
    if kind == "string_too_long" and isinstance(value, str):
        message += f" (it has {len(value)})"
    elif value is not None and not isinstance(value, dict | list):
        message += f" (got {_short(value)})"
    return message


def _model_path(path: Path_) -> Path_:
    """A data path without list indices and tab titles: the walk through model fields."""
    out: list[str | int] = []
    skip_next = False
    for part in path:
        if skip_next:
            skip_next = False
            continue
        if isinstance(part, int):
            continue
        out.append(part)
        if part == "tabs":
            skip_next = True  # the tab title
    return tuple(out)


def _problems_from(
    file: str, exc: ValidationError, data: Any, lines: dict[Path_, int]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Path_, str]] = set()
    for error in exc.errors(include_url=False):
        keep_last = error["type"] == "missing"
        path = _clean_path(tuple(error["loc"]), data, keep_last)
        message = _message(error, data, path)
        if len(message) > 4 * _QUOTE_CHARS:  # a validator quoting a long value
            message = message[: 4 * _QUOTE_CHARS - 3] + "..."
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line_path = path[:-1] if keep_last else path
        problems.append(Problem(file, _line_of(lines, line_path), format_path(path), message))
    return sorted(problems, key=lambda p: p.line or 0)


# -- public ---------------------------------------------------------------------------------


def parse(text: str, file: str = "<dashboard>") -> DashboardFile:
    """Validate dashboard ``text``; raise :class:`DashboardError` listing every problem.

    Safe on any text: anchors, aliases, deep nesting and oversized input are problems too.
    """
    try:
        node, data = _compose(text)
    except yaml.YAMLError as exc:
        raise DashboardError([_yaml_error(file, exc, text)]) from None
    except _Refused as exc:
        line = exc.mark.line + 1 if exc.mark is not None else None
        raise DashboardError([Problem(file, line, "", exc.message)]) from None
    if node is None or data is None:
        raise DashboardError(
            [Problem(file, None, "", "the file is empty: a dashboard needs a title and panels")]
        )
    if not isinstance(data, dict):
        raise DashboardError(
            [
                Problem(
                    file,
                    node.start_mark.line + 1,
                    "",
                    f"expected a mapping (title:, panels:, ...) at the top, "
                    f"got a {type(data).__name__}",
                )
            ]
        )
    lines: dict[Path_, int] = {}
    dupes: list[Path_] = []
    _positions(node, (), lines, dupes)
    problems = [
        Problem(file, lines.get(d), format_path(d), f"duplicate key {_short(d[-1])}") for d in dupes
    ]
    try:
        model = Dashboard.model_validate(data)
    except ValidationError as exc:
        problems += _problems_from(file, exc, data, lines)
        model = None
    if problems or model is None:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = problems[:MAX_PROBLEMS]
            problems.append(Problem(file, None, "", f"... and {more} more problem(s)"))
        raise DashboardError(problems)
    return DashboardFile(Path(file), model, lines)


def load(path: str | Path) -> DashboardFile:
    """Read and validate one dashboard file (a regular UTF-8 file of ``MAX_FILE_BYTES`` at most)."""
    path = Path(path)
    try:
        text = read_text(path, what="dashboard file", limit=MAX_FILE_BYTES)
    except FileProblem as exc:
        raise DashboardError([Problem(str(path), None, "", exc.message)]) from None
    loaded = parse(text, str(path))
    problems = _name_problems(loaded.path)
    if problems:
        raise DashboardError(problems)
    return loaded


def _name_problems(path: Path) -> list[Problem]:
    name = path.stem
    if not _URL_NAME.match(name):
        return [
            Problem(
                str(path),
                None,
                "",
                f"the file name {name!r} becomes the dashboard's URL path: use letters, digits, "
                "'-' and '_' only",
            )
        ]
    if name.lower() in RESERVED_NAMES:
        return [Problem(str(path), None, "", f"{name!r} is a URL the server uses: rename the file")]
    return []


def load_all(paths: Iterable[str | Path]) -> list[DashboardFile]:
    """Load every file; raise one :class:`DashboardError` with the problems of all of them."""
    loaded: list[DashboardFile] = []
    problems: list[Problem] = []
    names: dict[str, Path] = {}
    for path in paths:
        try:
            dashboard = load(path)
        except DashboardError as exc:
            problems += exc.problems
            continue
        other = names.get(dashboard.name.lower())
        if other is not None:
            problems.append(
                Problem(
                    str(dashboard.path),
                    None,
                    "",
                    f"another file ({other}) has the same name: both would be served at "
                    f"/{dashboard.name}",
                )
            )
            continue
        names[dashboard.name.lower()] = dashboard.path
        loaded.append(dashboard)
    if problems:
        raise DashboardError(problems)
    return loaded
