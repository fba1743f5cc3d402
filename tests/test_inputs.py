"""Job input validation: `inputs` types/required/defaults/enum + `input_schema`."""

from __future__ import annotations

from typing import Any

import pytest

from workflow_defs.inputs import InputError, validate_input
from workflow_defs.schema import WorkflowDefinition

STEP = {"id": "t", "type": "transform", "config": {"operation": "join", "input": []}}


def definition(
    inputs: list[dict[str, Any]], input_schema: dict[str, Any] | None = None
) -> WorkflowDefinition:
    data: dict[str, Any] = {"name": "wf", "steps": [STEP], "inputs": inputs}
    if input_schema is not None:
        data["input_schema"] = input_schema
    return WorkflowDefinition.model_validate(data)


def errors_of(defn: WorkflowDefinition, data: Any) -> list[tuple[str, str]]:
    with pytest.raises(InputError) as exc:
        validate_input(defn, data)
    return exc.value.errors


def test_required_missing() -> None:
    defn = definition([{"name": "topic", "type": "string", "required": True}])
    assert errors_of(defn, {}) == [("topic", "field required")]
    assert errors_of(defn, {"topic": None}) == [("topic", "field required")]
    assert validate_input(defn, {"topic": "x"}) == {"topic": "x"}


def test_optional_missing_is_fine() -> None:
    defn = definition([{"name": "note", "type": "string"}])
    assert validate_input(defn, {}) == {}


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("string", "text", 5),
        ("string", "", ["x"]),
        ("number", 1.5, "1.5"),
        ("number", 3, True),
        ("integer", 3, 3.5),
        ("integer", -7, "7"),
        ("boolean", False, 0),
        ("boolean", True, "true"),
        ("array", [1, "a"], {"a": 1}),
        ("array", [], "[]"),
        ("object", {"a": 1}, [1]),
        ("object", {}, "{}"),
    ],
)
def test_types(kind: str, good: Any, bad: Any) -> None:
    defn = definition([{"name": "v", "type": kind, "required": True}])
    assert validate_input(defn, {"v": good}) == {"v": good}
    ((field, message),) = errors_of(defn, {"v": bad})
    assert field == "v"
    assert f"expected {kind}" in message
    assert type(bad).__name__ in message


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_integer(value: bool) -> None:
    defn = definition([{"name": "n", "type": "integer"}])
    assert errors_of(defn, {"n": value}) == [("n", "expected integer, got bool")]


def test_type_aliases_of_the_earlier_format() -> None:
    defn = definition(
        [
            {"name": "a", "type": "int"},
            {"name": "b", "type": "float"},
            {"name": "c", "type": "str"},
            {"name": "d", "type": "bool"},
            {"name": "e", "type": "list"},
            {"name": "f", "type": "dict"},
        ]
    )
    assert [spec.type for spec in defn.inputs] == [
        "integer",
        "number",
        "string",
        "boolean",
        "array",
        "object",
    ]
    assert {f for f, _ in errors_of(defn, {"a": "1", "c": 2})} == {"a", "c"}


def test_any_accepts_everything() -> None:
    defn = definition([{"name": "v"}])
    for value in (1, "x", [1], {"a": 1}, True):
        assert validate_input(defn, {"v": value}) == {"v": value}


def test_defaults_applied() -> None:
    defn = definition(
        [
            {"name": "audience", "type": "string", "default": "engineers"},
            {"name": "radius", "type": "integer", "default": 8000, "required": True},
            {"name": "strict", "type": "boolean", "default": False},
            {"name": "tags", "type": "array", "default": ["a"]},
        ]
    )
    assert validate_input(defn, {}) == {
        "audience": "engineers",
        "radius": 8000,
        "strict": False,
        "tags": ["a"],
    }
    # A given value wins over the default; an explicit null takes the default.
    assert validate_input(defn, {"audience": "kids", "radius": None})["audience"] == "kids"
    assert validate_input(defn, {"radius": None})["radius"] == 8000


def test_input_is_not_mutated_and_extra_keys_kept() -> None:
    defn = definition([{"name": "a", "default": 1}])
    given = {"other": "kept"}
    assert validate_input(defn, given) == {"other": "kept", "a": 1}
    assert given == {"other": "kept"}


def test_enum() -> None:
    defn = definition([{"name": "tier", "type": "string", "enum": ["free", "pro"]}])
    assert validate_input(defn, {"tier": "pro"}) == {"tier": "pro"}
    ((field, message),) = errors_of(defn, {"tier": "gold"})
    assert field == "tier"
    assert "free" in message and "pro" in message


def test_every_failing_field_is_listed_in_order() -> None:
    defn = definition(
        [
            {"name": "z", "type": "string", "required": True},
            {"name": "a", "type": "integer"},
            {"name": "m", "type": "boolean"},
        ]
    )
    errors = errors_of(defn, {"a": "x", "m": 1})
    assert [f for f, _ in errors] == ["a", "m", "z"]
    message = str(InputError(errors))
    assert "a: expected integer" in message and "z: field required" in message


SCHEMA = {
    "type": "object",
    "required": ["address"],
    "properties": {
        "address": {
            "type": "object",
            "required": ["zip"],
            "properties": {
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                "tags": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "count": {"type": "integer", "minimum": 1},
    },
}


def test_input_schema_accepts_valid_input() -> None:
    defn = definition([], SCHEMA)
    data = {"address": {"zip": "75001", "tags": [1, 2]}, "count": 2}
    assert validate_input(defn, data) == data


def test_input_schema_missing_top_level_field() -> None:
    defn = definition([], SCHEMA)
    assert errors_of(defn, {}) == [("address", "field required")]


def test_input_schema_violations_name_the_nested_field() -> None:
    defn = definition([], SCHEMA)
    errors = dict(errors_of(defn, {"address": {"tags": [1, "x"]}, "count": 0}))
    assert set(errors) == {"address.zip", "address.tags.1", "count"}
    assert errors["address.zip"] == "field required"
    assert "'x'" in errors["address.tags.1"] and "integer" in errors["address.tags.1"]
    assert "minimum" in errors["count"] or "less than" in errors["count"]


def test_input_schema_pattern_violation() -> None:
    defn = definition([], SCHEMA)
    ((field, message),) = errors_of(defn, {"address": {"zip": "abc"}})
    assert field == "address.zip"
    assert "does not match" in message


def test_input_schema_sees_defaults() -> None:
    schema = {"type": "object", "required": ["lang"], "properties": {"lang": {"type": "string"}}}
    defn = definition([{"name": "lang", "default": "en"}], schema)
    assert validate_input(defn, {}) == {"lang": "en"}


def test_input_schema_root_violation_names_input_data() -> None:
    defn = definition([], {"type": "object", "maxProperties": 1})
    ((field, _),) = errors_of(defn, {"a": 1, "b": 2})
    assert field == "input_data"


def test_inputs_and_schema_errors_combine() -> None:
    defn = definition([{"name": "lat", "type": "number", "required": True}], SCHEMA)
    assert [f for f, _ in errors_of(defn, {})] == ["address", "lat"]


@pytest.mark.parametrize("data", [None, [], "x", 3, [{"a": 1}]])
def test_non_dict_input(data: Any) -> None:
    defn = definition([{"name": "a"}])
    assert errors_of(defn, data) == [("input_data", "must be a JSON object")]
