"""Dashboard files: every bad input gives file, line, key path and a clear message (no Tango)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tango_bokeh.dashboard.auth import (
    Access,
    UsersFile,
    UsersFileError,
    add_user,
    hash_password,
    parse_users,
    verify_password,
)
from tango_bokeh.dashboard.loader import DashboardError, format_path, load, load_all, parse
from tango_bokeh.dashboard.schema import parse_duration

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "dashboards.md"


def problems(text: str, name: str = "d.yaml") -> list[str]:
    with pytest.raises(DashboardError) as info:
        parse(text, name)
    return [str(p) for p in info.value.problems]


def test_demo_dashboard_is_valid_and_names_the_beamline():
    demo = load(ROOT / "dashboards" / "demo.yaml")
    assert demo.name == "demo" and demo.title == "Simulated beamline"
    attributes = demo.model.attributes()
    for expected in ("mot1/Position", "sim/beam/current/Current", "sim/spectro/1/Spectrum",
                     "sim/camera/1/Image", "sim/motor/1/State"):  # fmt: skip
        assert expected in attributes
    assert len(attributes) == len({a.lower() for a in attributes})  # distinct
    kinds = {p.kind for _, p in demo.model.walk()}
    assert {"trend", "spectrum", "image", "table", "row", "tabs"} <= kinds


def test_every_example_in_the_documentation_is_valid():
    text = DOCS.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for block in blocks:
        if block.lstrip().startswith("# invalid"):
            continue
        if block.lstrip().startswith("- "):  # a panel list: wrap it into a dashboard
            block = "title: t\npanels:\n" + "\n".join("  " + line for line in block.splitlines())
        parse(block, "example.yaml")


def test_syntax_error_has_the_line():
    text = "title: x\npanels:\n  - trend: {attributes: [mot1/Position\n"
    (message,) = problems(text)
    assert message.startswith("d.yaml:4: YAML syntax error")


def test_unknown_key_is_an_error_with_a_suggestion():
    text = "title: x\npanels:\n  - trend:\n      attributes: [mot1/Position]\n      colour: [red]\n"
    (message,) = problems(text)
    assert message.startswith("d.yaml:5: panels[0].trend.colour: unknown key 'colour'")
    assert "did you mean 'colors'?" in message


def test_unknown_panel_kind():
    (message,) = problems("title: x\npanels:\n  - trends:\n      attributes: [a/b]\n")
    assert message.startswith("d.yaml:3: panels[0].trends: unknown key 'trends'")
    assert "did you mean 'trend'?" in message


def test_wrong_types_are_each_reported_on_their_line():
    text = (
        "title: x\n"
        "refresh: fast\n"
        "panels:\n"
        "  - trend:\n"
        "      attributes: [mot1/Position]\n"
        "      log_y: maybe\n"
        "      points: lots\n"
        "      y_range: [5, 1]\n"
    )
    found = problems(text)
    assert found == [
        "d.yaml:2: refresh: 'fast' is not a duration: write e.g. 30, '30 s', '10 min' or '2 h'",
        "d.yaml:6: panels[0].trend.log_y: expected true or false (got 'maybe')",
        "d.yaml:7: panels[0].trend.points: expected a whole number (got 'lots')",
        "d.yaml:8: panels[0].trend.y_range: the first bound must be below the second, "
        "got [5.0, 1.0]",
    ]


def test_nested_paths_missing_keys_and_bad_names():
    text = (
        "title: x\n"
        "panels:\n"
        "  - tabs:\n"
        "      Beam line:\n"
        "        - trend: {title: no attributes}\n"
        "        - image: {attribute: 'not a name'}\n"
    )
    found = problems(text)
    assert found[0] == (
        "d.yaml:5: panels[0].tabs['Beam line'][0].trend.attributes: "
        "required key 'attributes' is missing"
    )
    assert found[1].startswith("d.yaml:6: panels[0].tabs['Beam line'][1].image.attribute: ")
    assert "expected domain/family/member/attribute" in found[1]


def test_one_panel_per_entry_labels_and_write_lists():
    text = (
        "title: x\n"
        "panels:\n"
        "  - trend: {attributes: [a/b]}\n"
        "    table: {attributes: [a/b]}\n"
        "  - table: {attributes: [a/b], labels: [x, y], write: [c/d]}\n"
        "  - {}\n"
    )
    found = problems(text)
    assert "d.yaml:3: panels[0]: one panel per list entry, found trend and table" in found[0]
    assert "d.yaml:5: panels[1].table.labels: 2 label(s) for 1 attribute(s)" in found
    assert "d.yaml:5: panels[1].table.write: 'c/d' is not one of this panel's attributes" in found
    assert found[-1].startswith("d.yaml:6: panels[2]: empty panel")


def test_duplicate_keys_and_empty_and_non_mapping_files():
    assert problems("title: a\ntitle: b\npanels: [{table: {attributes: [a/b]}}]\n") == [
        "d.yaml:2: title: duplicate key 'title'"
    ]
    assert problems("") == ["d.yaml: the file is empty: a dashboard needs a title and panels"]
    assert problems("- a\n") == [
        "d.yaml:1: expected a mapping (title:, panels:, ...) at the top, got a list"
    ]


def test_file_names_become_url_paths(tmp_path: Path):
    good = "title: x\npanels: [{table: {attributes: [a/b]}}]\n"
    (tmp_path / "a b.yaml").write_text(good)
    (tmp_path / "metrics.yaml").write_text(good)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "same.yaml").write_text(good)
    (tmp_path / "two" / "same.yaml").write_text(good)
    with pytest.raises(DashboardError) as info:
        load_all(
            [tmp_path / "a b.yaml", tmp_path / "metrics.yaml", tmp_path / "one" / "same.yaml",
             tmp_path / "two" / "same.yaml", tmp_path / "missing.yaml"]
        )  # fmt: skip
    text = str(info.value)
    assert "use letters, digits, '-' and '_' only" in text
    assert "'metrics' is a URL the server uses" in text
    assert "both would be served at /same" in text
    assert "missing.yaml: no such file" in text


def test_tango_host_qualifies_names():
    text = (
        "title: x\ntango_host: db.example.org:10000\n"
        "panels: [{trend: {attributes: [mot1/Position, 'tango://other:1/a/b/c/d']}}]\n"
    )
    model = parse(text).model
    assert model.attributes() == [
        "tango://db.example.org:10000/mot1/Position",
        "tango://other:1/a/b/c/d",
    ]


def test_durations_and_paths():
    assert parse_duration("10 min") == 600 and parse_duration("250 ms") == 0.25
    assert parse_duration(5) == 5.0 and parse_duration("1.5 h") == 5400
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert format_path(("panels", 2, "trend", "attributes", 0)) == "panels[2].trend.attributes[0]"


def test_passwords_and_users_file(tmp_path: Path):
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert verify_password("correct horse", stored) and not verify_password("wrong", stored)
    assert hash_password("x") != hash_password("x")  # salted
    path = tmp_path / "users"
    add_user(path, "alice", "correct horse")
    add_user(path, "bob", "battery staple")
    add_user(path, "alice", "new password")  # replaces
    assert path.stat().st_mode & 0o777 == 0o600
    users = UsersFile(path)
    assert set(users.users()) == {"alice", "bob"}
    assert users.verify("alice", "new password") and not users.verify("alice", "correct horse")
    assert not users.verify("nobody", "x")
    with pytest.raises(UsersFileError, match=r"users:2: the password of 'eve'"):
        parse_users("# comment\neve:plaintext\n", "users")
    with pytest.raises(UsersFileError, match=r"users:1: expected name:hash"):
        parse_users("just a line\n", "users")
    access = Access(users)
    access.destinations = frozenset({"/", "/demo"})
    assert access.safe_next("/demo") == "/demo"
    for bad in ("//evil.example", "https://evil.example", "", None, "/\\evil", "/other", "/demo?x"):
        assert access.safe_next(bad) == "/"


def test_add_user_command(tmp_path: Path):
    import subprocess
    import sys

    path = tmp_path / "users"
    done = subprocess.run(
        [sys.executable, "-m", "tango_bokeh.dashboard.auth", str(path), "carol"],
        input="long enough secret\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "carol can now log in" in done.stdout and "secret" not in done.stdout
    assert UsersFile(path).verify("carol", "long enough secret")
    short = subprocess.run(
        [sys.executable, "-m", "tango_bokeh.dashboard.auth", str(path), "dave"],
        input="short\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert short.returncode == 1 and "at least 8 characters" in short.stderr


def test_archive_key_names_the_reader_and_never_the_password(tmp_path: Path, monkeypatch):
    head = "title: x\npanels: [{trend: {attributes: [mot1/Position]}}]\n"
    assert parse(head).model.archive is None  # nothing given: pyhdbpp's own default later
    model = parse(
        head + "archive:\n  reader: mariadb\n  host: hdb.example.org\n  port: 3307\n"
        "  database: hdbpp\n  user: reader\n  password_env: HDBPP_PASSWORD\n  timeout: 5 s\n"
    ).model
    config = model.archive.config()
    assert (config.reader, config.host, config.port, config.database, config.user) == (
        "mariadb", "hdb.example.org", 3307, "hdbpp", "reader",
    )  # fmt: skip
    assert config.timeout == 5.0
    monkeypatch.setenv("HDBPP_PASSWORD", "s3cret")
    assert config.password() == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    by_file = parse(
        head + f"archive: {{reader: mariadb, host: h, database: d, user: u, "
        f"password_file: {tmp_path / 'pw'}}}\n"
    ).model.archive.config()
    assert by_file.password() == "from-file"
    assert parse(head + "archive: {reader: default}\n").model.archive.config().reader == "default"

    def problem(archive: str) -> str:
        (message,) = problems(head + archive + "\n")
        return message

    assert "d.yaml:3: archive: never write the archive's password in the file" in problem(
        "archive: {reader: mariadb, host: h, database: d, user: u, password: hunter2}"
    )
    assert "hunter2" not in problem("archive: {reader: mariadb, password: hunter2}")
    assert "reader mariadb needs database, user" in problem("archive: {reader: mariadb, host: h}")
    assert "remove host" in problem("archive: {reader: default, host: h}")
    assert "archive.reader: Input should be 'mariadb', 'timescaledb' or 'default'" in problem(
        "archive: {reader: oracle}"
    )
    assert "archive.password_env: '1X': expected an environment variable's name" in problem(
        "archive: {reader: mariadb, host: h, database: d, user: u, password_env: 1X}"
    )
    assert "password_env or password_file, not both" in problem(
        "archive: {reader: mariadb, host: h, database: d, user: u, password_env: A, "
        "password_file: /f}"
    )
    assert "archive.colour: unknown key" in problem("archive: {reader: default, colour: red}")
