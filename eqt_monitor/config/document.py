"""``stations.yaml`` as a bounded, located YAML document: the text is read within a size limit,
composed with bounds on depth, aliases and expanded size and with plain tags only (nothing is
constructed or run), and every value keeps its line so an error names file, line and field."""
from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from eqt_monitor.errors import ConfigError, one_line, show

MAX_CONFIG_BYTES = 1 << 20  # read at most this much of a config file
MAX_DEPTH = 32  # nesting levels of the YAML tree
MAX_ALIASES = 100  # YAML aliases (``*name``) in one file
MAX_NODES = 200_000  # YAML values, aliases expanded (10 000 stations take 130 000; "billion laughs" 10^9)
_PLAIN_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag)


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct the config loader does not accept (too deep, too many aliases, a tag)."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` composing at most ``MAX_DEPTH`` levels and ``MAX_NODES`` nodes (aliases
    expanded), ``MAX_ALIASES`` aliases and only the plain YAML tags; nothing is constructed here."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._total = 0  # values composed so far, aliases expanded
        self._sizes: dict[int, int] = {}  # id(node) -> nodes under it, aliases expanded

    def _refuse(self, problem: str) -> _Refused:
        return _Refused(problem=problem, problem_mark=self.peek_event().start_mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._refuse(f"more than {MAX_ALIASES} YAML aliases")
            anchored = self.anchors.get(self.peek_event().anchor)
            if anchored is not None and id(anchored) not in self._sizes:
                raise self._refuse("a YAML alias refers to its own anchor")
            self._count(self._sizes[id(anchored)] if anchored is not None else 0)
        else:
            if self._depth >= MAX_DEPTH:
                raise self._refuse(f"nested more than {MAX_DEPTH} levels deep")
            self._count(1)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            if isinstance(node, yaml.ScalarNode):
                children = []
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = [n for pair in node.value for n in pair]
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
            if node.tag not in _PLAIN_TAGS:
                raise _Refused(problem=f"tag {show(node.tag)} not allowed (plain YAML values only: nothing in a "
                               "config is ever run)", problem_mark=node.start_mark)
        return node

    def _count(self, values: int) -> None:
        """Count ``values`` more values of the expanded tree; refuse past ``MAX_NODES``."""
        self._total += values
        if self._total > MAX_NODES:
            raise self._refuse(f"more than {MAX_NODES} YAML values once aliases are expanded")


def read_text(path: Path) -> str:
    """The config's text: at most ``MAX_CONFIG_BYTES``, UTF-8, not binary; ``ConfigError`` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config larger than {MAX_CONFIG_BYTES >> 20} MiB: not a stations.yaml?")
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: binary data (a NUL byte): not a YAML text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


class YamlDocument:
    """Walks the composed YAML node tree so each value keeps its line for error messages."""

    def __init__(self, path: Path, text: str):
        self.path = path
        try:
            self.root = _BoundedLoader(text).get_single_node()
        except _Refused as exc:
            raise ConfigError(f"{path}:{exc.problem_mark.line + 1}: refused: {exc.problem}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                line = mark.line + 1
            else:  # a ReaderError (forbidden character) knows only its position
                line = text[:getattr(exc, "position", 0)].count("\n") + 1
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}:{line}: invalid YAML: {one_line(problem)}") from None

    def error(self, node: yaml.Node | None, where: str, message: str) -> ConfigError:
        """A ``ConfigError`` naming the file, the node's line and ``where``; one line, bounded."""
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(one_line(f"{self.path}:{line}: {where or '(top level)'}: {message}", 500))

    def mapping(self, node: yaml.Node | None, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping node as ``key -> (key node, value node)``."""
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, where, "keys must be plain names, not lists or mappings")
            key = str(key_node.value)
            if key in out:
                raise self.error(key_node, f"{where}.{key}" if where else key, "duplicate key")
            out[key] = (key_node, value_node)
        return out

    def value(self, node: yaml.Node, where: str) -> Any:
        """The plain Python value of a node (``where`` names it in the error if it has none)."""
        try:
            return yaml.SafeLoader("").construct_document(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. a timestamp like 2014-13-45
            raise self.error(node, where, f"unreadable value ({one_line(str(exc), 80)})") from None


def check_keys(doc: YamlDocument, items: dict, allowed: set[str], where: str) -> None:
    for key, (key_node, _) in items.items():
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise doc.error(key_node, f"{where}.{key}" if where else key, f"unknown field (expected one of: {hint})")


def typed(doc: YamlDocument, node: yaml.Node, where: str, kind: type) -> Any:
    """The node's value as ``kind`` (float: finite only); ``ConfigError`` naming ``where`` otherwise."""
    value = doc.value(node, where)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise doc.error(node, where, f"expected a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise doc.error(node, where, f"expected a finite number, got {show(value)}")
        return number
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise doc.error(node, where, f"expected an integer, got {show(value)}")
        return value
    if kind is str:
        if value is None or isinstance(value, (dict, list, set)):
            raise doc.error(node, where, f"expected a string, got {show(value)}")
        return str(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise doc.error(node, where, f"expected true or false, got {show(value)}")
        return value
    raise TypeError(kind)


def dataclass_section(doc: YamlDocument, node: yaml.Node | None, where: str, cls: type, renames: dict[str, str]):
    """Fill dataclass ``cls`` from a mapping; ``renames`` maps YAML keys to field names."""
    items = doc.mapping(node, where)
    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(cls)}
    allowed = {yaml_key for yaml_key in renames} | {name for name in types if name not in renames.values()}
    check_keys(doc, items, allowed, where)
    kwargs = {}
    for key, (_, value_node) in items.items():
        name = renames.get(key, key)
        kind = {"float": float, "int": int, "str": str, "str | None": str}[types[name]]
        if types[name] == "str | None" and doc.value(value_node, f"{where}.{key}") is None:
            kwargs[name] = None
            continue
        kwargs[name] = typed(doc, value_node, f"{where}.{key}", kind)
    return cls(**kwargs)
