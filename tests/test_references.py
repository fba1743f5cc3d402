"""`${…}` references: path syntax, typed whole-string values, interpolation."""

from __future__ import annotations

import pytest

from workflow_defs.references import ReferenceSyntaxError, Resolver, find_references, parse_path

NAMESPACE = {
    "input": {
        "count": 3,
        "ratio": 1.5,
        "city": "Lyon",
        "flag": True,
        "off": False,
        "nothing": None,
        "obj": {"a": 1, "b": [1, 2]},
        "items": [{"name": "first"}, {"name": "second"}, {"name": "last"}],
        "odd keys": {"x.y": "dotted", "it's": "quoted"},
        "unicode": {"v": "café"},
    },
    "steps": {"fetch": {"output": {"data": {"temp": 21}}, "status": "completed"}},
    "context": {"job_id": "job-1"},
}


# --- parse_path ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input", ["input"]),
        ("input.a.b", ["input", "a", "b"]),
        ("input.a.b[0]", ["input", "a", "b", 0]),
        ("steps.fetch-weather.output", ["steps", "fetch-weather", "output"]),
        ("input.items[-1].name", ["input", "items", -1, "name"]),
        ("input.m[0][2]", ["input", "m", 0, 2]),
        ('input["odd keys"]["x.y"]', ["input", "odd keys", "x.y"]),
        ("input['odd keys']", ["input", "odd keys"]),
        ("  input.a  ", ["input", "a"]),
    ],
)
def test_parse_path_accepts(text: str, expected: list[str | int]) -> None:
    assert parse_path(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a..b",
        "a.",
        ".a",
        "a[",
        "a[x]",
        "a[1.5]",
        "1abc",
        "a b",
        "a[*]",
        'a"b',
        "a.[0]",  # a bracket never follows a dot
        "a[0]b",  # a name always follows a dot
        "[0]",
        "a()",
    ],
)
def test_parse_path_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ReferenceSyntaxError):
        parse_path(text)


def test_parse_path_returns_a_fresh_list_each_time() -> None:
    # parse_path caches; a caller mutating its result must not poison later parses.
    first = parse_path("input.cache_probe[1]")
    first.append("junk")
    assert parse_path("input.cache_probe[1]") == ["input", "cache_probe", 1]


# --- whole-string references keep the JSON type ---------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("${input.count}", 3),
        ("${input.ratio}", 1.5),
        ("${input.obj}", {"a": 1, "b": [1, 2]}),
        ("${input.obj.b}", [1, 2]),
        ("${input.flag}", True),
        ("${input.off}", False),
        ("${input.nothing}", None),
        ("${ input.city }", "Lyon"),
        ("${input.items[-1].name}", "last"),
        ("${input.items[1]}", {"name": "second"}),
        ('${input["odd keys"]["x.y"]}', "dotted"),
        ("${steps.fetch.output.data.temp}", 21),
        ("${context.job_id}", "job-1"),
    ],
)
def test_whole_string_reference_keeps_type(ref: str, expected: object) -> None:
    resolver = Resolver(NAMESPACE)
    value = resolver.resolve(ref)
    assert value == expected
    assert type(value) is type(expected)
    assert resolver.warnings == []


def test_whole_string_missing_path_is_none_with_warning() -> None:
    resolver = Resolver(NAMESPACE)
    assert resolver.resolve("${input.optional_thing}") is None
    assert len(resolver.warnings) == 1
    assert "input.optional_thing" in resolver.warnings[0]


@pytest.mark.parametrize(
    "ref",
    [
        "${input.items[3]}",  # index past the end
        "${input.items[-4]}",  # negative index past the start
        "${input.city.name}",  # a string has no fields
        "${input.obj[0]}",  # an object has no index
        "${steps.never_ran.output}",
    ],
)
def test_absent_paths_resolve_to_none_not_errors(ref: str) -> None:
    resolver = Resolver(NAMESPACE)
    assert resolver.resolve(ref) is None
    assert len(resolver.warnings) == 1


# --- interpolation inside longer text ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("City: ${input.city}!", "City: Lyon!"),
        ("n=${input.count}", "n=3"),
        ("r=${input.ratio}", "r=1.5"),
        ("o=${input.obj}", 'o={"a": 1, "b": [1, 2]}'),
        ("l=${input.obj.b}", "l=[1, 2]"),
        ("b=${input.flag}/${input.off}", "b=true/false"),
        ("z=${input.nothing}", "z=null"),
        ("u=${input.unicode}", 'u={"v": "café"}'),
        ("${input.lat_missing},${input.count}", ",3"),
        ("${input.city}${input.city}", "LyonLyon"),
        ("no references at all", "no references at all"),
    ],
)
def test_interpolation_inside_text(text: str, expected: str) -> None:
    assert Resolver(NAMESPACE).resolve(text) == expected


def test_interpolation_missing_path_is_empty_text_and_warns() -> None:
    resolver = Resolver(NAMESPACE)
    assert resolver.resolve("[${input.gone.deeper}]") == "[]"
    assert resolver.warnings == ["${input.gone.deeper} is not set; used null"]


def test_interpolated_values_are_not_scanned_again() -> None:
    resolver = Resolver({"input": {"a": "${input.b}", "b": "secret"}})
    assert resolver.resolve("x ${input.a}") == "x ${input.b}"
    assert resolver.resolve("${input.a}") == "${input.b}"


def test_resolve_walks_nested_dicts_and_lists() -> None:
    resolver = Resolver(NAMESPACE)
    value = {
        "where": {"city": "${input.city}", "coords": ["${input.count}", "${input.ratio}", 7]},
        "label": "job ${context.job_id}",
        "missing": ["${input.nope}"],
        "untouched": None,
        "flag": True,
    }
    assert resolver.resolve(value) == {
        "where": {"city": "Lyon", "coords": [3, 1.5, 7]},
        "label": "job job-1",
        "missing": [None],
        "untouched": None,
        "flag": True,
    }
    assert resolver.warnings == ["${input.nope} is not set; used null"]


def test_resolve_does_not_mutate_its_argument() -> None:
    value = {"a": ["${input.count}"]}
    Resolver(NAMESPACE).resolve(value)
    assert value == {"a": ["${input.count}"]}


def test_resolve_bad_syntax_raises() -> None:
    with pytest.raises(ReferenceSyntaxError):
        Resolver(NAMESPACE).resolve("${input..city}")


# --- find_references -----------------------------------------------------------------------


def test_find_references_in_nested_values() -> None:
    value = {
        "a": ["${input.x} and ${steps.s.output[0]}", 3, None],
        "b": {"c": "${context.job_id}"},
        "d": "plain",
    }
    assert find_references(value) == [
        ("${input.x}", ["input", "x"]),
        ("${steps.s.output[0]}", ["steps", "s", "output", 0]),
        ("${context.job_id}", ["context", "job_id"]),
    ]


def test_find_references_none_found() -> None:
    assert find_references({"a": [1, "text", {"b": "$ {not.a.ref}"}]}) == []


def test_find_references_bad_syntax_raises() -> None:
    with pytest.raises(ReferenceSyntaxError):
        find_references(["ok ${input.a}", "${input.a b}"])
