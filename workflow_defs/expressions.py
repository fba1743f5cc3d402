"""The safe condition language for `when`, `switch` and `filter` (DESIGN §3.3).

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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workflow_defs.references import Path, ReferenceSyntaxError, is_missing, parse_path, walk


class ExpressionError(ValueError):
    pass


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ref>\$\{[^{}]*\})
      | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![A-Za-z_]))
      | (?P<op>==|!=|>=|<=|>|<|\(|\))
      | (?P<path>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*|\[-?\d+\])*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "contains"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_STR_ESCAPES = re.compile(r"\\(.)")


@dataclass(frozen=True)
class _Tok:
    kind: str  # ref | str | num | op | kw | lit | path
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExpressionError(
                f"unexpected character at position {pos}: {text[pos : pos + 10]!r}"
            )
        kind = m.lastgroup or ""
        raw = m.group(kind)
        start = m.start(kind)
        if kind == "ref":
            tokens.append(_Tok("path", _parse(raw[2:-1], text), start))
        elif kind == "str":
            tokens.append(_Tok("lit", _STR_ESCAPES.sub(r"\1", raw[1:-1]), start))
        elif kind == "num":
            tokens.append(
                _Tok("lit", float(raw) if any(c in raw for c in ".eE") else int(raw), start)
            )
        elif kind == "path" and raw in _KEYWORDS:
            tokens.append(_Tok("kw", raw, start))
        elif kind == "path" and raw in _LITERALS:
            tokens.append(_Tok("lit", _LITERALS[raw], start))
        elif kind == "path":
            tokens.append(_Tok("path", _parse(raw, text), start))
        else:
            tokens.append(_Tok("op", raw, start))
        pos = m.end()
    return tokens


def _parse(raw: str, text: str) -> Path:
    try:
        return parse_path(raw)
    except ReferenceSyntaxError as exc:
        raise ExpressionError(f"{exc} in {text!r}") from None


# AST nodes are tuples: ("lit", v) ("path", p) ("not", n) ("and", a, b) ("or", a, b) ("cmp", op, a, b)
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ExpressionError(f"unexpected end of condition {self.text!r}")
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
                f"unexpected {tok.value!r} at position {tok.pos} in {self.text!r}"
            )
        return node

    def _is_kw(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "kw" and tok.value == word

    def or_(self) -> Node:
        node = self.and_()
        while self._is_kw("or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self._is_kw("and"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self._is_kw("not"):
            self.take()
            return ("not", self.not_())
        return self.comparison()

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
            node = self.or_()
            close = self.take()
            if close.value != ")":
                raise ExpressionError(f"expected ')' at position {close.pos} in {self.text!r}")
            return node
        if tok.kind == "lit":
            return ("lit", tok.value)
        if tok.kind == "path":
            return ("path", tok.value)
        raise ExpressionError(f"unexpected {tok.value!r} at position {tok.pos} in {self.text!r}")


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
        except RecursionError:
            raise ExpressionError(f"condition nests too deeply: {text[:50]!r}…") from None

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
            return bool(self._eval(node[1], lookup)) and bool(self._eval(node[2], lookup))
        if kind == "or":
            return bool(self._eval(node[1], lookup)) or bool(self._eval(node[2], lookup))
        return _compare(node[1], self._eval(node[2], lookup), self._eval(node[3], lookup))


_cache: dict[str, Condition] = {}


def compile_condition(text: str) -> Condition:
    cond = _cache.get(text)
    if cond is None:
        cond = Condition(text)
        if len(_cache) < 5_000:
            _cache[text] = cond
    return cond


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
