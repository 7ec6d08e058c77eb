"""Compile an HL7 SQL on FHIR v2 ViewDefinition to one DuckDB ``SELECT`` statement.

Plan: columns that yield one row per resource are plain expressions over the payload. At the
top level every ``forEach``/``forEachOrNull`` is an ``unnest`` in a nested subquery (its columns
are then computed on the unnested item, like hand-written SQL), and every ``unionAll`` is an
``unnest`` of a LIST of STRUCT rows; successive unnests give the cross product the specification
asks for between sibling selects. Inside a ``unionAll`` branch, a ``forEach`` is a LIST of STRUCT
rows built with list lambdas (a *factor*). Columns keep the view's depth-first order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rescue_pipeline.viewdef import cardinality as card
from rescue_pipeline.viewdef import sql
from rescue_pipeline.viewdef.errors import UnsupportedFeature, ViewError
from rescue_pipeline.viewdef.expressions import (
    Expr,
    Scope,
    as_list,
    compile_path,
    convert_item,
    json_root,
    runtime_error,
    str_list,
    to_bool,
)

__all__ = ["UnsupportedFeature", "ViewError", "compile_view"]

_NODE_KEYS = {"column", "select", "unionAll", "forEach", "forEachOrNull", "description"}
_COLUMN_KEYS = {"name", "path", "type", "collection", "description", "tag"}
_SIMPLE_CONSTANTS = {
    "Integer": "num",
    "PositiveInt": "num",
    "UnsignedInt": "num",
    "Integer64": "num",
    "Decimal": "num",
    "Boolean": "bool",
}


@dataclass(frozen=True)
class Factor:
    """A LIST of STRUCT rows (one field per column) that multiplies the rows of its parent."""

    sql: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """A top-level unnest: ``items`` (a LIST) becomes one row per item, aliased ``alias``.

    forEach items are JSON (their columns are computed after the unnest); unionAll items are
    STRUCT rows whose fields are the ``names`` columns.
    """

    items: str
    alias: str
    names: tuple[str, ...] = ()


@dataclass
class Parts:
    """The columns of a select node: one-row expressions and multi-row factors, in order."""

    order: list[str] = field(default_factory=list)
    single: dict[str, str] = field(default_factory=dict)
    factors: list[Factor] = field(default_factory=list)

    def add(self, other: Parts) -> None:
        """Append a child's columns (sibling selects multiply)."""
        self.order += other.order
        self.single.update(other.single)
        self.factors += other.factors


