"""The DSL's pure code on hostile input: linear time, bounded memory, clear errors.

Transforms, conditions, references and prompt rendering run inside the workflow task, where
a slow call trips Temporal's deadlock detector; the loader runs in the gateway on request
bodies. Each case here was quadratic (or worse) or crashed with an unhandled exception before.
The timing bound is generous on purpose: what it catches takes minutes, not seconds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from workflow_defs import expressions
from workflow_defs.expressions import (
    MAX_CONDITION_CHARS,
    MAX_NESTING,
    Condition,
    ExpressionError,
    check_condition,
    compile_condition,
)
from workflow_defs.loader import (
    MAX_DEFINITION_BYTES,
    MAX_REPORTED_PROBLEMS,
    DefinitionError,
    DefinitionTooLarge,
    validate_definition,
)
from workflow_defs.prompts import (
    MAX_PROMPT_CHARS,
    MAX_RENDERED_PROMPT_CHARS,
    PromptError,
    check_placeholders,
    expand_includes,
    render_prompt,
)
from workflow_defs.references import Resolver, find_references
from workflow_defs.transforms import (
    TRANSFORM_OPERATIONS,
    TransformError,
    apply_transform,
    check_transform_config,
)
from workflow_defs.transforms.limits import MAX_INPUT_CHARS, MAX_OUTPUT_CHARS
from workflow_defs.transforms.markdown_reading import read_heading
from workflow_defs.transforms.text import MAX_PATTERN_CHARS, MAX_PATTERNS

T = TypeVar("T")
BOUND_SECONDS = 2.0
N = MAX_INPUT_CHARS - 10_000  # ~1 MB, just under the input limit


def fast(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - started
    assert elapsed < BOUND_SECONDS, f"took {elapsed:.1f} s"
    return result


def objects(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i % 97}", "tags": ["a", "b"]} for i in range(count)]


OBJECTS = objects(23_000)  # ~1 MB as JSON, just under the limit


# One entry per operation, several hostile inputs each: (data, config).
ADVERSARIAL: dict[str, list[tuple[Any, dict[str, Any]]]] = {
    "markdown_to_json": [
        ("# a" + " " * N + "b", {}),  # the reported one: a heading and a long run of spaces
        ("# a" + " \t" * (N // 2) + "#b", {"schema": "emergency_contacts"}),
        ("### x\n**" + " " * N + "!", {"schema": "emergency_contacts"}),
        ("### x\n- **a" + " " * N + "!", {}),
        ("### x\nPhone" + " " * N + "!", {"schema": "emergency_contacts"}),
        (
            "### Primary Meeting Location: Park\n**Suitable For**: a" + " " * N + "b\n",
            {"schema": "emergency_contacts"},
        ),
        ("## Meeting Location" + " " * N + "1", {"schema": "emergency_contacts"}),
        ("# " + "(" * N, {"schema": "emergency_contacts"}),
        ("[](" + "a" * N, {}),
        (
            "### x\n**Category**: medical\n**Website**: [a](" + "b" * N,
            {"schema": "emergency_contacts"},
        ),
        ("-" + " -" * (N // 2) + " x", {}),
        ("#\n" * (N // 2), {}),
        ("- **a**: b\n" * (N // 11), {}),
    ],
    "markdown_sections": [
        ("# a" + " " * N + "b", {}),
        ("## " + "#" * N, {"sections": ["a", "b"]}),
        ("# x\n" * (N // 4), {}),
        ("```\n" + "# a\n" * (N // 4), {}),
        ("#" + " \t" * (N // 2) + "#", {}),
    ],
    "regex_extract": [
        ("a" * N, {"pattern": r"\d+"}),
        ("x" * N, {"pattern": "x", "all_matches": True}),
        ({"k": "v" * N}, {"patterns": {"v": "v+", "none": "q"}}),
    ],
    "json_parse": [
        ("[" * 200 + "1," * (N // 2 - 100), {"default": None}),
        ("```" + "-" * N, {"default": None}),
        ("x {" * (N // 3), {"default": None}),
        ('{"a":' * (N // 5), {"default": None}),
        ('"' * N, {"default": None}),
    ],
    "template": [
        (OBJECTS, {"template": "${name} #${index}: ${item.tags[0]}"}),
        (
            OBJECTS[:20_000],
            {"template": "${name}", "variables": {f"v{i}": i for i in range(20_000)}},
        ),
        ({"doc": "x" * 1000}, {"template": "${" + " " * N + "doc}"}),
    ],
    "filter": [
        (OBJECTS, {"condition": "item.id > 10 and (item.name == 'n3' or 'a' in item.tags)"}),
    ],
    "map": [
        (OBJECTS, {"expression": "item.name.upper().strip()"}),
        (OBJECTS[:10], {"expression": "item.name" + ".strip()" * 30_000}),
    ],
    "join": [(OBJECTS, {"field": "name", "separator": " | "})],
    "sort": [
        (OBJECTS, {"key": ["name", "id"], "reverse": True}),
        ([*OBJECTS[:5000], *range(5000), *map(str, range(5000)), None, True], {}),
    ],
    "unique": [(OBJECTS, {"key": "name"}), (OBJECTS, {})],
    "limit": [(OBJECTS, {"count": 5, "offset": 10_000})],
    "extract_fields": [
        ({"results": OBJECTS}, {"paths": {"names": "results[*].name", "first": "results[0].id"}}),
    ],
    "pick": [(OBJECTS[:20_000], {"keys": [f"k{i}" for i in range(20_000)] + ["id"]})],
    "omit": [(OBJECTS[:20_000], {"keys": [f"k{i}" for i in range(20_000)] + ["id"]})],
    "coalesce": [([" " * 10] * (N // 13) + ["x"], {})],
    "to_number": [
        ("9" * N, {"default": None}),
        (["$1,234.50"] * 80_000, {}),
        ("(" + "1" * (N // 2) + ".5)", {"default": None}),
    ],
    "merge": [
        (None, {"sources": [{"a": {"b": OBJECTS[:10_000]}}, {"a": {"c": 1}}], "strategy": "deep"}),
    ],
    "validate_schema": [
        (OBJECTS, {"schema": {"type": "array", "uniqueItems": True}}),
        (OBJECTS, {"schema": {"type": "array", "items": {"type": "object"}}}),
    ],
    "error_metrics": [
        (
            OBJECTS,
            {"predictions": OBJECTS, "actual": "id", "predicted": ["no", "id"], "key": "name"},
        ),
        (
            OBJECTS[:10_000],
            {
                "predictions": OBJECTS[:10_000],
                "actual": "tags[*]",
                "predicted": "tags[0]",
                "key": ["x.y[3]", "id"],
            },
        ),
        (
            [{"a": "9" * (N // 2) + ".5", "k": 1}],
            {
                "predictions": [{"p": "1" * (N // 3), "k": "1"}],
                "actual": "a",
                "predicted": "p",
                "key": "k",
            },
        ),
    ],
}


def test_every_operation_has_hostile_cases() -> None:
    # A new operation must come with its own hostile inputs here.
    assert TRANSFORM_OPERATIONS <= set(ADVERSARIAL)


@pytest.mark.parametrize(
    ("operation", "case"),
    [(op, i) for op, cases in ADVERSARIAL.items() for i in range(len(cases))],
)
def test_transform_is_fast_on_hostile_input(operation: str, case: int) -> None:
    data, config = ADVERSARIAL[operation][case]
    fast(apply_transform, operation, data, config)  # and no error: each is within the limits


def test_the_reported_heading_case_still_reads_the_heading() -> None:
    tree = fast(apply_transform, "markdown_to_json", "# Title" + " " * 40_000 + "\nbody", {})
    assert tree["sections"][0]["heading"] == "Title"
    assert tree["sections"][0]["content"] == "body"


def test_uniqueness_keeps_json_schema_equality() -> None:
    schema = {"schema": {"uniqueItems": True}}
    with pytest.raises(TransformError, match="non-unique"):
        apply_transform("validate_schema", [{"a": 1}, {"a": 1.0}], schema)
    assert apply_transform("validate_schema", [1, True, "1", [1], [True]], schema)
    with pytest.raises(TransformError, match="non-unique"):
        apply_transform("validate_schema", [[{"x": [1]}], [{"x": [1.0]}]], schema)


def test_pick_with_many_keys_keeps_the_order_of_keys() -> None:
    keys = [f"k{i}" for i in range(100)] + ["b", "a", "b"]
    assert list(apply_transform("pick", {"a": 1, "b": 2, "c": 3}, {"keys": keys})) == ["b", "a"]


# --- input and output limits ------------------------------------------------------------------

TOO_LONG = "x" * (MAX_INPUT_CHARS + 1)


@pytest.mark.parametrize(
    ("operation", "data", "config"),
    [
        ("markdown_to_json", TOO_LONG, {}),
        ("regex_extract", TOO_LONG, {"pattern": "x"}),
        ("json_parse", TOO_LONG, {"default": None}),
        ("validate_schema", [TOO_LONG], {"schema": {"type": "array"}}),
        ("filter", [TOO_LONG], {"condition": "item == 'x'"}),
        ("sort", [TOO_LONG], {}),
        ("template", [TOO_LONG], {"template": "${item}"}),
    ],
)
def test_input_over_the_limit_fails_naming_size_and_limit(
    operation: str, data: Any, config: dict[str, Any]
) -> None:
    with pytest.raises(TransformError) as info:
        apply_transform(operation, data, config)
    assert info.value.field == "input"
    assert f"{MAX_INPUT_CHARS:,}" in str(info.value)
    assert re.search(r"is 1,000,0\d\d characters", str(info.value)), str(info.value)


def test_output_that_would_multiply_fails_early() -> None:
    doc = "x" * 100_000
    with pytest.raises(TransformError, match="more than a step may keep"):
        fast(
            apply_transform,
            "template",
            [{}] * 100_000,
            {"template": "${doc}", "variables": {"doc": doc}},
        )
    with pytest.raises(TransformError, match="more than a step may keep"):
        fast(apply_transform, "join", ["a"] * 20_000, {"separator": "-" * 100_000})
    # Right at the limit is still fine: only what no step could keep is refused.
    separator = "-" * ((MAX_OUTPUT_CHARS - 500 * 1000) // 499)
    out = apply_transform("join", ["x" * 1000] * 500, {"separator": separator})
    assert MAX_OUTPUT_CHARS - 499 <= len(out) <= MAX_OUTPUT_CHARS


# --- user-supplied regular expressions --------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("x{4294967295}", "over 1,000"),
        ("x{4294967296}", "over 1,000"),
        ("x{1,99999999999999999999}", "over 1,000"),
        ("(?:ab){1001}", "over 1,000"),
        ("x" * (MAX_PATTERN_CHARS + 1), "over the 1,000-character limit"),
        ("(?L)a", "not a valid regular expression"),
    ],
)
def test_refused_patterns_are_config_errors(pattern: str, says: str) -> None:
    (problem,) = check_transform_config("regex_extract", {"pattern": pattern})
    assert problem[0] == "config.pattern" and says in problem[1], problem
    # The same pattern arriving through a reference is a TransformError when the step runs.
    with pytest.raises(TransformError, match=re.escape(says)):
        apply_transform("regex_extract", "x", {"pattern": pattern})


@pytest.mark.parametrize(
    "pattern", [r"\{99999}", "[{99999}]", r"[]{99999}]", "x{1000}", "x{,1000}", "{99999", "a{}"]
)
def test_braces_that_are_not_big_repeats_are_accepted(pattern: str) -> None:
    assert check_transform_config("regex_extract", {"pattern": pattern}) == []


def test_number_of_patterns_is_bounded() -> None:
    patterns = {f"p{i}": "a" for i in range(MAX_PATTERNS + 1)}
    (problem,) = check_transform_config("regex_extract", {"patterns": patterns})
    assert problem[0] == "config.patterns" and f"at most {MAX_PATTERNS}" in problem[1]


# --- conditions -------------------------------------------------------------------------------


def test_a_long_or_chain_neither_recurses_nor_fails() -> None:
    text = " or ".join(f"item.v{i} == 1" for i in range(30_000))  # ~1,000 deep recursed
    cond = fast(Condition, text)
    assert len(cond.paths()) == 30_000
    assert cond.evaluate(lambda path: 1 if path == ["item", "v29999"] else 0) is True
    assert cond.evaluate(lambda path: 0) is False
    chain = fast(Condition, " and ".join(["true"] * 30_000) + " and not false")
    assert chain.evaluate(lambda path: None) is True


def test_a_long_not_chain_keeps_its_parity() -> None:
    assert Condition("not " * 100_001 + "true").evaluate(lambda p: None) is False
    assert Condition("not " * 100_000 + "true").evaluate(lambda p: None) is True
    # `not not x` is a boolean and compares as one.
    assert Condition("(not not 5) == true").evaluate(lambda p: None) is True


def test_nesting_is_bounded_with_a_clear_error() -> None:
    ok = "(" * MAX_NESTING + "true" + ")" * MAX_NESTING
    assert compile_condition(ok).evaluate(lambda p: None) is True
    deep = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    assert f"more than {MAX_NESTING} levels of parentheses" in (check_condition(deep) or "")
    with pytest.raises(ExpressionError):
        fast(Condition, "(" * 500_000)


@pytest.mark.parametrize(
    "text",
    [
        "a" + " " * 1_000_000,
        "a ==" + " " * 1_000_000 + "'unterminated",
        '"' + "a" * 1_000_000,
        "'" + "\\a" * 500_000,
        "1" * 1_000_000 + "a",
        "a == " + "1" * 1_000_000,
        "${" + " " * 1_000_000,
        "item" + ".a" * 500_000 + " > 1",
        "a" + "[0]" * 300_000,
    ],
)
def test_parsing_is_linear(text: str) -> None:
    try:
        fast(Condition, text)
    except ExpressionError:
        pass  # a clear error is fine; a ValueError, RecursionError or a hang is not


def test_a_condition_over_the_limit_is_refused_before_parsing() -> None:
    text = "a or " * 1000 + "b"  # 1,001 terms
    assert len(text) > MAX_CONDITION_CHARS
    message = check_condition(text) or ""
    assert f"{len(text):,} characters" in message and f"{MAX_CONDITION_CHARS:,}" in message


def test_the_condition_cache_is_bounded_by_size() -> None:
    for i in range(3000):
        compile_condition(f"item.x == {i} or " + "a" * 1000)  # just over what is cached
        compile_condition(f"item.x == {i} or " + "b" * 900)  # cached: ~0.9 KiB each
        compile_condition(f"item.y == {i}")
    assert expressions._cache_chars <= expressions.CACHE_BUDGET_CHARS
    assert len(expressions._cache) <= expressions.MAX_CACHE_ENTRIES
    assert expressions._cache_chars == sum(len(text) for text in expressions._cache)
    assert all(len(text) <= expressions.MAX_CACHED_CHARS for text in expressions._cache)
    for i in range(expressions.MAX_CACHE_ENTRIES + 10):
        compile_condition(f"i == {i}")
    assert len(expressions._cache) == expressions.MAX_CACHE_ENTRIES


# --- references and prompts -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "${" + " " * N + "input.a}",
        "${" + " " * N,
        "${" + "\n " * (N // 2) + "x",
        "${a" * (N // 3),
    ],
)
def test_reference_scans_are_linear(text: str) -> None:
    resolver = Resolver({"input": {"a": 1}})
    fast(resolver.resolve_string, text)
    try:
        fast(find_references, text)
    except ValueError:
        pass
    try:
        fast(render_prompt, text, {}, resolver)
    except ValueError:
        pass


def test_rendering_stops_growing_past_what_an_activity_accepts() -> None:
    big = "x" * 200_000
    template = "${big}" * 1000  # 200 MB if every placeholder were filled
    out = fast(render_prompt, template, {"big": big}, Resolver({}))
    assert MAX_RENDERED_PROMPT_CHARS < len(out) <= MAX_RENDERED_PROMPT_CHARS + len(big)
    # Below the limit nothing changes.
    assert (
        render_prompt("${a}-${a}", {"a": "x" * 1000}, Resolver({})) == "x" * 1000 + "-" + "x" * 1000
    )


def test_an_inline_prompt_over_the_limit_is_a_problem() -> None:
    (problem,) = check_placeholders("x" * (MAX_PROMPT_CHARS + 1), {})
    assert f"{MAX_PROMPT_CHARS:,}-character limit" in problem


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    root = tmp_path / "prompts"
    root.mkdir()
    return root


@pytest.mark.parametrize(
    ("relative", "says"),
    [
        ("a\x00b.md", "control character"),
        ("wf/\x00", "control character"),
        ("a\nb.md", "control character"),
        ("x" * 2000 + ".md", "over the 1,024-character limit"),
        ("x" * 300 + ".md", "cannot be read"),  # a name longer than the OS allows
    ],
)
def test_bad_prompt_paths_are_prompt_errors(prompts_dir: Path, relative: str, says: str) -> None:
    with pytest.raises(PromptError, match=says):
        expand_includes(prompts_dir, relative)
    (prompts_dir / "main.md").write_text("{{include:" + relative.replace("\n", "") + "}}")
    with pytest.raises(PromptError):
        expand_includes(prompts_dir, "main.md")


def test_a_template_that_is_not_text_is_a_prompt_error(prompts_dir: Path) -> None:
    (prompts_dir / "bin.md").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(PromptError, match="not UTF-8"):
        expand_includes(prompts_dir, "bin.md")


def test_include_fan_out_is_expanded_once_per_file(prompts_dir: Path) -> None:
    # 20 includes per file, 9 levels: 20**9 expansions before, ten files now.
    for level in range(9):
        (prompts_dir / f"f{level}.md").write_text(f"{{{{include:f{level + 1}.md}}}}" * 20)
    (prompts_dir / "f9.md").write_text("")
    assert fast(expand_includes, prompts_dir, "f0.md") == ""
    # With text at the bottom the same tree would be 20**9 characters: refused, quickly.
    (prompts_dir / "f9.md").write_text("x")
    with pytest.raises(PromptError, match=f"over {MAX_PROMPT_CHARS:,} characters"):
        fast(expand_includes, prompts_dir, "f0.md")


def test_the_depth_limit_still_holds_for_a_file_expanded_before(prompts_dir: Path) -> None:
    # deep.md is first met near the top (fine), then again nine levels down (too deep).
    for i in range(9):
        (prompts_dir / f"c{i}.md").write_text(f"{{{{include:c{i + 1}.md}}}}")
    (prompts_dir / "c9.md").write_text("{{include:deep.md}}")
    (prompts_dir / "deep.md").write_text("{{include:leaf.md}}")
    (prompts_dir / "leaf.md").write_text("leaf")
    (prompts_dir / "top.md").write_text("{{include:deep.md}} {{include:c0.md}}")
    with pytest.raises(PromptError, match="deeper than 10"):
        expand_includes(prompts_dir, "top.md")


# --- the loader: definitions from request bodies ----------------------------------------------


def load(definition: Any, prompts_dir: Path = Path("prompts")) -> Any:
    return validate_definition(definition, source="request", prompts_dir=prompts_dir)


def llm(**extra: Any) -> dict[str, Any]:
    return {"id": "a", "type": "llm", "config": {"model": "m", "prompt_text": "hi"}, **extra}


def problems_of(definition: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as info:
        load(definition)
    return [(p.path, p.message) for p in info.value.problems]


def test_a_definition_over_the_size_limit_is_refused_first() -> None:
    big = {"name": "big", "steps": [llm()], "description": "x" * MAX_DEFINITION_BYTES}
    with pytest.raises(DefinitionTooLarge) as info:
        load(big)
    ((path, message),) = [(p.path, p.message) for p in info.value.problems]
    assert path == "$" and f"{MAX_DEFINITION_BYTES:,}-byte limit" in message


def test_deep_nesting_is_a_problem_at_its_path_not_a_crash() -> None:
    value: Any = 1
    for _ in range(5000):
        value = [value]
    ((path, message),) = problems_of({"name": "deep", "steps": [llm()], "output": value})
    assert path.startswith("$.output[0][0]") and "nests deeper than 64 levels" in message


def test_a_when_of_a_thousand_or_terms_is_a_problem_not_a_recursion_error() -> None:
    when = " or ".join(["input.flag"] * 1000)
    ((path, message),) = problems_of({"name": "w", "steps": [llm(when=when)]})
    assert path == "$.steps[0].when" and f"{MAX_CONDITION_CHARS:,}-character limit" in message
    # Within the limit, a long chain loads.
    fits = " or ".join(["input.f"] * 300)
    assert load({"name": "w", "steps": [llm(when=fits)]}).name == "w"


def test_refused_regex_is_a_problem_at_its_path() -> None:
    step = {
        "id": "r",
        "type": "transform",
        "config": {"operation": "regex_extract", "config": {"pattern": "x{4294967295}"}},
    }
    ((path, message),) = problems_of({"name": "r", "steps": [step]})
    assert path == "$.steps[0].config.config.pattern" and "over 1,000" in message


def test_nul_in_a_prompt_template_is_a_problem_at_its_path() -> None:
    step = {"id": "a", "type": "llm", "config": {"model": "m", "prompt_template": "x\x00.md"}}
    ((path, message),) = problems_of({"name": "n", "steps": [step]})
    assert path == "$.steps[0].config.prompt_template" and "control character" in message


def test_reported_problems_are_bounded() -> None:
    when = " or ".join(f"n{i}" for i in range(500))  # under 4 KiB, 500 unknown roots
    assert len(when) <= MAX_CONDITION_CHARS
    steps = [llm(when=when) | {"id": f"s{i}"} for i in range(50)]
    found = fast(problems_of, {"name": "many", "steps": steps})
    assert len(found) == MAX_REPORTED_PROBLEMS + 1
    assert found[-1][0] == "$" and "more problems not listed" in found[-1][1]
    assert all(len(message) <= 501 for _path, message in found)


# --- the heading reader matches the regex it replaced -----------------------------------------

_OLD_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|(?<=##)(?=[^#\s]))(.*?)(?:[ \t]+#+)?[ \t]*$")


def test_heading_reader_agrees_with_the_old_pattern_on_short_lines() -> None:
    import itertools

    alphabet = ["#", " ", "\t", "a", "\x0b", "##"]
    for size in range(7):
        for parts in itertools.product(alphabet, repeat=size):
            line = "".join(parts)
            m = _OLD_HEADING.match(line)
            assert read_heading(line) == ((len(m.group(1)), m.group(2)) if m else None), line


def test_the_hostile_lists_are_about_a_megabyte() -> None:
    # Near the limit, not trivially small, and under it: the cases above must really run.
    size = len(json.dumps(OBJECTS, ensure_ascii=False, separators=(",", ":")))
    assert 0.8 * MAX_INPUT_CHARS < size < MAX_INPUT_CHARS
