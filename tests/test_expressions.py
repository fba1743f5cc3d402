"""The safe condition language: operators, precedence, literals, safety."""

from __future__ import annotations

import pytest

from workflow_defs.expressions import (
    ExpressionError,
    check_condition,
    compile_condition,
    evaluate_condition,
)

SCOPE = {
    "item": {
        "n": 5,
        "price": "10",
        "name": "Bob",
        "tags": ["a", "b"],
        "ok": True,
        "off": False,
        "nothing": None,
        "obj": {"k": 1},
        "list": [{"v": 1}, {"v": 2}],
    },
    "input": {"mode": "fast", "limit": 3},
    "steps": {"fetch": {"status": "completed", "output": {"count": 0}}},
}


def ev(text: str, scope: dict[str, object] | None = None) -> bool:
    return evaluate_condition(text, SCOPE if scope is None else scope)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("item.n == 5", True),
        ("item.n == 6", False),
        ("item.n != 5", False),
        ("item.n != 6", True),
        ("item.n > 4", True),
        ("item.n > 5", False),
        ("item.n >= 5", True),
        ("item.n >= 6", False),
        ("item.n < 6", True),
        ("item.n < 5", False),
        ("item.n <= 5", True),
        ("item.n <= 4", False),
        ("'a' in item.tags", True),
        ("'z' in item.tags", False),
        ("'z' not in item.tags", True),
        ("'a' not in item.tags", False),
        ("item.tags contains 'b'", True),
        ("item.tags contains 'q'", False),
        ("item.name contains 'o'", True),
        ("'ob' in item.name", True),
        ("item.obj contains 'k'", True),  # a mapping contains its keys
        ("'k' in item.obj", True),
        ("item.name == 'Bob'", True),
        ('item.name == "Bob"', True),
        ("'abc' < 'abd'", True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # and binds tighter than or
        ("true or false and false", True),
        ("false and false or true", True),
        ("(true or false) and false", False),
        # not binds tighter than and/or, looser than comparisons
        ("not true or true", True),
        ("not (true or true)", False),
        ("not item.n == 6", True),
        ("not not true", True),
        ("item.name == 'Bob' and item.n > 1 or false", True),
        ("item.name == 'Bob' and (item.n > 9 or item.ok)", True),
        ("((item.n > 1))", True),
    ],
)
def test_boolean_precedence_and_parentheses(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("item.ok == true", True),
        ("item.ok == True", True),
        ("item.off == false", True),
        ("item.off == False", True),
        ("item.nothing == null", True),
        ("item.nothing == None", True),
        ("item.n == 5.0", True),
        ("-1 < 0", True),
        ("1.5e2 == 150", True),
        ("'it\\'s' == \"it's\"", True),
        ("'' == \"\"", True),
        ("item.ok", True),  # a bare operand is judged by truthiness
        ("item.off", False),
        ("item.nothing", False),
        ("item.tags", True),
    ],
)
def test_literals(text: str, expected: bool) -> None:
    assert ev(text) is expected


