"""Dashboard files: YAML text -> a validated Dashboard, or errors with file, line and key.

PyYAML parses; :func:`yaml.compose` gives the node tree from which every key
path gets its line number; pydantic validates. Each problem is reported as
``file:line: key.path[0]: message`` — the form editors and CI logs link to.
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

from .schema import Dashboard

Path_ = tuple[str | int, ...]

#: URL paths the server uses itself: a dashboard file may not be named like them.
RESERVED_NAMES = frozenset({"static", "metrics", "healthz", "login", "logout", "favicon.ico"})
_URL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


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
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    for end in range(len(path), -1, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


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


def _yaml_error(file: str, exc: yaml.YAMLError) -> Problem:
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
    "string_pattern_mismatch": "expected host:port, e.g. tango.example.org:10000",
}


def _message(error: dict[str, Any], data: Any, path: Path_) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        model = _model_at(data, _model_path(path[:-1]))
        allowed = list(model.model_fields) if model is not None else []
        text = f"unknown key {key!r}"
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
    if value is not None and not isinstance(value, dict | list):
        message += f" (got {value!r})"
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
        if (path, message) in seen:
            continue
        seen.add((path, message))
        line_path = path[:-1] if keep_last else path
        problems.append(Problem(file, _line_of(lines, line_path), format_path(path), message))
    return sorted(problems, key=lambda p: p.line or 0)


# -- public ---------------------------------------------------------------------------------


def parse(text: str, file: str = "<dashboard>") -> DashboardFile:
    """Validate dashboard ``text``; raise :class:`DashboardError` listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DashboardError([_yaml_error(file, exc)]) from None
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
        Problem(file, lines.get(d), format_path(d), f"duplicate key {d[-1]!r}") for d in dupes
    ]
    try:
        model = Dashboard.model_validate(data)
    except ValidationError as exc:
        problems += _problems_from(file, exc, data, lines)
        model = None
    if problems or model is None:
        raise DashboardError(problems)
    return DashboardFile(Path(file), model, lines)


def load(path: str | Path) -> DashboardFile:
    """Read and validate one dashboard file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DashboardError([Problem(str(path), None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DashboardError(
            [Problem(str(path), None, "", f"cannot read the file: {exc}")]
        ) from None
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
