"""YAML documents that remember where each key and value was written.

`parse` is pure (text in, `Document` out) so tests can parse configs from
strings; errors are `ConfigError`s naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from campaigns.errors import ConfigError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A parsed YAML mapping plus the line of every key path in it."""

    path: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        """Line of `key_path`, or of its nearest written ancestor."""
        for end in range(len(key_path), 0, -1):
            line = self.lines.get(tuple(key_path[:end]))
            if line is not None:
                return line
        return None

    def has(self, key_path: KeyPath) -> bool:
        """True when this document itself wrote `key_path`."""
        return tuple(key_path) in self.lines


def parse(text: str, path: str) -> Document:
    """Parse one YAML document whose top level must be a mapping."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("the file is empty; a campaign needs at least `campaign`, "
                              "`parameters` and `job`.", file=path)
        lines: dict[KeyPath, int] = {}
        _walk(node, (), lines, path)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError(
            f"YAML syntax error: {problem}{context}.",
            file=path, line=line,
            hint="Check indentation, colons and quotes on that line and the one before it.",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=path) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of sections, not a {type(data).__name__}.",
            file=path, line=1,
        )
    return Document(path=path, data=data, lines=lines)


def _walk(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int], path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                _walk(value_node, prefix, lines, path)
                continue
            if key in seen:
                raise ConfigError(
                    f"duplicate key '{key}' (first written on line {seen[key]}); "
                    "YAML would silently keep only the last one.",
                    file=path, key_path=prefix + (key,), line=line,
                )
            seen[key] = line
            lines[prefix + (key,)] = line
            _walk(value_node, prefix + (key,), lines, path)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[prefix + (index,)] = item.start_mark.line + 1
            _walk(item, prefix + (index,), lines, path)


class Locator:
    """Turns a key path of a merged config into a located ConfigError; earlier documents win."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = tuple(documents)

    def where(self, key_path: KeyPath) -> tuple[str, int | None]:
        """(file, line) of `key_path`, or of its nearest written ancestor."""
        for end in range(len(key_path), 0, -1):
            for doc in self.documents:
                if doc.has(key_path[:end]):
                    return doc.path, doc.lines[tuple(key_path[:end])]
        return (self.documents[0].path if self.documents else "<config>"), None

    def error(self, message: str, key_path: KeyPath, hint: str | None = None) -> ConfigError:
        """A ConfigError located at `key_path`."""
        file, line = self.where(key_path)
        return ConfigError(message, file=file, key_path=key_path, line=line, hint=hint)
