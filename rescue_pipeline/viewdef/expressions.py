"""Compile a FHIRPath AST to a DuckDB SQL expression.

A compiled expression (``Expr``) is either one value or NULL (``many=False``) or a DuckDB LIST
(``many=True``, a FHIRPath collection); its items are JSON (parts of the resource) or typed SQL
values (literals, comparisons, functions). While the path only walks elements, it stays one
``json_extract(base, '$.a[*].b')`` call: ``[*]`` is added exactly where the R4B cardinality says
an element repeats, so FHIRPath's flattening costs no per-item lambda. Unknown elements (inside
extensions of unknown type, contained resources) fall back to a lambda that accepts both an
array and a single value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal as TypingLiteral

from rescue_pipeline.viewdef import cardinality as card
from rescue_pipeline.viewdef import fhirpath as fp
from rescue_pipeline.viewdef import sql
from rescue_pipeline.viewdef.errors import UnsupportedFeature, ViewError

Kind = TypingLiteral["json", "str", "num", "bool"]


@dataclass(frozen=True)
class Expr:
    """A compiled FHIRPath expression: SQL text plus what the compiler knows about its value."""

    sql: str
    many: bool
    kind: Kind
    ftype: str | None = None  # FHIR type of the items, when known
    base: str | None = None  # when set, sql == json_extract(base, path): paths can be fused
    path: str | None = None


def json_root(sql_text: str, ftype: str | None) -> Expr:
    """A single JSON value (the resource, or a forEach item) as the start of paths."""
    return Expr(sql_text, False, "json", ftype, sql_text, "$")


@dataclass
class Scope:
    """What a FHIRPath expression is evaluated against: ``$this``, constants, row index."""

    this: Expr
    root: Expr
    resource_key: str
    constants: dict[str, Expr]
    row_index: str = "0"
    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def var(self, prefix: str = "v") -> str:
        """A fresh lambda variable name (lambdas nest, so names must not clash)."""
        return f"__{prefix}{next(self.counter)}"

    def at(self, this: Expr, row_index: str | None = None) -> Scope:
        """The same scope with another ``$this`` (inside where(), forEach)."""
        return replace(self, this=this, row_index=row_index or self.row_index)


def _natural_kind(e: Expr) -> Kind | None:
    """How FHIRPath compares the items of ``e``: as strings, numbers or booleans (None: unknown)."""
    if e.kind != "json":
        return e.kind
    if e.ftype in card.NUMERIC_TYPES:
        return "num"
    if e.ftype == "boolean":
        return "bool"
    if e.ftype in card.STRING_TYPES:
        return "str"
    return None


def _str_of_json(e: Expr) -> str:
    """VARCHAR of one JSON item (the string's content, not its JSON quoting)."""
    if e.base is not None and e.path is not None and not e.many:
        return f"json_extract_string({e.base}, {sql.string(e.path)})"
    return f"json_extract_string({e.sql}, '$')"


def convert_item(e: Expr, kind: Kind) -> str:
    """SQL of a single (many=False) expression converted to ``kind``."""
    if e.kind == kind:
        return e.sql
    if e.kind == "json":
        text = _str_of_json(e)
    elif kind == "str":
        return f"CAST({e.sql} AS VARCHAR)"
    else:
        text = f"CAST({e.sql} AS VARCHAR)"
    if kind == "str":
        return text
    return f"TRY_CAST({text} AS {'DOUBLE' if kind == 'num' else 'BOOLEAN'})"


def str_list(e: Expr) -> str:
    """A many expression as a VARCHAR list (one json_extract_string call when fused)."""
    if e.kind == "json" and e.base is not None and e.path is not None:
        return f"json_extract_string({e.base}, {sql.string(e.path)})"
    if e.kind == "str":
        return e.sql
    v = "__s"
    item = convert_item(Expr(v, False, e.kind, e.ftype), "str")
    return f"list_transform({e.sql}, lambda {v}: {item})"


def as_list(e: Expr) -> str:
    """Any expression as a DuckDB LIST (empty when the single value is NULL)."""
    if e.many:
        return f"coalesce({e.sql}, [])"
    return f"(CASE WHEN ({e.sql}) IS NULL THEN [] ELSE [{e.sql}] END)"


def singleton(e: Expr, kind: Kind, on_many: str | None) -> str:
    """FHIRPath singleton evaluation: the one item as ``kind``; several items -> ``on_many``
    (None: the caller handles several items itself)."""
    if not e.many:
        return convert_item(e, kind)
    item = convert_item(Expr(f"({e.sql})[1]", False, e.kind, e.ftype), kind)
    if on_many is None:
        return item
    return f"(CASE WHEN len({e.sql}) > 1 THEN {on_many} ELSE {item} END)"


def runtime_error(message: str) -> str:
    """SQL raising ``message`` when evaluated (FHIRPath errors that depend on the data)."""
    return f"error({sql.string(message)})"


def to_bool(e: Expr, what: str) -> str:
    """A BOOLEAN for ``e`` in a boolean context (where, and/or/not)."""
    kind = _natural_kind(e)
    if kind in ("str", "num") or (e.kind == "json" and card.is_known_type(e.ftype)):
        raise ViewError(f"{what} must be boolean, but its type is {e.ftype or kind}")
    return singleton(e, "bool", runtime_error(f"{what}: more than one value in boolean context"))


class PathCompiler:
    """Compiles one FHIRPath AST node in a Scope to an Expr."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def compile(self, node: fp.Node) -> Expr:
        """Dispatch on the node type."""
        if isinstance(node, fp.Literal):
            return _literal(node)
        if isinstance(node, fp.This):
            return self.scope.this
        if isinstance(node, fp.Constant):
            return self._constant(node.name)
        if isinstance(node, fp.Member):
            target = self.scope.this if node.target is None else self.compile(node.target)
            return self.member(target, node.name)
        if isinstance(node, fp.Index):
            return self._index(self.compile(node.target), node.index)
        if isinstance(node, fp.Call):
            return self._call(node)
        if isinstance(node, fp.Binary):
            return self._binary(node)
        if isinstance(node, fp.Unary):
            operand = self.compile(node.operand)
            num = singleton(operand, "num", runtime_error("unary minus on several values"))
            return Expr(f"({node.op}{num})", False, "num", operand.ftype)
        raise UnsupportedFeature(f"FHIRPath {node!r}")

    # -- paths ------------------------------------------------------------------------------
    def member(self, e: Expr, name: str) -> Expr:
        """``e.name``: a fused JSON path when cardinality is known, a lambda otherwise."""
        if not sql.NAME_RE.fullmatch(name):
            raise UnsupportedFeature(f"element name {name!r}")
        if e.kind != "json":
            raise UnsupportedFeature(f"member access .{name} on a computed value")
        info = card.element(e.ftype, name)
        if info is not None and info.choices:
            variants = [self.member(e, name + card.choice_suffix(t)) for t in info.choices]
            if e.many:
                raise UnsupportedFeature(f"choice element {name}[x] without ofType() on a list")
            sqls = ", ".join(v.sql for v in variants)
            return Expr(f"coalesce({sqls})", False, "json", None)
        if info is not None:
            step = f".{name}[*]" if info.is_list else f".{name}"
            if e.base is not None and e.path is not None:
                many = e.many or info.is_list
                path = e.path + step
                return Expr(
                    f"json_extract({e.base}, {sql.string(path)})",
                    many,
                    "json",
                    info.type,
                    e.base,
                    path,
                )
            if not e.many:
                return self.member(json_root(e.sql, e.ftype), name)
            v = self.scope.var()
            if info.is_list:
                inner = f"coalesce(json_extract({v}, {sql.string('$' + step)}), [])"
                return Expr(
                    f"flatten(list_transform({e.sql}, lambda {v}: {inner}))",
                    True,
                    "json",
                    info.type,
                )
            one = f"json_extract({v}, {sql.string('$' + step)})"
            got = f"list_transform({e.sql}, lambda {v}: {one})"
            return Expr(f"list_filter({got}, lambda {v}: {v} IS NOT NULL)", True, "json", info.type)
        return self._generic_member(e, name)

    def _generic_member(self, e: Expr, name: str) -> Expr:
        """Member of an element of unknown type: may be an array or a single value."""
        if e.ftype in card.PRIMITIVE_TYPES:
            raise UnsupportedFeature(f"member .{name} of primitive type {e.ftype}")

        def one(x: str) -> str:
            p1, pall = sql.string(f"$.{name}"), sql.string(f"$.{name}[*]")
            return (
                f"(CASE json_type({x}, {p1}) WHEN 'ARRAY' THEN json_extract({x}, {pall}) "
                f"WHEN 'NULL' THEN []::JSON[] ELSE list_filter([json_extract({x}, {p1})], "
                f"lambda __n: __n IS NOT NULL) END)"
            )

        if not e.many:
            return Expr(one(e.sql), True, "json", None)
        v = self.scope.var()
        return Expr(f"flatten(list_transform({e.sql}, lambda {v}: {one(v)}))", True, "json", None)

    def _index(self, e: Expr, index_node: fp.Node) -> Expr:
        idx = self.compile(index_node)
        if idx.kind != "num" or not idx.sql.isdigit():
            raise UnsupportedFeature("an index [] that is not a non-negative integer constant")
        i = int(idx.sql)
        if not e.many:
            return e if i == 0 else Expr("NULL::JSON", False, "json", e.ftype)
        if (
            e.base is not None
            and e.path is not None
            and e.path.count("[*]") == 1
            and e.path.endswith("[*]")
        ):
            path = e.path[: -len("[*]")] + f"[{i}]"
            return Expr(
                f"json_extract({e.base}, {sql.string(path)})", False, e.kind, e.ftype, e.base, path
            )
        return Expr(f"({e.sql})[{i + 1}]", False, e.kind, e.ftype)

    def _constant(self, name: str) -> Expr:
        if name == "rowIndex":
            return Expr(self.scope.row_index, False, "num", "integer")
        if name in ("resource", "rootResource"):
            return self.scope.root
        if name in self.scope.constants:
            return self.scope.constants[name]
        raise ViewError(f"undefined constant %{name}")

    # -- functions --------------------------------------------------------------------------
    def _call(self, node: fp.Call) -> Expr:
        name, args = node.name, node.args
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise UnsupportedFeature(f"FHIRPath function {name}()")
        if name == "ofType":
            return self._of_type(node)
        target = self.scope.this if node.target is None else self.compile(node.target)
        return handler(self, target, args)

    def _where(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("where", args, 1, 1)
        if e.many:
            v = self.scope.var()
            cond = self._bool_at(
                Expr(
                    v,
                    False,
                    e.kind,
                    e.ftype,
                    v if e.kind == "json" else None,
                    "$" if e.kind == "json" else None,
                ),
                args[0],
                "where()",
            )
            return Expr(f"list_filter({e.sql}, lambda {v}: {cond})", True, e.kind, e.ftype)
        cond = self._bool_at(e, args[0], "where()")
        return Expr(f"(CASE WHEN {cond} THEN {e.sql} END)", False, e.kind, e.ftype)

    def _bool_at(self, this: Expr, node: fp.Node, what: str) -> str:
        inner = PathCompiler(self.scope.at(this))
        return f"coalesce({to_bool(inner.compile(node), what)}, false)"

    def _exists(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("exists", args, 0, 1)
        if args:
            e = self._where(e, args)
        if e.many:
            return Expr(f"(coalesce(len({e.sql}), 0) > 0)", False, "bool", "boolean")
        return Expr(f"(({e.sql}) IS NOT NULL)", False, "bool", "boolean")

    def _empty(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("empty", args, 0, 0)
        return Expr(f"(NOT {self._exists(e, ()).sql})", False, "bool", "boolean")

    def _count(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("count", args, 0, 0)
        if e.many:
            return Expr(f"coalesce(len({e.sql}), 0)", False, "num", "integer")
        return Expr(f"(CASE WHEN ({e.sql}) IS NULL THEN 0 ELSE 1 END)", False, "num", "integer")

    def _first(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("first", args, 0, 0)
        return self._index(e, fp.Literal("integer", "0"))

    def _last(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("last", args, 0, 0)
        return Expr(f"({e.sql})[-1]", False, e.kind, e.ftype) if e.many else e

    def _not(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("not", args, 0, 0)
        return Expr(f"(NOT {to_bool(e, 'not()')})", False, "bool", "boolean")

    def _join(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("join", args, 0, 1)
        sep = "''"
        if args:
            sep_expr = self.compile(args[0])
            if sep_expr.kind != "str" or sep_expr.many:
                raise UnsupportedFeature("join() with a separator that is not a string constant")
            sep = sep_expr.sql
        if not e.many:
            return Expr(f"coalesce({convert_item(e, 'str')}, '')", False, "str", "string")
        return Expr(f"array_to_string(coalesce({str_list(e)}, []), {sep})", False, "str", "string")

    def _extension(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("extension", args, 1, 1)
        url = self.compile(args[0])
        if url.kind != "str" or url.many:
            raise UnsupportedFeature("extension() with a url that is not a string constant")
        exts = self.member(e if e.ftype else replace(e, ftype="Element"), "extension")
        v = self.scope.var()
        cond = f"json_extract_string({v}, '$.url') = {url.sql}"
        return Expr(f"list_filter({exts.sql}, lambda {v}: {cond})", True, "json", "Extension")

    def _resource_key(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("getResourceKey", args, 0, 0)
        if e is not self.scope.root:
            raise UnsupportedFeature("getResourceKey() on anything but the view's resource")
        return Expr(self.scope.resource_key, False, "str", "id")

    def _reference_key(self, e: Expr, args: tuple[fp.Node, ...]) -> Expr:
        _arity("getReferenceKey", args, 0, 1)
        wanted = None
        if args:
            if not isinstance(args[0], fp.Member) or args[0].target is not None:
                raise UnsupportedFeature("getReferenceKey() argument must be a resource type")
            wanted = args[0].name
        ref = self.member(replace(e, ftype="Reference"), "reference")

        # One regexp per reference; the type (checked against RESOURCE_RE) is part of the
        # pattern, so a reference of another type simply does not match.
        rtype = "[A-Za-z]+" if wanted is None else sql.checked_resource(wanted)
        pattern = sql.string(f"(?:^|/){rtype}/([A-Za-z0-9\\-.]+)(?:/_history/[^/]+)?$")

        def key(r: str) -> str:
            return f"nullif(regexp_extract({r}, {pattern}, 1), '')"

        if not ref.many:
            return Expr(key(convert_item(ref, "str")), False, "str", "string")
        v = self.scope.var()
        keys = f"list_transform({str_list(ref)}, lambda {v}: {key(v)})"
        return Expr(f"list_filter({keys}, lambda {v}: {v} IS NOT NULL)", True, "str", "string")

    def _of_type(self, node: fp.Call) -> Expr:
        _arity("ofType", node.args, 1, 1)
        tname = _type_name(node.args[0])
        target = node.target
        if isinstance(target, fp.Member):
            parent = self.scope.this if target.target is None else self.compile(target.target)
            info = card.element(parent.ftype, target.name)
            if info is None or info.choices:
                if info is not None and tname not in info.choices:
                    return Expr("NULL::JSON", False, "json", tname)
                choice = target.name + card.choice_suffix(tname)
                e = self.member(parent, choice)
                return replace(e, ftype=e.ftype or tname)
        e = self.scope.this if target is None else self.compile(target)
        if e.ftype == tname:
            return e
        if e.ftype is not None and (e.ftype in card.PRIMITIVE_TYPES or card.is_known_type(e.ftype)):
            return Expr("NULL::JSON", False, "json", tname)
        raise UnsupportedFeature("ofType() on a value whose type is not known at compile time")

    # -- operators --------------------------------------------------------------------------
    def _binary(self, node: fp.Binary) -> Expr:
        op = node.op
        if op in ("and", "or"):
            left = to_bool(self.compile(node.left), f"operand of {op}")
            right = to_bool(self.compile(node.right), f"operand of {op}")
            return Expr(f"({left} {op.upper()} {right})", False, "bool", "boolean")
        if op in ("=", "!=", "<", ">", "<=", ">="):
            return self._compare(op, self.compile(node.left), self.compile(node.right))
        if op in ("+", "-", "*", "/", "&"):
            return self._arith(op, self.compile(node.left), self.compile(node.right))
        raise UnsupportedFeature(f"FHIRPath operator {op!r}")

    def _compare(self, op: str, left: Expr, right: Expr) -> Expr:
        lk, rk = _natural_kind(left), _natural_kind(right)
        kinds = {k for k in (lk, rk) if k is not None}
        if len(kinds) > 1:
            raise UnsupportedFeature(f"comparing a {lk} with a {rk}")
        kind: Kind = kinds.pop() if kinds else "str"
        sql_op = "<>" if op == "!=" else op
        if op not in ("=", "!="):
            on_many = runtime_error(f"{op} on several values")
            lsql, rsql = singleton(left, kind, on_many), singleton(right, kind, on_many)
            return Expr(f"({lsql} {sql_op} {rsql})", False, "bool", "boolean")
        # Equality of collections: different sizes are unequal; we compare singletons only.
        lsql, rsql = singleton(left, kind, None), singleton(right, kind, None)
        several = [f"len({e.sql}) > 1" for e in (left, right) if e.many]
        result = f"({lsql} {sql_op} {rsql})"
        if several:
            unequal = "TRUE" if op == "!=" else "FALSE"
            result = f"(CASE WHEN {' OR '.join(several)} THEN {unequal} ELSE {result} END)"
        return Expr(result, False, "bool", "boolean")

    def _arith(self, op: str, left: Expr, right: Expr) -> Expr:
        if op == "&" or "str" in (_natural_kind(left), _natural_kind(right)):
            if op not in ("+", "&"):
                raise UnsupportedFeature(f"operator {op} on strings")
            ls = singleton(left, "str", runtime_error("& on several values"))
            rs = singleton(right, "str", runtime_error("& on several values"))
            if op == "&":
                ls, rs = f"coalesce({ls}, '')", f"coalesce({rs}, '')"
            return Expr(f"({ls} || {rs})", False, "str", "string")
        ln = singleton(left, "num", runtime_error(f"{op} on several values"))
        rn = singleton(right, "num", runtime_error(f"{op} on several values"))
        if op == "/":
            return Expr(f"({ln} / nullif({rn}, 0))", False, "num", "decimal")
        both_int = left.ftype in card.INTEGER_TYPES and right.ftype in card.INTEGER_TYPES
        return Expr(f"({ln} {op} {rn})", False, "num", "integer" if both_int else "decimal")


def _arity(name: str, args: tuple[fp.Node, ...], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise ViewError(f"{name}() takes {low}..{high} arguments, got {len(args)}")


def _type_name(node: fp.Node) -> str:
    """``Quantity`` / ``FHIR.Quantity`` -> ``Quantity``; System types are not supported."""
    if isinstance(node, fp.Member) and node.target is None:
        return node.name
    if isinstance(node, fp.Member) and node.target == fp.Member(None, "FHIR"):
        return node.name
    raise UnsupportedFeature(f"type specifier {node!r}")


def _literal(node: fp.Literal) -> Expr:
    if node.kind == "string":
        return Expr(sql.string(node.value), False, "str", "string")
    if node.kind == "integer":
        return Expr(node.value, False, "num", "integer")
    if node.kind == "decimal":
        return Expr(f"CAST({node.value} AS DOUBLE)", False, "num", "decimal")
    if node.kind == "boolean":
        return Expr(node.value.upper(), False, "bool", "boolean")
    if node.kind == "empty":
        return Expr("NULL::JSON", False, "json", None)
    raise UnsupportedFeature(f"FHIRPath {node.kind} literal {node.value!r}")


_Handler = Callable[[PathCompiler, Expr, tuple[fp.Node, ...]], Expr]
_FUNCTIONS: dict[str, _Handler] = {
    "where": PathCompiler._where,
    "exists": PathCompiler._exists,
    "empty": PathCompiler._empty,
    "count": PathCompiler._count,
    "first": PathCompiler._first,
    "last": PathCompiler._last,
    "not": PathCompiler._not,
    "join": PathCompiler._join,
    "extension": PathCompiler._extension,
    "getResourceKey": PathCompiler._resource_key,
    "getReferenceKey": PathCompiler._reference_key,
    "ofType": lambda c, e, a: e,  # handled in _call: it needs the unevaluated target
}


def compile_path(text: object, scope: Scope) -> Expr:
    """Parse and compile one FHIRPath expression of a view."""
    if not isinstance(text, str):
        raise ViewError(f"a path must be a string, got {text!r}")
    return PathCompiler(scope).compile(fp.parse(text))