def compile_view(
    view: dict[str, Any],
    *,
    source: str = "raw.fhir_resources",
    resource_column: str = "payload",
    passthrough: tuple[str, ...] = ("site_id",),
) -> str:
    """One DuckDB SELECT (no semicolon) over ``source`` with the passthrough columns first.

    Raises ViewError for an invalid view, UnsupportedFeature (a ViewError) for a valid one that
    uses something this compiler does not translate.
    """
    if not isinstance(view, dict):
        raise ViewError("a ViewDefinition must be a JSON object")
    resource = sql.checked_resource(view.get("resource"))
    if not card.is_known_type(resource):
        raise ViewError(f"{resource!r} is not a FHIR R4B resource type")
    selects = view.get("select")
    if not isinstance(selects, list) or not selects:
        raise ViewError("a ViewDefinition needs a non-empty 'select' list")
    payload = sql.ident(resource_column, "resource column")
    root = json_root(payload, resource)
    scope = Scope(root, root, '"resource_id"', _constants(view.get("constant", [])))

    steps: list[Step] = []
    parts = _node({"select": selects}, scope, steps)
    names = list(passthrough) + parts.order
    for name in passthrough:
        sql.ident(name, "passthrough column")
    if len(set(names)) != len(names):
        raise ViewError(f"duplicate column names in {names}")
    if not parts.order:
        raise ViewError("the view has no columns")

    filters = [f'"resource_type" = {sql.string(resource)}']
    wheres = view.get("where", [])
    if not isinstance(wheres, list):
        raise ViewError("'where' must be a list")
    for clause in wheres:
        if not isinstance(clause, dict) or "path" not in clause:
            raise ViewError(f"a where clause needs a 'path': {clause!r}")
        cond = to_bool(compile_path(clause["path"], scope), f"where {clause['path']!r}")
        filters.append(f"coalesce({cond}, false)")

    relation = f"SELECT * FROM {sql.table(source)} WHERE " + " AND ".join(filters)
    outputs_of = {name: parts.single.get(name) for name in parts.order}
    fusion = _Fusion(root.sql)
    items = [fusion.rewrite(step.items) for step in steps]
    outputs_of = {n: fusion.rewrite(v) if v is not None else None for n, v in outputs_of.items()}
    if fusion.columns():
        relation = f"SELECT *, {fusion.columns()} FROM ({relation})"
    where_of: dict[str, str] = {}
    for step, step_items in zip(steps, items, strict=True):
        # The list is computed once per row, then unnested (with its 0-based positions).
        relation = f"SELECT *, {step_items} AS {step.alias}_l FROM ({relation})"
        positions = f"unnest(range(0, len({step.alias}_l))) AS {step.alias}_i"
        relation = (
            f"SELECT *, unnest({step.alias}_l) AS {step.alias}, {positions} FROM ({relation})"
        )
        where_of.update(
            {name: f"struct_extract({step.alias}, {sql.string(name)})" for name in step.names}
        )
    outputs = [sql.ident(name) for name in passthrough]
    for name in parts.order:
        value = outputs_of[name] or where_of[name]
        outputs.append(f"{value} AS {sql.ident(name)}")
    return f"SELECT {', '.join(outputs)} FROM ({relation})"


class _Fusion:
    """Fuses the resource's single-path extractions into one multi-path call per row.

    DuckDB parses the JSON document once per json_extract call: a view of 14 columns parsed
    each Observation 14 times. `json_extract_string(payload, ['$.a', '$.b'])` parses it once and
    returns the values in order, so each call becomes an index into that list (2-3x faster on
    our views). Wildcard paths return lists of their own and stay as they are.
    """

    _CALL = re.compile(r"""(json_extract_string|json_extract)\(([^,()]+), '((?:[^']|'')*)'\)""")

    def __init__(self, root: str) -> None:
        self.root = root
        self.paths: dict[str, list[str]] = {"json_extract_string": [], "json_extract": []}

    def rewrite(self, text: str) -> str:
        def fuse(m: re.Match[str]) -> str:
            function, base, path = m.group(1), m.group(2), m.group(3)
            if base != self.root or "[*]" in path:
                return m.group(0)
            paths = self.paths[function]
            if path not in paths:
                paths.append(path)
            return f'"__fused_{function}"[{paths.index(path) + 1}]'

        return self._CALL.sub(fuse, text)

    def columns(self) -> str:
        return ", ".join(
            f"{function}({self.root}, [{', '.join(chr(39) + p + chr(39) for p in paths)}])"
            f' AS "__fused_{function}"'
            for function, paths in self.paths.items()
            if paths
        )


def _constants(items: object) -> dict[str, Expr]:
    """View constants as typed SQL literals; each needs a name and exactly one value[x]."""
    if not isinstance(items, list):
        raise ViewError("'constant' must be a list")
    out: dict[str, Expr] = {}
    for item in items:
        if not isinstance(item, dict):
            raise ViewError(f"invalid constant {item!r}")
        name = sql.checked_name(item.get("name"), "constant name")
        values = [k for k in item if k.startswith("value")]
        if len(values) != 1:
            raise ViewError(f"constant {name!r} needs exactly one value[x]")
        key = values[0]
        suffix, value = key[len("value") :], item[key]
        kind = _SIMPLE_CONSTANTS.get(suffix, "str")
        ftype = suffix[0].lower() + suffix[1:]
        if kind == "bool" and isinstance(value, bool):
            out[name] = Expr("TRUE" if value else "FALSE", False, "bool", "boolean")
        elif kind == "num" and isinstance(value, int | float) and not isinstance(value, bool):
            text = repr(value) if isinstance(value, int) else f"CAST({value!r} AS DOUBLE)"
            out[name] = Expr(text, False, "num", ftype)
        elif kind == "str" and ftype in card.STRING_TYPES and isinstance(value, str):
            out[name] = Expr(sql.string(value), False, "str", ftype)
        elif kind == "str" and ftype not in card.STRING_TYPES:
            raise UnsupportedFeature(f"constant {name!r} of type {ftype}")
        else:
            raise ViewError(f"constant {name!r}: {key} has the wrong JSON type")
    return out


