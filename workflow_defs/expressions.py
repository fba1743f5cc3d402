"""The safe condition language for `when`, `switch` and `filter`.

Grammar (no attribute access beyond data paths, no calls, nothing that runs code):

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand (OP operand)?      OP: == != > >= < <= in "not in" contains
    operand    := "(" expr ")" | literal | ${path} | path
    literal    := 'str' | "str" | number | true | false | null  (True/False/None too)

Bare paths (`item.rating`, `steps.fetch.status`) and `${…}` references read the same scope.
Comparisons between values that can't be ordered are false, never an error, so a condition
over missing data just doesn't match.

Conditions reach us from HTTP bodies (the validate endpoint) and run inside the workflow, so
parsing is linear in the text: one regex match per token with no backtracking across tokens,
`and`/`or` chains are read in a loop into n-ary nodes (a 100,000-term chain neither recurses
nor builds a deep tree), and parentheses may nest at most MAX_NESTING deep. `compile_condition`
refuses conditions over MAX_CONDITION_CHARS and caches compiled conditions only when short,
within a fixed character budget, so distinct conditions can't grow the process.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from workflow_defs.references import Path, ReferenceSyntaxError, is_missing, parse_path, walk

MAX_CONDITION_CHARS = 4096
MAX_NESTING = 32
MAX_NUMBER_CHARS = 100
# A cached condition costs roughly 30 times its text; 256 KiB of text keeps the cache under
# ~10 MB however many distinct conditions arrive.
CACHE_BUDGET_CHARS = 256 * 1024
MAX_CACHED_CHARS = 1024
MAX_CACHE_ENTRIES = 5_000


class ExpressionError(ValueError):
    pass


_SPACE = re.compile(r"\s*+")
# Possessive quantifiers: a token either matches where it starts or not at all, so a failed
# match never rescans the rest of the text.
_TOKEN = re.compile(
    r"""\s*+(?:
        (?P<ref>\$\{[^{}]*+\})
      | (?P<str>"(?:[^"\\]|\\.)*+"|'(?:[^'\\]|\\.)*+')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z_]))
      | (?P<op>==|!=|>=|<=|>|<|\(|\))
      | (?P<path>[A-Za-z_][A-Za-z0-9_\-]*+(?:\.[A-Za-z_][A-Za-z0-9_\-]*+|\[-?\d++\])*+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_STR_ESCAPES = re.compile(r"\\(.)")


def _shown(text: str) -> str:
    """The condition as quoted in messages: long ones are cut, the message stays readable."""
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "…"


class _Tok(NamedTuple):
    kind: str  # ref | str | num | op | kw | lit | path
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    end = len(text)
    pos = 0
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m:
            space = _SPACE.match(text, pos)
            pos = space.end() if space else pos
            if pos == end:
                break
            raise ExpressionError(
                f"unexpected character at position {pos}: {text[pos : pos + 10]!r}"
            )
        kind = m.lastgroup or ""
        raw = m.group(kind)
        pos = m.start(kind)
        if kind == "ref":
            tokens.append(_Tok("path", _parse(raw[2:-1], text), pos))
        elif kind == "str":
            tokens.append(_Tok("lit", _STR_ESCAPES.sub(r"\1", raw[1:-1]), pos))
        elif kind == "num":
            if len(raw) > MAX_NUMBER_CHARS:  # int() of a long digit string is quadratic
                raise ExpressionError(
                    f"number at position {pos} is longer than {MAX_NUMBER_CHARS} characters"
                )
            tokens.append(
                _Tok("lit", float(raw) if any(c in raw for c in ".eE") else int(raw), pos)
            )
        elif kind == "path" and raw in _KEYWORDS:
            tokens.append(_Tok("kw", raw, pos))
        elif kind == "path" and raw in _LITERALS:
            tokens.append(_Tok("lit", _LITERALS[raw], pos))
        elif kind == "path":
            tokens.append(_Tok("path", _parse(raw, text), pos))
        else:
            tokens.append(_Tok("op", raw, pos))
        pos = m.end()
    return tokens


def _parse(raw: str, text: str) -> Path:
    try:
        return parse_path(raw)
    except ReferenceSyntaxError as exc:
        raise ExpressionError(f"{exc} in {_shown(text)}") from None


# AST nodes are tuples: ("lit", v) ("path", p) ("not", n) ("cmp", op, a, b), and n-ary
# ("and", a, b, …) / ("or", a, b, …), evaluated left to right with short-circuit.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExpressionError(f"unexpected end of condition {_shown(self.text)}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty condition")
        node = self.or_()
        if self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            raise ExpressionError(
                f"unexpected {tok.value!r} at position {tok.pos} in {_shown(self.text)}"
            )
        return node

    def _is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "kw" and tok.value == word

    def or_(self) -> Node:
        terms = [self.and_()]
        while self._is_kw("or"):
            self.take()
            terms.append(self.and_())
        return terms[0] if len(terms) == 1 else ("or", *terms)

    def and_(self) -> Node:
        terms = [self.not_()]
        while self._is_kw("and"):
            self.take()
            terms.append(self.not_())
        return terms[0] if len(terms) == 1 else ("and", *terms)

    def not_(self) -> Node:
        count = 0
        while self._is_kw("not"):
            self.take()
            count += 1
        node = self.comparison()
        if count:
            # `not not x` is bool(x), which may be compared: keep two levels, never a chain.
            node = ("not", node) if count % 2 else ("not", ("not", node))
        return node

    def comparison(self) -> Node:
        left = self.operand()
        tok = self.peek()
        if tok is None:
            return left
        if tok.kind == "op" and tok.value in ("==", "!=", ">", ">=", "<", "<="):
            self.take()
            return ("cmp", tok.value, left, self.operand())
        if tok.kind == "kw" and tok.value in ("in", "contains"):
            self.take()
            return ("cmp", tok.value, left, self.operand())
        if tok.kind == "kw" and tok.value == "not":
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
            if nxt is not None and nxt.kind == "kw" and nxt.value == "in":
                self.i += 2
                return ("cmp", "not in", left, self.operand())
        return left

    def operand(self) -> Node:
        tok = self.take()
        if tok.kind == "op" and tok.value == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionError(
                    f"condition nests too deeply: more than {MAX_NESTING} levels of "
                    f"parentheses at position {tok.pos} in {_shown(self.text)}"
                )
            node = self.or_()
            close = self.take()
            if close.value != ")":
                raise ExpressionError(
                    f"expected ')' at position {close.pos} in {_shown(self.text)}"
                )
            self.depth -= 1
            return node
        if tok.kind == "lit":
            return ("lit", tok.value)
        if tok.kind == "path":
            return ("path", tok.value)
        raise ExpressionError(
            f"unexpected {tok.value!r} at position {tok.pos} in {_shown(self.text)}"
        )


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op in ("==", "!="):
        # JSON semantics: true is not 1 and false is not 0 (Python's bool is an int).
        equal = isinstance(a, bool) == isinstance(b, bool) and a == b
        if not equal and not isinstance(a, bool) and not isinstance(b, bool):
            na, nb = _num(a), _num(b)
            equal = (
                na is not None
                and nb is not None
                and isinstance(a, str) != isinstance(b, str)
                and na == nb
            )
        return equal if op == "==" else not equal
    if op in ("in", "not in", "contains"):
        container, item = (b, a) if op != "contains" else (a, b)
        try:
            if isinstance(container, str):
                result = isinstance(item, str) and item in container
            elif isinstance(container, list | tuple | Mapping):
                result = item in container
            else:
                result = False
        except TypeError:
            result = False
        return (not result) if op == "not in" else result
    # Ordering: numbers (numeric strings included) or two strings; anything else is false.
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        a, b = na, nb
    elif not (isinstance(a, str) and isinstance(b, str)):
        return False
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


class Condition:
    def __init__(self, text: str) -> None:
        self.text = text
        try:
            self._ast = _Parser(text).parse()
        except RecursionError:  # nesting is bounded; this only guards a tiny remaining stack
            raise ExpressionError(f"condition nests too deeply: {_shown(text)}") from None

    def paths(self) -> list[Path]:
        out: list[Path] = []

        def visit(node: Node) -> None:
            if node[0] == "path":
                out.append(node[1])
            for child in node[1:]:
                if isinstance(child, tuple):
                    visit(child)

        visit(self._ast)
        return out

    def evaluate(self, lookup: Callable[[Path], Any]) -> bool:
        return bool(self._eval(self._ast, lookup))

    def _eval(self, node: Node, lookup: Callable[[Path], Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "path":
            value = lookup(node[1])
            return None if is_missing(value) else value
        if kind == "not":
            return not self._eval(node[1], lookup)
        if kind == "and":
            return all(bool(self._eval(term, lookup)) for term in node[1:])
        if kind == "or":
            return any(bool(self._eval(term, lookup)) for term in node[1:])
        return _compare(node[1], self._eval(node[2], lookup), self._eval(node[3], lookup))


_cache: dict[str, Condition] = {}
_cache_chars = 0
_cache_lock = threading.Lock()


def compile_condition(text: str) -> Condition:
    """The parsed condition, cached when short. Conditions of definitions are compiled here,
    so the length cap is enforced here: before any parsing, and for every caller."""
    cond = _cache.get(text)
    if cond is not None:
        return cond
    if len(text) > MAX_CONDITION_CHARS:
        raise ExpressionError(
            f"the condition is {len(text):,} characters, over the {MAX_CONDITION_CHARS:,}-"
            f"character limit"
        )
    cond = Condition(text)
    if len(text) <= MAX_CACHED_CHARS:
        _remember(text, cond)
    return cond


def _remember(text: str, cond: Condition) -> None:
    global _cache_chars
    with _cache_lock:
        if text in _cache:
            return
        # Oldest out first; an evicted condition is simply compiled again on its next use.
        while _cache and (
            _cache_chars + len(text) > CACHE_BUDGET_CHARS or len(_cache) >= MAX_CACHE_ENTRIES
        ):
            oldest = next(iter(_cache))
            _cache_chars -= len(oldest)
            del _cache[oldest]
        _cache[text] = cond
        _cache_chars += len(text)


def check_condition(text: str) -> str | None:
    """Syntax error message, or None when the condition parses."""
    try:
        compile_condition(text)
    except ExpressionError as exc:
        return str(exc)
    return None


def evaluate_condition(text: str, scope: Mapping[str, Any]) -> bool:
    """Evaluate with bare paths resolved against `scope` (e.g. {"item": element})."""
    return compile_condition(text).evaluate(lambda path: walk(scope, path))
