"""The transform library (workflow_defs/transforms): every operation, its edge cases, the
load-time config checks, and the seed workflow's `template` and `markdown_to_json` steps."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from workflow_defs.transforms import (
    TRANSFORM_OPERATIONS,
    TransformError,
    apply_transform,
    check_transform_config,
)


def run(operation: str, data: Any, **config: Any) -> Any:
    return apply_transform(operation, data, config)


def fails(operation: str, data: Any, field: str, **config: Any) -> TransformError:
    with pytest.raises(TransformError) as info:
        apply_transform(operation, data, config)
    err = info.value
    assert err.operation == operation
    assert err.field == field, str(err)
    assert operation in str(err) and field in str(err)
    return err


PLACES = [
    {"name": "General Hospital", "rating": 4.6, "status": "OK", "geo": {"lat": 1.5}},
    {"name": "city clinic", "rating": 3.9, "status": "CLOSED", "geo": {"lat": 2.5}},
    {"name": "Children's Hospital", "rating": None, "status": "OK"},
]


# --- registry ---------------------------------------------------------------------------------


def test_operations_are_the_earlier_services_plus_extensions() -> None:
    assert {
        "extract_fields", "filter", "map", "join", "sort", "unique", "regex_extract",
        "markdown_to_json", "template", "merge", "json_parse", "pick", "omit", "coalesce",
        "to_number", "limit", "validate_schema", "markdown_sections", "error_metrics",
    } == TRANSFORM_OPERATIONS  # fmt: skip


def test_unknown_operation() -> None:
    problems = check_transform_config("fiter", {})
    assert problems == [("operation", problems[0][1])]
    assert "'fiter'" in problems[0][1] and "filter" in problems[0][1]
    with pytest.raises(TransformError, match="unknown transform operation 'fiter'"):
        apply_transform("fiter", [], {})


def test_config_must_be_an_object() -> None:
    assert check_transform_config("join", ["x"]) == [("config", "must be an object (got list)")]  # type: ignore[arg-type]
    assert run("join", ["a", "b"]) == "a, b"
    assert apply_transform("join", ["a"], None) == "a"  # type: ignore[arg-type]


# --- extract_fields ---------------------------------------------------------------------------


def test_extract_fields_paths_list_with_index_and_wildcard() -> None:
    data = {"results": PLACES, "meta": {"count": 3}}
    out = run(
        "extract_fields",
        data,
        paths=["results[*].name", "results[1].geo.lat", "meta.count", "nope.x"],
    )
    assert out == {
        "results[*].name": ["General Hospital", "city clinic", "Children's Hospital"],
        "results[1].geo.lat": 2.5,
        "meta.count": 3,
        "nope.x": None,
    }


def test_extract_fields_named_paths_and_odd_spellings() -> None:
    data = {"results": PLACES, "a key": {"x": 1}}
    out = run(
        "extract_fields",
        data,
        paths={
            "lats": "results[*].geo.lat",
            "first": "$.results.0.name",
            "last": "results[-1].status",
            "quoted": '["a key"].x',
            "whole": "",
        },
    )
    assert out["lats"] == [1.5, 2.5, None]  # per-element missing → None, alignment kept
    assert out["first"] == "General Hospital"
    assert out["last"] == "OK"
    assert out["quoted"] == 1
    assert out["whole"] is data


def test_extract_fields_on_none_and_scalars_gives_none() -> None:
    assert run("extract_fields", None, paths=["a", "b[*].c"]) == {"a": None, "b[*].c": None}
    assert run("extract_fields", "text", paths=["a"]) == {"a": None}


def test_extract_fields_config_errors() -> None:
    assert check_transform_config("extract_fields", {}) == [
        ("config.paths", "extract_fields needs 'paths'")
    ]
    assert check_transform_config("extract_fields", {"paths": "a.b"})[0] == (
        "config.paths",
        "must be an array or an object (got string)",
    )
    problems = check_transform_config("extract_fields", {"paths": ["ok", "a..b", 3]})
    assert [p[0] for p in problems] == ["config.paths[1]", "config.paths[2]"]
    assert check_transform_config("extract_fields", {"paths": "${steps.cfg.output}"}) == []
    fails("extract_fields", {}, "config.paths[0]", paths=["a["])


# --- filter -----------------------------------------------------------------------------------


def test_filter_conditions() -> None:
    names = lambda out: [p["name"] for p in out]  # noqa: E731
    assert names(run("filter", PLACES, condition="item.rating >= 4")) == ["General Hospital"]
    assert names(run("filter", PLACES, condition='item.status == "OK"')) == [
        "General Hospital",
        "Children's Hospital",
    ]
    assert names(run("filter", PLACES, condition='item.name contains "Hospital"')) == [
        "General Hospital",
        "Children's Hospital",
    ]
    # the earlier service also accepted paths without `item.`
    assert names(run("filter", PLACES, condition="rating < 4")) == ["city clinic"]


def test_filter_array_path_empty_and_none() -> None:
    data = {"data": {"results": PLACES}}
    out = run("filter", data, condition="item.geo.lat > 2", array_path="data.results")
    assert [p["name"] for p in out] == ["city clinic"]
    assert run("filter", [], condition="item.x == 1") == []
    assert run("filter", None, condition="item.x == 1") == []
    assert run("filter", [1, 5, 10], condition="item > 4") == [5, 10]


def test_filter_wrong_input() -> None:
    err = fails("filter", {"results": []}, "input", condition="item.x == 1")
    assert "array_path" in str(err)
    fails("filter", {"results": "x"}, "config.array_path", condition="item.x", array_path="results")


def test_filter_config_errors() -> None:
    assert check_transform_config("filter", {}) == [
        ("config.condition", "filter needs 'condition'")
    ]
    (problem,) = check_transform_config("filter", {"condition": "item.rating >="})
    assert problem[0] == "config.condition"
    assert check_transform_config("filter", {"condition": "item.a == 1", "array_path": "a..b"})[0][
        0
    ] == ("config.array_path")
    assert (
        check_transform_config("filter", {"condition": "item.rating >= 4 and not item.closed"})
        == []
    )
    fails("filter", [], "config.condition", condition="(item.a")


# --- map --------------------------------------------------------------------------------------


def test_map_paths_and_string_methods() -> None:
    assert run("map", PLACES, expression="item.name") == [
        "General Hospital",
        "city clinic",
        "Children's Hospital",
    ]
    assert run("map", PLACES, expression="item.name.upper()")[1] == "CITY CLINIC"
    assert run("map", PLACES, expression="item.name.lower()")[0] == "general hospital"
    assert run("map", PLACES, expression="item.name.title()")[1] == "City Clinic"
    assert run("map", [" a "], expression="item.strip().upper()") == ["A"]
    assert run("map", PLACES, expression="item.rating.upper()") == ["4.6", "3.9", None]
    assert run("map", PLACES, expression="item.geo.lat") == [1.5, 2.5, None]


def test_map_object_expression_and_array_path() -> None:
    out = run(
        "map",
        {"results": PLACES[:2]},
        expression={"title": "item.name.upper()", "score": "item.rating"},
        array_path="results",
    )
    assert out == [
        {"title": "GENERAL HOSPITAL", "score": 4.6},
        {"title": "CITY CLINIC", "score": 3.9},
    ]
    assert run("map", None, expression="item.x") == []


def test_map_config_errors() -> None:
    (problem,) = check_transform_config("map", {"expression": "item.name.format()"})
    assert problem[0] == "config.expression" and "upper" in problem[1]
    (problem,) = check_transform_config("map", {"expression": {"a": "item.x", "b": "len(item)"}})
    assert problem[0] == "config.expression.b"
    assert check_transform_config("map", {"expression": 3})[0] == (
        "config.expression",
        "must be a string or an object (got integer)",
    )
    fails("map", "abc", "input", expression="item")


# --- join -------------------------------------------------------------------------------------


def test_join() -> None:
    assert run("join", ["a", "b", "c"]) == "a, b, c"
    assert run("join", ["a", None, 3, True, {"k": 1}], separator="|") == 'a|3|true|{"k": 1}'
    assert run("join", PLACES, field="item.name", separator="; ") == (
        "General Hospital; city clinic; Children's Hospital"
    )
    assert run("join", {"r": PLACES}, field="rating", array_path="r") == "4.6, 3.9"
    assert run("join", []) == ""
    assert run("join", None) == ""
    fails("join", "abc", "input")
    assert check_transform_config("join", {"separator": 1})[0][0] == "config.separator"


# --- sort -------------------------------------------------------------------------------------


def test_sort_by_key_none_last_both_ways() -> None:
    asc = run("sort", PLACES, key="rating")
    assert [p["rating"] for p in asc] == [3.9, 4.6, None]
    desc = run("sort", PLACES, key="item.rating", reverse=True)
    assert [p["rating"] for p in desc] == [4.6, 3.9, None]


def test_sort_mixed_types_and_stability() -> None:
    mixed = [3, "b", None, True, 1.5, {"a": 1}, "a", [1]]
    assert run("sort", mixed) == [1.5, 3, "a", "b", True, [1], {"a": 1}, None]
    rows = [{"k": 1, "i": 0}, {"k": 0, "i": 1}, {"k": 1, "i": 2}, {"k": 0, "i": 3}]
    assert [r["i"] for r in run("sort", rows, key="k")] == [1, 3, 0, 2]
    assert [r["i"] for r in run("sort", rows, key="k", reverse=True)] == [0, 2, 1, 3]
    assert [r["i"] for r in run("sort", rows, key=["k", "i"], reverse=True)] == [2, 0, 3, 1]
    assert run("sort", []) == [] and run("sort", None) == []


def test_sort_config_errors() -> None:
    assert check_transform_config("sort", {"reverse": "yes"}) == [
        ("config.reverse", "must be a boolean (got string)")
    ]
    assert check_transform_config("sort", {"key": "a[x]"})[0][0] == "config.key"
    fails("sort", {"a": 1}, "input")


# --- unique -----------------------------------------------------------------------------------


def test_unique() -> None:
    assert run("unique", [3, 1, 3, "3", 1.0, True, 1]) == [3, 1, "3", 1.0, True]
    dicts = [{"a": 1, "b": 2}, {"b": 2, "a": 1}, [1, 2], [1, 2], {"a": 2}]
    assert run("unique", dicts) == [{"a": 1, "b": 2}, [1, 2], {"a": 2}]
    rows = [{"id": "x", "n": 1}, {"id": "y", "n": 2}, {"id": "x", "n": 3}, {"n": 4}, {"n": 5}]
    assert [r["n"] for r in run("unique", rows, key="id")] == [1, 2, 4, 5]
    assert [r["n"] for r in run("unique", {"r": rows}, key="item.id", array_path="r")] == [
        1,
        2,
        4,
        5,
    ]
    assert run("unique", None) == [] and run("unique", []) == []


# --- limit ------------------------------------------------------------------------------------


def test_limit() -> None:
    assert run("limit", list(range(10)), count=3) == [0, 1, 2]
    assert run("limit", list(range(10)), limit=2, offset=8) == [8, 9]
    assert run("limit", [1, 2], count=5, offset=3) == []
    assert run("limit", None, count=1) == []
    assert check_transform_config("limit", {}) == [
        ("config.count", "limit needs 'count' or 'limit'")
    ]
    assert check_transform_config("limit", {"count": -1})[0] == (
        "config.count",
        "must be 0 or more (got -1)",
    )
    assert check_transform_config("limit", {"count": "${input.n}"}) == []
    fails("limit", [1], "config.count", count="3")


# --- pick / omit ------------------------------------------------------------------------------


def test_pick_and_omit() -> None:
    obj = {"a": 1, "b": 2, "c": 3}
    assert run("pick", obj, keys=["a", "c", "zz"]) == {"a": 1, "c": 3}
    assert run("pick", [obj, {"b": 9}], fields=["b"]) == [{"b": 2}, {"b": 9}]
    assert run("omit", obj, keys=["b"]) == {"a": 1, "c": 3}
    assert run("omit", [obj], keys=["a", "c"]) == [{"b": 2}]
    assert run("pick", None, keys=["a"]) is None
    fails("pick", "abc", "input", keys=["a"])
    fails("omit", [obj, 3], "input", keys=["a"])
    assert check_transform_config("pick", {}) == [("config.keys", "pick needs 'keys' or 'fields'")]
    assert check_transform_config("omit", {"keys": ["a", 1]}) == [
        ("config.keys[1]", "must be a string (got integer)")
    ]


# --- coalesce ---------------------------------------------------------------------------------


def test_coalesce() -> None:
    assert run("coalesce", None, values=[None, "", "  ", [], {}, 0, "x"]) == 0
    assert run("coalesce", [None, False, "y"]) is False
    assert run("coalesce", [None, ""], default="fallback") == "fallback"
    assert run("coalesce", None) is None
    assert run("coalesce", [None, {"a": 1}]) == {"a": 1}
    fails("coalesce", {"a": 1}, "input")


# --- to_number --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        (" -7 ", -7),
        ("$1,234.50", 1234.5),
        ("€ 99", 99),
        ("12%", 12),
        ("(12.50)", -12.5),
        ("1e3", 1000.0),
        ("1_000", 1000),
        (".5", 0.5),
    ],
)
def test_to_number_parses(text: str, expected: float) -> None:
    result = run("to_number", text)
    assert result == expected and type(result) is type(expected)


def test_to_number_passthrough_lists_defaults_and_errors() -> None:
    assert run("to_number", 3.5) == 3.5
    assert run("to_number", ["1", "2.5", 3]) == [1, 2.5, 3]
    assert run("to_number", "abc", default=0) == 0
    assert run("to_number", None, default=None) is None
    err = fails("to_number", "twelve", "input")
    assert "'twelve'" in str(err) and "config.default" in str(err)
    fails("to_number", True, "input")
    fails("to_number", ["1", "x"], "input[1]")
    fails("to_number", "inf", "input")


# --- regex_extract ----------------------------------------------------------------------------


TEXT = "Call (217) 555-0101 or (217) 555-0199. Zip: 62701."


def test_regex_extract_group_defaults() -> None:
    assert run("regex_extract", TEXT, pattern=r"\d{5}") == "62701"  # no groups → whole match
    assert run("regex_extract", TEXT, pattern=r"\((\d{3})\) (\d{3}-\d{4})") == "217"
    assert run("regex_extract", TEXT, pattern=r"\((\d{3})\) (\d{3}-\d{4})", group=2) == "555-0101"
    assert (
        run("regex_extract", TEXT, pattern=r"\((\d{3})\) \d{3}-\d{4}", group=0) == "(217) 555-0101"
    )
    assert run("regex_extract", TEXT, pattern=r"555-(?P<line>\d+)", group="line") == "0101"
    assert run("regex_extract", TEXT, pattern=r"nothing here") is None


def test_regex_extract_all_matches_patterns_and_non_strings() -> None:
    assert run("regex_extract", TEXT, pattern=r"555-(\d+)", all_matches=True) == ["0101", "0199"]
    assert run("regex_extract", TEXT, pattern=r"x(\d)", all_matches=True) == []
    out = run("regex_extract", TEXT, patterns={"zip": r"Zip: (\d+)", "area": r"\((\d+)\)"})
    assert out == {"zip": "62701", "area": "217"}
    assert run("regex_extract", {"score": 87}, pattern=r'"score": (\d+)') == "87"
    assert run("regex_extract", None, pattern="a") is None
    assert run("regex_extract", "ABC", pattern="b", ignore_case=True) == "B"
    assert run("regex_extract", "a\nb", pattern="^b$") == "b"  # MULTILINE, as before


def test_regex_extract_errors() -> None:
    (problem,) = check_transform_config("regex_extract", {"pattern": "(unclosed"})
    assert problem[0] == "config.pattern" and "not a valid regular expression" in problem[1]
    (problem,) = check_transform_config("regex_extract", {"patterns": {"ok": "a", "bad": "[x"}})
    assert problem[0] == "config.patterns.bad"
    assert check_transform_config("regex_extract", {}) == [
        ("config.pattern", "regex_extract needs 'pattern' or 'patterns'")
    ]
    (problem,) = check_transform_config("regex_extract", {"pattern": "(a)", "group": 2})
    assert problem[0] == "config.group" and "has 1 groups" in problem[1]
    (problem,) = check_transform_config("regex_extract", {"pattern": "(?P<x>a)", "group": "y"})
    assert problem[0] == "config.group"
    assert check_transform_config("regex_extract", {"pattern": "${input.re}", "group": 3}) == []
    fails("regex_extract", "x", "config.pattern", pattern="a(")
    fails("regex_extract", "x" * 1_000_001, "input", pattern="x")


# --- json_parse -------------------------------------------------------------------------------


def test_json_parse_tolerant() -> None:
    assert run("json_parse", '{"a": 1}') == {"a": 1}
    assert run("json_parse", '```json\n{"a": [1, 2]}\n```') == {"a": [1, 2]}
    assert run("json_parse", "Sure! Here it is:\n```\n[1, 2]\n```\nAnything else?") == [1, 2]
    assert run("json_parse", 'The result is {"ok": true, "n": {"x": "}"}} as requested.') == {
        "ok": True,
        "n": {"x": "}"},
    }
    assert run("json_parse", "Scores: [see below] then [3, 4]") == [3, 4]
    assert run("json_parse", "42") == 42
    assert run("json_parse", {"already": "parsed"}) == {"already": "parsed"}


def test_json_parse_failure() -> None:
    assert run("json_parse", "no json here", default={"x": None}) == {"x": None}
    assert run("json_parse", "nope", default=None) is None
    err = fails("json_parse", "not json {", "input")
    assert "config.default" in str(err)


# --- template ---------------------------------------------------------------------------------

SEED_TEMPLATE = {
    "template": "Hospitals: ${hospitals}\nPolice Stations: ${police}\nFire Stations: ${fire_stations}",
    "variables": {
        "hospitals": "${steps.fetch_hospitals.data.results}",
        "police": "${steps.fetch_police.data.results}",
        "fire_stations": "${steps.fetch_fire_stations.data.results}",
    },
}


SEED_FILE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "emergency_contacts.json"


def test_seed_transform_steps_pass_the_load_checks() -> None:
    if not SEED_FILE.exists():
        pytest.skip(f"{SEED_FILE} is not beside this checkout")
    steps = json.loads(SEED_FILE.read_text())["steps"]
    transforms = {s["id"]: s["config"] for s in steps if s["type"] == "transform"}
    assert transforms["format_places_data"]["config"] == SEED_TEMPLATE
    assert transforms["parse_contacts"]["config"] == {"schema": "emergency_contacts"}
    for cfg in transforms.values():
        assert check_transform_config(cfg["operation"], cfg["config"]) == []


def test_template_seed_step_with_lists_of_dicts() -> None:
    assert check_transform_config("template", SEED_TEMPLATE) == []
    hospitals = [{"name": "General", "vicinity": "1 Main St", "rating": 4.5, "open_now": True}]
    police = [
        {"name": "Central Station", "vicinity": "2 Elm St"},
        {"name": "North", "vicinity": None},
    ]
    resolved = {  # what the interpreter hands over after resolving references
        "template": SEED_TEMPLATE["template"],
        "variables": {"hospitals": hospitals, "police": police, "fire_stations": None},
    }
    out = apply_transform("template", {"input": {}, "steps": {}}, resolved)
    assert out == (
        'Hospitals: [{"name": "General", "vicinity": "1 Main St", "rating": 4.5, "open_now": true}]\n'
        'Police Stations: [{"name": "Central Station", "vicinity": "2 Elm St"}, '
        '{"name": "North", "vicinity": null}]\n'
        "Fire Stations: "
    )


def test_template_values_paths_and_missing() -> None:
    out = run(
        "template",
        None,
        template="${s}|${n}|${f}|${b}|${z}|${o.k[1]}|${missing}|${o.nope}|${ bad path }|${}",
        variables={"s": "text", "n": 3, "f": 2.5, "b": False, "z": None, "o": {"k": ["x", "y"]}},
    )
    assert out == "text|3|2.5|false||y|||${ bad path }|${}"


def test_template_data_keys_and_namespace() -> None:
    ns = {"input": {"city": "Springfield"}, "steps": {"a": {"output": "done"}}}
    assert run(
        "template", ns, template="${input.city}: ${steps.a.output} ${x}", variables={"x": 1}
    ) == ("Springfield: done 1")
    assert run("template", "hello", template="<${item}>") == "<hello>"


def test_template_is_single_pass() -> None:
    out = run(
        "template",
        None,
        template="A=${a} B=${b}",
        variables={"a": "${b}", "b": "{{include:shared/secret.md}} ${input.key}"},
    )
    assert out == "A=${b} B={{include:shared/secret.md}} ${input.key}"
    rows = [{"name": "${name}", "note": "{{include:x.md}}"}]
    assert run("template", rows, template="${name} ${note}") == ["${name} {{include:x.md}}"]


def test_template_list_input_renders_per_item() -> None:
    out = run("template", PLACES[:2], template="${index}. ${name} (${rating}) ${item.geo.lat}")
    assert out == ["0. General Hospital (4.6) 1.5", "1. city clinic (3.9) 2.5"]
    assert run("template", ["a", 3], template="-${item}-") == ["-a-", "-3-"]
    assert run("template", [], template="x") == []
    with_vars = run(
        "template", [{"name": "A"}], template="${name} in ${city}", variables={"city": "X"}
    )
    assert with_vars == ["A in X"]


def test_template_config_errors() -> None:
    assert check_transform_config("template", {}) == [
        ("config.template", "template needs 'template'")
    ]
    assert check_transform_config("template", {"template": "x", "variables": ["a"]})[0] == (
        "config.variables",
        "must be an object (got array)",
    )
    fails("template", None, "config.template", template=7)


# --- merge ------------------------------------------------------------------------------------


def test_merge_shallow_and_deep() -> None:
    a: dict[str, Any] = {"x": 1, "nested": {"p": 1, "q": [1, 2]}, "keep": True}
    b = {"x": 2, "nested": {"q": [3]}, "new": None}
    assert run("merge", None, sources=[a, b]) == {
        "x": 2,
        "nested": {"q": [3]},
        "keep": True,
        "new": None,
    }
    deep = run("merge", None, sources=[a, b], strategy="deep")
    assert deep == {"x": 2, "nested": {"p": 1, "q": [3]}, "keep": True, "new": None}
    deep["nested"]["p"] = 99
    assert a["nested"]["p"] == 1  # no structure shared with the inputs


def test_merge_without_sources_and_with_paths() -> None:
    assert run("merge", [{"a": 1}, None, {"b": 2}]) == {"a": 1, "b": 2}
    assert run("merge", None) == {}
    assert run(
        "merge", {"weather": {"t": 20}, "places": {"n": 3}}, sources=["weather", "places"]
    ) == {
        "t": 20,
        "n": 3,
    }
    assert run("merge", None, sources=[None, {"a": 1}]) == {"a": 1}


def test_merge_errors() -> None:
    fails("merge", None, "config.sources[1]", sources=[{"a": 1}, 5])
    fails("merge", {}, "config.sources[0]", sources=["not.there"])
    fails("merge", [{"a": 1}, "x"], "input[1]")
    fails("merge", "x", "input")
    assert check_transform_config("merge", {"strategy": "deeper"}) == [
        ("config.strategy", "must be one of shallow, deep (got 'deeper')")
    ]
    assert check_transform_config("merge", {"sources": "${steps.x.output}"}) == []


# --- validate_schema --------------------------------------------------------------------------

CONTACT_SCHEMA = {
    "type": "object",
    "required": ["contacts"],
    "properties": {
        "contacts": {
            "type": "array",
            "items": {"type": "object", "properties": {"fit_score": {"type": "integer"}}},
        }
    },
}


def test_validate_schema() -> None:
    good = {"contacts": [{"fit_score": 90}]}
    assert run("validate_schema", good, schema=CONTACT_SCHEMA) is good
    err = fails(
        "validate_schema",
        {"contacts": [{"fit_score": "high"}, {"fit_score": 1.5}]},
        "input",
        schema=CONTACT_SCHEMA,
    )
    assert "$.contacts[0].fit_score: 'high' is not of type 'integer'" in str(err)
    assert "$.contacts[1].fit_score" in str(err)
    err = fails("validate_schema", {}, "input", schema=CONTACT_SCHEMA)
    assert "'contacts' is a required property" in str(err)


def test_validate_schema_config_errors() -> None:
    assert check_transform_config("validate_schema", {}) == [
        ("config.schema", "validate_schema needs 'schema'")
    ]
    (problem,) = check_transform_config("validate_schema", {"schema": {"type": "nope"}})
    assert problem[0] == "config.schema" and "not a valid JSON Schema" in problem[1]
    assert check_transform_config("validate_schema", {"schema": CONTACT_SCHEMA}) == []


# --- markdown_to_json -------------------------------------------------------------------------

LLM_REPLY = """\
Here is your personalized emergency plan for Springfield, IL.