def _node(node: object, scope: Scope, steps: list[Step] | None = None) -> Parts:
    """The Parts of one select node evaluated at ``scope.this``.

    With ``steps`` (the top level, outside any unionAll), forEach and unionAll become unnest
    steps of the outer query instead of lambda-built row lists: that is the fast plan.
    """
    if not isinstance(node, dict):
        raise ViewError(f"a select must be an object, got {node!r}")
    if "repeat" in node:
        raise UnsupportedFeature("select.repeat (recursive traversal)")
    unknown = set(node) - _NODE_KEYS
    if unknown:
        raise ViewError(f"unknown keys in select: {sorted(unknown)}")
    if "forEach" in node and "forEachOrNull" in node:
        raise ViewError("a select may have forEach or forEachOrNull, not both")
    for each_key in ("forEach", "forEachOrNull"):
        if each_key in node and steps is not None:
            return _top_for_each(node, each_key, scope, steps)
        if each_key in node:
            return _for_each(node, each_key, scope)

    parts = Parts()
    for col in _list(node, "column"):
        name, value = _column(col, scope)
        parts.order.append(name)
        parts.single[name] = value
    for child in _list(node, "select"):
        parts.add(_node(child, scope, steps))
    branches = _list(node, "unionAll")
    if branches:
        rows = [_node(branch, scope) for branch in branches]
        first = rows[0].order
        for other in rows[1:]:
            if other.order != first:
                raise ViewError(f"unionAll branches differ in columns: {first} vs {other.order}")
        lists = [rows_sql(r, scope) for r in rows]
        union = lists[0] if len(lists) == 1 else f"list_concat({', '.join(lists)})"
        parts.order += first
        if steps is None:
            parts.factors.append(Factor(union, tuple(first)))
        else:
            steps.append(Step(union, f"__u{len(steps) + 1}", tuple(first)))
    return parts


def _items(node: dict[str, Any], key: str, scope: Scope) -> tuple[Expr, str]:
    """The forEach items as a JSON LIST; forEachOrNull turns an empty list into [NULL]."""
    items = compile_path(node[key], scope)
    if items.kind != "json":
        raise UnsupportedFeature(f"{key} over computed values ({node[key]!r})")
    item_list = as_list(items)
    if key == "forEachOrNull":
        item_list = f"(CASE WHEN len({item_list}) = 0 THEN [NULL::JSON] ELSE {item_list} END)"
    return items, item_list


def _top_for_each(node: dict[str, Any], key: str, scope: Scope, steps: list[Step]) -> Parts:
    """forEach at the top level: unnest the items, then compile the body on each one."""
    items, item_list = _items(node, key, scope)
    alias = f"__f{len(steps) + 1}"
    steps.append(Step(item_list, alias))
    body = {k: v for k, v in node.items() if k not in ("forEach", "forEachOrNull")}
    inner = _node(body, scope.at(json_root(alias, items.ftype), f"{alias}_i"), steps)
    if not inner.order:
        raise ViewError(f"{key} {node[key]!r} has no columns")
    return inner


