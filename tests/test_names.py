"""Attribute names in every form users type them."""

import pytest

from tango_bokeh.tango.names import InvalidName, parse_name


def test_plain_name_is_case_insensitive():
    a = parse_name("Sim/Motor/1/Position")
    b = parse_name("sim/motor/1/position")
    assert a.key == b.key == "sim/motor/1/position"
    assert a.device == "Sim/Motor/1" and a.attribute == "Position"
    assert a.host is None and not a.is_alias


def test_full_name_keeps_host(monkeypatch):
    monkeypatch.delenv("TANGO_HOST", raising=False)
    name = parse_name("tango://Ctrl.example:10000/sim/motor/1/position")
    assert name.host == "Ctrl.example:10000"
    assert name.device_address == "tango://Ctrl.example:10000/sim/motor/1"
    assert name.key == "tango://ctrl.example:10000/sim/motor/1/position"


def test_full_name_on_default_host_shares_the_plain_key(monkeypatch):
    monkeypatch.setenv("TANGO_HOST", "127.0.0.1:12345")
    assert parse_name("tango://127.0.0.1:12345/sim/motor/1/position").key == (
        parse_name("sim/motor/1/position").key
    )


def test_alias_form():
    name = parse_name("mot1/Position")
    assert name.is_alias and name.device == "mot1" and name.attribute == "Position"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("sim/motor/position", "expected"),
        ("sim/motor/1/2/position", "expected"),
        ("justone", "expected"),
        ("http://host:1/a/b/c/d", "tango://"),
        ("tango://host/a/b/c/d", "tango://"),
        ("sim/motor/1/posi tion", "expected"),
        ("sim/motor/1/position#dbase=no", "dbase"),
    ],
)
def test_malformed_names_say_what_is_wrong(text, hint):
    with pytest.raises(InvalidName, match=hint):
        parse_name(text)


def test_non_string_is_refused():
    with pytest.raises(InvalidName, match="string"):
        parse_name(42)  # type: ignore[arg-type]