## Emergency Contacts Analysis

### 1. Springfield Memorial Hospital
**Phone**: (217) 788-3000
**Address**: 701 N 1st St, Springfield, IL 62781
**Website**: [memorial.org](https://www.memorial.org)
**Category**: Medical
**Priority**: Critical
**Fit Score**: 95/100
**Reasoning**: Level I trauma center closest to you,
with a pediatric emergency unit.
**Relevant Scenarios**: earthquake, tornado, medical emergency
**24/7 Available**: Yes

### Springfield Police Department
- **Phone:** 911
- **Address:**   800 E Monroe St, Springfield, IL
- **Website:** N/A
- **Category:** government
- **Priority:** important
- **Fit Score:** 85%
- **Reasoning:** Local law enforcement.
- **Relevant Scenarios:** civil unrest; break-in
- **24/7 Available:** no

### Poison Control
**Phone**: 1-800-222-1222
**Category**: information
**Fit Score**: 70

### A note about local resources
Call ahead when possible.
**Phone**: 555-0100

---

## Meeting Locations

### Primary Meeting Location: Washington Park
**Address**: 1500 Williams Blvd, Springfield, IL
**Description**: Large public park with open fields.
**Reasoning**: Away from buildings and power lines.
**Practical Details**: Free parking lot on the north side; paved paths are wheelchair accessible.
**Suitable For**: earthquake, fire

### Secondary Meeting Location: Lincoln Library
**Address**: 326 S 7th St, Springfield, IL
**Description**: Public library downtown.
**Reasoning**: Indoor shelter option.
**Practical Details**: No parking on site; the entrance has stairs only.
**Suitable For**: tornado, severe weather
"""


def test_markdown_emergency_contacts_seed_shape() -> None:
    config = {"schema": "emergency_contacts"}
    assert check_transform_config("markdown_to_json", config) == []
    out = apply_transform("markdown_to_json", LLM_REPLY, config)
    assert set(out) == {"contacts", "meeting_locations"}
    hospital, police, poison = out["contacts"]  # the note block has no category/priority/score
    assert hospital == {
        "name": "Springfield Memorial Hospital",
        "phone": "(217) 788-3000",
        "address": "701 N 1st St, Springfield, IL 62781",
        "website": "https://www.memorial.org",
        "category": "medical",
        "priority": "critical",
        "fit_score": 95,
        "reasoning": "Level I trauma center closest to you, with a pediatric emergency unit.",
        "relevant_scenarios": ["earthquake", "tornado", "medical emergency"],
        "available_24hr": True,
    }
    assert police["phone"] == "911" and police["address"] == "800 E Monroe St, Springfield, IL"
    assert police["website"] is None and police["fit_score"] == 85
    assert police["relevant_scenarios"] == ["civil unrest", "break-in"]
    assert police["available_24hr"] is False
    assert poison["priority"] is None and poison["reasoning"] is None
    assert poison["available_24hr"] is None and poison["relevant_scenarios"] == []
    park, library = out["meeting_locations"]
    assert park == {
        "name": "Washington Park",
        "priority": "primary",
        "address": "1500 Williams Blvd, Springfield, IL",
        "description": "Large public park with open fields.",
        "reasoning": "Away from buildings and power lines.",
        "suitable_for": ["earthquake", "fire"],
        "practical_details": "Free parking lot on the north side; paved paths are wheelchair accessible.",
        "has_parking": True,
        "is_accessible": True,
    }
    assert library["name"] == "Lincoln Library" and library["priority"] == "secondary"
    assert library["has_parking"] is False and library["is_accessible"] is False


def test_markdown_emergency_contacts_crlf_fence_and_label_variants() -> None:
    reply = (
        "```markdown\r\n## Emergency Contacts\r\n###Fire Dept\r\n"
        "* **Phone** - 911\r\n**Fit Score (0-100):** 8/10\r\n**Priority:** CRITICAL — call first\r\n"
        "**Available 24 hours**: yes, always\r\nRelevant scenarios: fire, smoke\r\n"
        "**Relevant Scenarios**:\r\n- ignored duplicate\r\n"
        "## Meeting Locations\r\n### Tertiary Meeting Point - Old Mill  \r\n"
        "**Practical Details**: ADA ramps, street parking.\r\n"
        "### Backup: Town Hall\r\n**Address**: 1 Main St\r\n"
        "### Central Square\r\n**Description**: open square\r\n```\r\n"
    )
    out = run("markdown_to_json", reply, schema="emergency_contacts")
    (fire,) = out["contacts"]
    assert fire["name"] == "Fire Dept" and fire["phone"] == "911"
    assert fire["fit_score"] == 80 and fire["priority"] == "critical"
    assert fire["available_24hr"] is True
    assert fire["relevant_scenarios"] == ["fire", "smoke"]
    mill, town_hall, square = out["meeting_locations"]
    assert (mill["name"], mill["priority"]) == ("Old Mill", "tertiary")
    assert mill["has_parking"] is True and mill["is_accessible"] is True
    assert mill["address"] is None and mill["suitable_for"] == []
    assert (town_hall["name"], town_hall["priority"]) == ("Town Hall", "secondary")
    assert town_hall["has_parking"] is None  # no practical details at all
    assert (square["name"], square["priority"]) == ("Central Square", "tertiary")  # by position


@pytest.mark.parametrize(
    "garbage",
    ["", "just some prose, no headings", "### \n**\n## ##\n#", '{"contacts": 1}', "\x00\x01 ###x"],
)
def test_markdown_emergency_contacts_garbage_is_empty(garbage: str) -> None:
    assert run("markdown_to_json", garbage, schema="emergency_contacts") == {
        "contacts": [],
        "meeting_locations": [],
    }


@pytest.mark.parametrize(
    ("details", "parking", "accessible"),
    [
        ("Parking garage next door, elevator and ramps.", True, True),
        ("Street parking is not available. Not wheelchair accessible.", False, False),
        ("Without parking; accessible by bus only.", False, False),
        ("Lots of parking. Entrance is inaccessible for wheelchairs.", True, False),
        ("Near Ada County courthouse.", False, False),
    ],
)
def test_markdown_location_practical_details_flags(
    details: str, parking: bool, accessible: bool
) -> None:
    reply = (
        f"## Meeting Locations\n### Primary Meeting Location: X\n**Practical Details**: {details}\n"
    )
    (loc,) = run("markdown_to_json", reply, schema="emergency_contacts")["meeting_locations"]
    assert (loc["has_parking"], loc["is_accessible"]) == (parking, accessible)


def test_markdown_input_shapes() -> None:
    empty: dict[str, list[Any]] = {"contacts": [], "meeting_locations": []}
    assert run("markdown_to_json", None, schema="emergency_contacts") == empty
    llm_output = {"content": LLM_REPLY, "model": "mock"}
    assert len(run("markdown_to_json", llm_output, schema="emergency_contacts")["contacts"]) == 3
    fails("markdown_to_json", 42, "input", schema="emergency_contacts")
    assert check_transform_config("markdown_to_json", {"schema": "contacts_v2"}) == [
        (
            "config.schema",
            "unknown schema 'contacts_v2' (expected one of emergency_contacts, sections)",
        )
    ]
    fails("markdown_to_json", "# x", "config.schema", schema="contacts_v2")


def test_markdown_generic_sections() -> None:
    text = "intro line\n# Title\nbody\n## A\n**Key Point**: v1\n- item one\n- item two\n### A.1\ndeep\n## B\n"
    out = run("markdown_to_json", text)
    assert out == run("markdown_to_json", text, schema="sections")
    assert out["content"] == "intro line"
    (title,) = out["sections"]
    assert (title["heading"], title["level"], title["content"]) == ("Title", 1, "body")
    a, b = title["sections"]
    assert a["fields"] == {"key_point": "v1"}
    assert a["items"] == ["item one", "item two"]
    assert a["sections"][0]["heading"] == "A.1" and a["sections"][0]["content"] == "deep"
    assert b == {
        "heading": "B",
        "level": 2,
        "content": "",
        "fields": {},
        "items": [],
        "sections": [],
    }


# --- hostile input ----------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "### a\n**Phone**: " + "[" * 100_000,
        "### a\n**Website**: " + "[a](" * 30_000,
        "### a\n**Website**: " + "<http:" * 30_000,
        "### a\n**Fit Score**: " + "9" * 100_000,
        "## " + "# " * 50_000 + "x",
        "## Meeting Locations\n### Primary Meeting Location: X\n**Practical Details**: "
        + "no " * 30_000
        + "parking",
    ],
)
def test_markdown_hostile_input_stays_linear(text: str) -> None:
    out = run("markdown_to_json", text, schema="emergency_contacts")
    assert set(out) == {"contacts", "meeting_locations"}
    assert run("markdown_to_json", text)["sections"]


def test_hostile_numbers_and_json() -> None:
    assert run("json_parse", "[" * 100_000, default="bad") == "bad"
    fails("json_parse", "x {" * 50_000, "input")
    assert run("to_number", "9" * 10_000, default=None) is None
    fails("to_number", "9" * 10_000, "input")
    reply = "### a\n**Fit Score**: " + "9" * 50 + "\n"
    assert (
        run("markdown_to_json", reply, schema="emergency_contacts")["contacts"][0]["fit_score"]
        == 100
    )


# --- purity -----------------------------------------------------------------------------------

ALLOWED_IMPORTS = {
    "__future__", "re", "json", "math", "copy", "unicodedata", "collections", "dataclasses",
    "typing", "functools", "jsonschema", "workflow_defs",
    "temporalio",  # schema.py: only to import jsonschema as a sandbox pass-through
}  # fmt: skip


def test_transform_modules_import_only_pure_modules() -> None:
    package = Path(__file__).resolve().parent.parent / "workflow_defs" / "transforms"
    modules = sorted(package.glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in ALLOWED_IMPORTS, f"{module.name} imports {name}"
