"""Prompt templates: include expansion confined to PROMPTS_DIR, one-pass render."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_defs.prompts import (
    MAX_INCLUDE_DEPTH,
    PromptError,
    check_placeholders,
    expand_includes,
    render_prompt,
)
from workflow_defs.references import Resolver


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """tmp_path/prompts is PROMPTS_DIR; tmp_path/secret.txt sits just outside it."""
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    root = tmp_path / "prompts"
    root.mkdir()
    return root


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --- include expansion -----------------------------------------------------------------------


def test_template_without_includes_is_returned_verbatim(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/plain.md", "Hello ${name}.\n")
    assert expand_includes(prompts_dir, "wf/plain.md") == "Hello ${name}.\n"


def test_includes_resolve_relative_to_the_including_file(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/main.md", "A [{{include:parts/b.md}}] [{{ include : ../common/s.md }}]")
    write(prompts_dir, "wf/parts/b.md", "B<{{include:c.md}}>")  # wf/parts/c.md, not wf/c.md
    write(prompts_dir, "wf/parts/c.md", "C")
    write(prompts_dir, "wf/c.md", "WRONG C")
    write(prompts_dir, "common/s.md", "shared style")
    assert expand_includes(prompts_dir, "wf/main.md") == "A [B<C>] [shared style]"


def test_nested_includes_into_shared(prompts_dir: Path) -> None:
    write(prompts_dir, "a/top.md", "top {{include:../common/one.md}}")
    write(prompts_dir, "common/one.md", "one {{include:two.md}}")
    write(prompts_dir, "common/two.md", "two")
    assert expand_includes(prompts_dir, "a/top.md") == "top one two"


def test_same_file_included_twice_is_not_a_cycle(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/main.md", "{{include:x.md}}-{{include:x.md}}")
    write(prompts_dir, "wf/x.md", "X")
    assert expand_includes(prompts_dir, "wf/main.md") == "X-X"


def _chain(root: Path, files: int) -> None:
    for i in range(files):
        body = f"L{i} {{{{include:f{i + 1}.md}}}}" if i < files - 1 else "end"
        write(root, f"f{i}.md", body)


def test_include_depth_limit(prompts_dir: Path) -> None:
    # The code counts the top file: 10 files (9 nested includes) is the deepest accepted chain.
    # Includes nest at most 10 deep; 11 files (10 include levels) is rejected here.
    assert MAX_INCLUDE_DEPTH == 10
    _chain(prompts_dir, 10)
    assert expand_includes(prompts_dir, "f0.md") == " ".join(f"L{i}" for i in range(9)) + " end"
    _chain(prompts_dir, 11)
    with pytest.raises(PromptError, match=r"deeper than 10 at f10\.md"):
        expand_includes(prompts_dir, "f0.md")


def test_cycle_names_the_chain(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/a.md", "a {{include:b.md}}")
    write(prompts_dir, "wf/b.md", "b {{include:a.md}}")
    with pytest.raises(PromptError) as exc:
        expand_includes(prompts_dir, "wf/a.md")
    assert "cyclic" in str(exc.value)
    assert "wf/a.md → wf/b.md → wf/a.md" in str(exc.value)


def test_self_include_is_a_cycle(prompts_dir: Path) -> None:
    write(prompts_dir, "me.md", "{{include:./me.md}}")
    with pytest.raises(PromptError, match=r"me\.md → me\.md"):
        expand_includes(prompts_dir, "me.md")


def test_missing_include_names_the_file_and_includer(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/main.md", "x {{include:gone.md}}")
    with pytest.raises(PromptError) as exc:
        expand_includes(prompts_dir, "wf/main.md")
    assert "wf/gone.md" in str(exc.value)
    assert "included from wf/main.md" in str(exc.value)


def test_missing_top_level_template(prompts_dir: Path) -> None:
    with pytest.raises(PromptError, match=r"'nope/x\.md' not found"):
        expand_includes(prompts_dir, "nope/x.md")


def test_a_directory_is_not_a_template(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/x.md", "x")
    with pytest.raises(PromptError, match="not found"):
        expand_includes(prompts_dir, "wf")


@pytest.mark.parametrize(
    "directive",
    [
        "{{include:../../etc/passwd}}",
        "{{include:../../secret.txt}}",
        "{{include:../../../../../../../../etc/passwd}}",
        "{{include:/etc/passwd}}",
    ],
)
def test_include_traversal_is_refused(prompts_dir: Path, directive: str) -> None:
    write(prompts_dir, "wf/evil.md", f"before {directive} after")
    with pytest.raises(PromptError, match="PROMPTS_DIR"):
        expand_includes(prompts_dir, "wf/evil.md")


def test_include_of_the_secret_via_absolute_path_is_refused(prompts_dir: Path) -> None:
    secret = prompts_dir.parent / "secret.txt"
    write(prompts_dir, "evil.md", f"{{{{include:{secret}}}}}")
    with pytest.raises(PromptError, match="must be relative"):
        expand_includes(prompts_dir, "evil.md")


@pytest.mark.parametrize("relative", ["../secret.txt", "wf/../../secret.txt"])
def test_top_level_template_outside_prompts_dir_is_refused(
    prompts_dir: Path, relative: str
) -> None:
    with pytest.raises(PromptError, match="outside PROMPTS_DIR"):
        expand_includes(prompts_dir, relative)


def test_absolute_top_level_template_is_refused(prompts_dir: Path) -> None:
    with pytest.raises(PromptError, match="must be relative"):
        expand_includes(prompts_dir, str(prompts_dir.parent / "secret.txt"))


def test_symlink_pointing_outside_is_refused(prompts_dir: Path) -> None:
    (prompts_dir / "link.md").symlink_to(prompts_dir.parent / "secret.txt")
    write(prompts_dir, "uses-link.md", "{{include:link.md}}")
    for relative in ("link.md", "uses-link.md"):
        with pytest.raises(PromptError, match="outside PROMPTS_DIR"):
            expand_includes(prompts_dir, relative)


def test_dotdot_that_stays_inside_is_fine(prompts_dir: Path) -> None:
    write(prompts_dir, "wf/sub/x.md", "{{include:../../common/y.md}}")
    write(prompts_dir, "common/y.md", "Y")
    assert expand_includes(prompts_dir, "wf/sub/x.md") == "Y"
    assert expand_includes(prompts_dir, "wf/sub/../../common/y.md") == "Y"


# --- rendering -------------------------------------------------------------------------------


def test_render_substitutes_variables_and_references() -> None:
    resolver = Resolver({"input": {"x": 7, "who": "Ann"}, "steps": {"s": {"output": [1, 2]}}})
    text = render_prompt(
        "v=${v} a=${v2.a[0].k} l=${v2.a} x=${input.x} s=${steps.s.output} b=${flag}",
        {"v": "plain", "v2": {"a": [{"k": "deep"}]}, "flag": False},
        resolver,
    )
    assert text == 'v=plain a=deep l=[{"k": "deep"}] x=7 s=[1, 2] b=false'
    assert resolver.warnings == []


def test_render_is_a_single_pass() -> None:
    # Data that looks like a directive or a reference stays literal text.
    resolver = Resolver({"input": {"secret": "TOP-SECRET", "note": "${input.secret}"}})
    text = render_prompt(
        "a=${a} b=${b} c=${input.note}",
        {"a": "{{include:x.md}}", "b": "${input.secret} and ${b}"},
        resolver,
    )
    assert text == "a={{include:x.md}} b=${input.secret} and ${b} c=${input.secret}"
    assert "TOP-SECRET" not in text


def test_render_does_not_expand_includes() -> None:
    # Includes are expanded only at load (expand_includes), never at render time.
    assert render_prompt("{{include:x.md}} ${a}", {"a": 1}, Resolver({})) == "{{include:x.md}} 1"


def test_render_missing_values_are_empty_and_warned() -> None:
    resolver = Resolver({"input": {}})
    text = render_prompt("[${v.missing}] [${input.absent}] [${n}]", {"v": {}, "n": None}, resolver)
    # A variable that resolved to null renders as empty text in prompts (not "null").
    assert text == "[] [] []"
    assert resolver.warnings == [
        "prompt variable ${v.missing} is not set",
        "${input.absent} is not set; used null",
    ]


def test_variables_shadow_reference_roots() -> None:
    resolver = Resolver({"input": {"x": "from namespace"}})
    text = render_prompt("${input.x}", {"input": {"x": "from variable"}}, resolver)
    assert text == "from variable"


# --- placeholder checks ----------------------------------------------------------------------


def test_check_placeholders_flags_unknown_names() -> None:
    template = "${who} ${input.x} ${steps.a.output} ${context.job_id} ${typo} ${who.name[0]}"
    problems = check_placeholders(template, {"who": "Ann"})
    assert problems == ["${typo} is neither a variable of this step nor a reference"]


def test_check_placeholders_flags_bad_syntax() -> None:
    problems = check_placeholders("${a b}", {"a": 1})
    assert len(problems) == 1
    assert "bad reference path" in problems[0]


def test_check_placeholders_clean_template() -> None:
    assert check_placeholders("No placeholders, {{braces}} and $dollar.", {}) == []
