"""YAML that remembers where things are: errors in human-edited files name the line.

The YAML is composed into nodes (which carry their marks), every key path is mapped to a
1-based line, and a validator's error location (pydantic's ``loc``) is translated back
through that map. Duplicate keys, which PyYAML would silently collapse, are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from contract.errors import ContractError

YamlPath = tuple[str | int, ...]
_SCALARS = yaml.constructor.SafeConstructor()


class YamlLinesError(ContractError):
    """Not YAML, empty, or a duplicate key; ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.message = message
        self.line = line


def _construct(node: yaml.Node, path: YamlPath, lines: dict[YamlPath, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlLinesError("keys must be plain strings", key_line)
            key = key_node.value
            if key in out:
                raise YamlLinesError(f"duplicate key {key!r}", key_line)
            out[key] = _construct(value_node, (*path, key), lines)
            # Errors about a key's value point at the key's own line (for a nested block,
            # the block's first line would be the next key's).
            lines[(*path, key)] = key_line
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines) for i, v in enumerate(node.value)]
    return _SCALARS.construct_object(node)


def compose_with_lines(text: str) -> tuple[Any, dict[YamlPath, int]]:
    """Parse ``text`` into plain data and a map from key path to line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlLinesError(f"not valid YAML: {exc}", mark.line + 1 if mark is not None else None) from exc
    if node is None:
        raise YamlLinesError("empty file", 1)
    lines: dict[YamlPath, int] = {}
    return _construct(node, (), lines), lines


def clean_loc(loc: tuple[int | str, ...]) -> YamlPath:
    """Keep only real keys of a pydantic error location (it adds validator and union names)."""
    return tuple(p for p in loc if isinstance(p, int) or not p.startswith(("function-", "union[")))


def line_for(loc: YamlPath, lines: Mapping[YamlPath, int]) -> int | None:
    """The line of the deepest known ancestor of ``loc``."""
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