def test_bools_are_not_numbers() -> None:
    # JSON semantics: true is not 1, false is not 0 (Python would say they are).
    assert ev("item.ok == 1") is False
    assert ev("item.off == 0") is False
    assert ev("item.off != 0") is True
    assert ev("true > 0") is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${item.n} == 5", True),
        ("${steps.fetch.status} == 'completed'", True),
        ("steps.fetch.status == 'completed'", True),
        ("${steps.fetch.output.count} == 0", True),
        ("input.mode == 'fast' and input.limit >= 3", True),
        ("item.list[1].v == 2", True),
        ("item.list[-1].v == 2", True),
        ("item.tags[0] == 'a'", True),
    ],
)
def test_references_and_bare_paths(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("item.missing > 3", False),
        ("item.missing < 3", False),
        ("item.missing >= 0", False),
        ("item.missing == 3", False),
        ("item.missing != 3", True),
        ("item.missing == null", True),
        ("item.missing.deeper.still == 1", False),
        ("not item.missing", True),
        ("'a' in item.missing", False),
        ("item.missing contains 'a'", False),
        ("item.missing in item.tags", False),
        ("${steps.skipped.output.x} > 1", False),
        ("item.list[9].v == 1", False),
    ],
)
def test_missing_data_is_false_not_an_error(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("item.price > 9", True),  # "10" > 9 as numbers
        ("item.price == 10", True),
        ("item.price != 10", False),
        ("item.price < 9", False),
        ("'10' > '9'", True),  # both numeric strings: compared as numbers, not text
        ("' 2.5 ' == 2.5", True),
        ("item.name > 3", False),  # not a number: no ordering
        ("item.obj > 1", False),
        ("item.tags < 1", False),
        ("item.n > 'abc'", False),
        ("item.n in 5", False),  # not a container
        ("item.obj in item.tags", False),  # unhashable against a list: just false
        ("item.tags in item.obj", False),  # unhashable key lookup: just false
        ("5 in item.name", False),  # a number is never inside a string
    ],
)
def test_numbers_strings_and_mixed_types(text: str, expected: bool) -> None:
    assert ev(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "(true",
        "true)",
        "((item.n > 1)",
        "item.n ==",
        "== 1",
        "item.n > > 1",
        "and",
        "true and",
        "not",
        "item.n in",
        "a b",
        "1 2",
        "item.n = 5",
        "foo(1)",
        "item.name.upper()",
        "len(item.tags)",
        "a;b",
        "item.n == 1; import os",
        "__import__('os')",
        "__import__('os').system('true')",
        "import os",
        "lambda: 1",
        "[1, 2]",
        "{1}",
        "a | b",
        "a & b",
        "a + 1 > 2",
        "item.n ** 2",
        "'unterminated",
        "${input.a b}",
        "item..n",
        "`whoami`",
        "(" * 400 + "true" + ")" * 400,  # too deep: an error, not a crash
    ],
)
def test_syntax_errors(text: str) -> None:
    message = check_condition(text)
    assert message is not None
    with pytest.raises(ExpressionError):
        compile_condition(text)


def test_syntax_error_messages_point_at_the_problem() -> None:
    assert "'('" in (check_condition("foo(1)") or "")
    assert "position 3" in (check_condition("foo(1)") or "")
    assert "position 1" in (check_condition("a;b") or "")
    assert "end of condition" in (check_condition("(true") or "")


@pytest.mark.parametrize(
    "text",
    ["item.n > 1", "not (a == b)", "x in y", "x not in y", "${steps.a.output} contains 'x'"],
)
def test_valid_conditions_check_clean(text: str) -> None:
    assert check_condition(text) is None


def test_no_code_execution_only_data_lookup() -> None:
    # Dunder names are plain data keys: no Python attribute is ever reached.
    assert ev("item.__class__ == null") is True
    assert ev("item.__class__.__name__ == 'dict'") is False
    assert ev("item.__len__ > 0") is False
    assert ev("item.__class__", {"item": {"__class__": "just data"}}) is True
    # A method name on a string value is just a missing key, not a call target.
    assert ev("item.name.upper == null") is True


def test_compiled_condition_reports_its_paths() -> None:
    cond = compile_condition("${steps.a.output.x} > 1 and not (input.flag or item.y in item.z)")
    assert cond.paths() == [
        ["steps", "a", "output", "x"],
        ["input", "flag"],
        ["item", "y"],
        ["item", "z"],
    ]


def test_evaluation_is_deterministic_and_cached_safely() -> None:
    # The compiled condition is cached; results depend only on the scope given.
    assert ev("item.n > 3", {"item": {"n": 5}}) is True
    assert ev("item.n > 3", {"item": {"n": 1}}) is False
    assert ev("item.n > 3", {"item": {"n": 5}}) is True