def _for_each(node: dict[str, Any], key: str, scope: Scope) -> Parts:
    """forEach / forEachOrNull: the body's rows for every item, as one factor."""
    items, item_list = _items(node, key, scope)
    var, idx = scope.var("e"), scope.var("i")
    body = {k: v for k, v in node.items() if k not in ("forEach", "forEachOrNull")}
    inner = _node(body, scope.at(json_root(var, items.ftype), f"({idx} - 1)"))
    if not inner.order:
        raise ViewError(f"{key} {node[key]!r} has no columns")
    if not inner.factors:
        row = _struct(inner, {})
        rows = f"list_transform({item_list}, lambda {var}, {idx}: {row})"
    else:
        body_rows = rows_sql(inner, scope)
        rows = f"flatten(list_transform({item_list}, lambda {var}, {idx}: {body_rows}))"
    return Parts(list(inner.order), {}, [Factor(rows, tuple(inner.order))])


def _struct(parts: Parts, from_factor: dict[str, str]) -> str:
    fields = []
    for name in parts.order:
        value = parts.single.get(name) or from_factor[name]
        fields.append(f"{sql.ident(name)} := {value}")
    return f"struct_pack({', '.join(fields)})"


def rows_sql(parts: Parts, scope: Scope) -> str:
    """All rows of ``parts`` as one LIST of STRUCT: the cross product of its factors."""
    if not parts.factors:
        return f"[{_struct(parts, {})}]"
    variables = [scope.var("r") for _ in parts.factors]
    from_factor = {
        name: f"struct_extract({v}, {sql.string(name)})"
        for v, factor in zip(variables, parts.factors, strict=True)
        for name in factor.names
    }
    body = _struct(parts, from_factor)
    for v, factor in reversed(list(zip(variables, parts.factors, strict=True))):
        body = f"list_transform({factor.sql}, lambda {v}: {body})"
    for _ in parts.factors[1:]:
        body = f"flatten({body})"
    return body


def _list(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key, [])
    if not isinstance(value, list):
        raise ViewError(f"'{key}' must be a list")
    return value


def _column(col: object, scope: Scope) -> tuple[str, str]:
    """(name, SQL value cast to the column's DuckDB type) of one column."""
    if not isinstance(col, dict):
        raise ViewError(f"a column must be an object, got {col!r}")
    unknown = set(col) - _COLUMN_KEYS
    if unknown:
        raise ViewError(f"unknown keys in column: {sorted(unknown)}")
    name = sql.checked_name(col.get("name"))
    e = compile_path(col.get("path"), scope)
    declared = col.get("type")
    if declared is not None and not isinstance(declared, str):
        raise ViewError(f"column {name}: 'type' must be a string")
    collection = col.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewError(f"column {name}: 'collection' must be true or false")
    ftype = declared or _inferred_type(e)
    sql_type = sql.column_sql_type(ftype)
    if collection:
        if e.many:
            values = f"coalesce({str_list(e)}, [])"
        else:
            values = as_list(Expr(convert_item(e, "str"), False, "str", e.ftype))
        if sql_type != "VARCHAR":
            values = f"TRY_CAST({values} AS {sql_type}[])"
        return name, f"CAST({values} AS {sql_type}[])"
    on_many = runtime_error(
        f"column {name}: path {col.get('path')!r} returned several values; "
        "set collection: true or use first()"
    )
    if e.many:
        first = _as_sql_type(Expr(f"({e.sql})[1]", False, e.kind, e.ftype), sql_type)
        return name, f"(CASE WHEN len({e.sql}) > 1 THEN {on_many} ELSE {first} END)"
    return name, _as_sql_type(e, sql_type)


def _as_sql_type(e: Expr, sql_type: str) -> str:
    """One value as ``sql_type``: JSON text is cast once, typed values only when they differ."""
    if e.kind == "json":
        text = convert_item(e, "str")
        return text if sql_type == "VARCHAR" else f"TRY_CAST({text} AS {sql_type})"
    if (e.kind, sql_type) in (("str", "VARCHAR"), ("bool", "BOOLEAN")):
        return e.sql
    return f"CAST({e.sql} AS {sql_type})"


def _inferred_type(e: Expr) -> str | None:
    """Without a declared type: the FHIR primitive type when known, else VARCHAR."""
    if e.kind == "bool":
        return "boolean"
    if e.ftype in card.PRIMITIVE_TYPES:
        return e.ftype
    if e.kind == "num":
        return "decimal"
    return None
