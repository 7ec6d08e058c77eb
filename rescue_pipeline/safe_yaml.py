"""YAML for configuration that a person edits and an attacker may write: bounded and unambiguous.

PyYAML's safe loader shares aliased nodes, but anything that walks the result expands them (a few
lines of `&a [*a, *a, ...]` grow to billions of values: the "billion laughs"), and it keeps the
last of two equal keys without a word (a second `sites:` drops the first sites). Here the text is
bounded in size, the document in values once its aliases are expanded, a duplicate key is an
error naming its line, and no key or value may carry a control character (an id with a trailing
newline passes a `$`-anchored pattern). Aliases and merge keys themselves stay allowed: people
and `yaml.dump` write them.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a sites.yaml of hundreds of sites is a few tens of kB
MAX_VALUES = 100_000  # keys, values and items, aliases expanded


class UnsafeYaml(ValueError):
    """The text is not YAML this project accepts; the message says where and why."""


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # merged keys may be overridden: only the written ones must be unique
            line = key_node.start_mark.line + 1
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise UnsafeYaml(f"line {line}: duplicate key {key!r} (first on line {seen[key]})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_text(value: Any, where: str) -> None:
    if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UnsafeYaml(f"{where}: contains a control character (a newline or tab?)")


def _walk(value: Any, where: str, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise UnsafeYaml(f"more than {MAX_VALUES} values once its aliases are expanded")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, f"{where}{k!r}")
            _walk(v, f"{where}{k}.", budget)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, f"{where}[{i}].", budget)
    else:
        _check_text(value, where.rstrip(".") or "value")


def load(text: str) -> Any:
    """The document in `text`; UnsafeYaml (or yaml.YAMLError for plain syntax) otherwise."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise UnsafeYaml(f"larger than {MAX_BYTES // 1024} KiB")
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    _walk(data, "", [MAX_VALUES])
    return data
