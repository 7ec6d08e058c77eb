"""A recursive-descent parser for FHIRPath expressions, producing a small immutable AST.

It parses the whole FHIRPath grammar's operator structure (so that a syntax error is reported as
one and precedence is right), while ``expressions.py`` decides which parts compile to SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rescue_pipeline.viewdef.errors import ViewError


class FhirPathSyntaxError(ViewError):
    """The text is not a FHIRPath expression."""


@dataclass(frozen=True)
class Literal:
    """A string, number or boolean literal; ``{}`` (the empty collection) has kind 'empty'."""

    kind: str  # "string" | "integer" | "decimal" | "boolean" | "empty" | "datetime" | "quantity"
    value: str


@dataclass(frozen=True)
class This:
    """``$this``."""


@dataclass(frozen=True)
class Special:
    """``$index`` / ``$total``: parsed so they can be refused by name."""

    name: str


@dataclass(frozen=True)
class Constant:
    """``%name``: an environment variable (a view constant, ``%rowIndex``, ``%resource``)."""

    name: str


@dataclass(frozen=True)
class Member:
    """``target.name``; ``target`` is None at the start of a path (the implicit ``$this``)."""

    target: Node | None
    name: str


@dataclass(frozen=True)
class Call:
    """``target.name(args)``; ``target`` is None for a call at the start of a path."""

    target: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    """``target[index]``."""

    target: Node
    index: Node


@dataclass(frozen=True)
class Binary:
    """``left op right`` for every FHIRPath binary operator (including ``is``/``as``)."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary:
    """``-x`` / ``+x``."""

    op: str
    operand: Node


Node = Literal | This | Special | Constant | Member | Call | Index | Binary | Unary

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>@[0-9T][0-9T:.+\-Z]*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<delimited>`(?:[^`\\]|\\.)*`)
  | (?P<special>\$(?:this|index|total))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[=~<>+\-*/|&(),.\[\]{}%])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_KEYWORD_OPS = {"and", "or", "xor", "implies", "div", "mod", "is", "as", "in", "contains"}


def _unescape(body: str) -> str:
    """Resolve FHIRPath string escapes (``\\'``, ``\\n``, ``\\uXXXX`` ...)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise FhirPathSyntaxError(f"unknown escape \\{nxt} in string literal")
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FhirPathSyntaxError(f"unexpected character {text[pos]!r} at {pos} in {text!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append((kind, m.group()))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def at(self, *values: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] in ("op", "ident") and tok[1] in values

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FhirPathSyntaxError(f"unexpected end of expression {self.text!r}")
        self.pos += 1
        return tok

    def expect(self, value: str) -> None:
        got = self.take()[1]
        if got != value:
            raise FhirPathSyntaxError(f"expected {value!r}, got {got!r} in {self.text!r}")

    def parse(self) -> Node:
        node = self.binary(0)
        if self.peek() is not None:
            raise FhirPathSyntaxError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return node

    # Lowest to highest precedence, as in the FHIRPath grammar.
    LEVELS: tuple[tuple[str, ...], ...] = (
        ("implies",),
        ("or", "xor"),
        ("and",),
        ("in", "contains"),
        ("=", "~", "!=", "!~"),
        ("<", ">", "<=", ">="),
        ("|",),
        ("is", "as"),
        ("+", "-", "&"),
        ("*", "/", "div", "mod"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.at(*self.LEVELS[level]):
            op = self.take()[1]
            right = self.type_specifier() if op in ("is", "as") else self.binary(level + 1)
            left = Binary(op, left, right)
        return left

    def type_specifier(self) -> Node:
        node: Node = Member(None, self.identifier())
        while self.at("."):
            self.take()
            node = Member(node, self.identifier())
        return node

    def unary(self) -> Node:
        if self.at("+", "-"):
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("."):
                self.take()
                node = self.invocation(node)
            elif self.at("["):
                self.take()
                index = self.binary(0)
                self.expect("]")
                node = Index(node, index)
            else:
                return node

    def identifier(self) -> str:
        kind, value = self.take()
        if kind == "ident":
            return value
        if kind == "delimited":
            return _unescape(value[1:-1])
        raise FhirPathSyntaxError(f"expected an identifier, got {value!r} in {self.text!r}")

    def invocation(self, target: Node | None) -> Node:
        name = self.identifier()
        if not self.at("("):
            return Member(target, name)
        self.take()
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.binary(0))
            while self.at(","):
                self.take()
                args.append(self.binary(0))
        self.expect(")")
        return Call(target, name, tuple(args))

    def term(self) -> Node:
        tok = self.peek()
        if tok is None:
            raise FhirPathSyntaxError(f"unexpected end of expression {self.text!r}")
        kind, value = tok
        if kind == "string":
            self.take()
            return Literal("string", _unescape(value[1:-1]))
        if kind == "number":
            self.take()
            if self.peek() is not None and self.peek()[0] == "string":  # type: ignore[index]
                unit = self.take()[1]
                return Literal("quantity", value + " " + unit)
            return Literal("decimal" if "." in value else "integer", value)
        if kind == "datetime":
            self.take()
            return Literal("datetime", value[1:])
        if kind == "special":
            self.take()
            return This() if value == "$this" else Special(value)
        if kind == "op" and value == "(":
            self.take()
            node = self.binary(0)
            self.expect(")")
            return node
        if kind == "op" and value == "{":
            self.take()
            self.expect("}")
            return Literal("empty", "")
        if kind == "op" and value == "%":
            self.take()
            nxt = self.take()
            if nxt[0] == "string":
                return Constant(_unescape(nxt[1][1:-1]))
            self.pos -= 1
            return Constant(self.identifier())
        if kind == "ident" and value in ("true", "false"):
            self.take()
            return Literal("boolean", value)
        if kind == "ident" and value in _KEYWORD_OPS and not self._followed_by_paren():
            raise FhirPathSyntaxError(f"unexpected operator {value!r} in {self.text!r}")
        if kind in ("ident", "delimited"):
            return self.invocation(None)
        raise FhirPathSyntaxError(f"unexpected {value!r} in {self.text!r}")

    def _followed_by_paren(self) -> bool:
        nxt = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        return nxt == ("op", "(")


def parse(text: str) -> Node:
    """Parse one FHIRPath expression; raises FhirPathSyntaxError (a ViewError) if malformed."""
    if not isinstance(text, str) or not text.strip():
        raise FhirPathSyntaxError(f"a FHIRPath expression must be a non-empty string, got {text!r}")
    return _Parser(text).parse()
