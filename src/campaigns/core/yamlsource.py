"""YAML documents that remember where each key and value was written.

`parse` is pure (text in, `Document` out) so tests can parse configs from
strings; errors are `ConfigError`s naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from campaigns.errors import ConfigError

KeyPath = tuple[str | int, ...]
# libyaml's parser when PyYAML has it (10x faster; it reports lines the same way).
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loading, plus YAML 1.2 floats: `1e-5` and `1e12` are numbers, not text.

    PyYAML follows YAML 1.1, where a float needs a dot (`1.0e-5`); scientists write
    `1e-5` and would silently get a string that no `{x:.3f}` or override can match.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass(frozen=True)
class Document:
    """A parsed YAML mapping plus the line of every key path in it."""

    path: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)
    #: How keys that YAML did not read as text were written (`on` for the key True).
    spellings: dict[KeyPath, str] = field(default_factory=dict)

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


def parse(text: str, path: str, what: str = "campaign file") -> Document:
    """Parse one YAML document whose top level must be a mapping."""
    loader = None
    try:
        loader = _Loader(text)  # the pure-Python reader checks characters here already
        node = loader.get_single_node()
        if node is None:
            needs = (
                "`campaign`, `parameters` and `job`"
                if what == "campaign file"
                else "a mapping of sections"
            )
            raise ConfigError(f"the {what} is empty; it needs at least {needs}.", file=path)
        lines: dict[KeyPath, int] = {}
        spellings: dict[KeyPath, str] = {}
        first_line = node.start_mark.line + 1
        _walk(node, (), lines, path, loader, set(), spellings)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, path) from None
    except yaml.reader.ReaderError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        character = getattr(exc, "character", None)
        shown = f" #x{character:04x}" if isinstance(character, int) else ""
        raise ConfigError(
            f"the {what} holds a character YAML does not allow{shown} (a control character).",
            file=path,
            line=line,
            hint="Delete it, or write it as an escape inside double quotes.",
        ) from None
    except yaml.YAMLError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise ConfigError(f"YAML error: {first_line}.", file=path) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        kind = {
            list: "a list",
            str: "plain text",
            int: "a number",
            float: "a number",
            bool: "a boolean",
        }.get(type(data), f"a {type(data).__name__}")
        raise ConfigError(
            f"the top level must be a mapping of sections (`name: value` lines), not {kind}.",
            file=path,
            line=first_line,
        )
    return Document(path=path, data=data, lines=lines, spellings=spellings)


def _syntax_error(exc: yaml.MarkedYAMLError, path: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = (exc.problem or "invalid YAML").rstrip(".")
    context = ""
    if exc.context:
        context = f" ({exc.context}"
        # The problem is often only noticed at the end of the file; say where the bad part began.
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" that starts on line {exc.context_mark.line + 1}"
        context += ")"
    return ConfigError(
        f"YAML syntax error: {problem}{context}.",
        file=path,
        line=line,
        hint="Check indentation, colons, brackets and quotes on that line and the ones before it.",
    )


def _key_of(key_node: yaml.Node, loader: Any, path: str, prefix: KeyPath) -> Any:
    """The key as YAML types it (`1` is an int, `on` a bool), so lines match the data's keys."""
    if not isinstance(key_node, yaml.ScalarNode):
        raise ConfigError(
            "a key must be a plain name, not a list or a mapping.",
            file=path,
            key_path=prefix,
            line=key_node.start_mark.line + 1,
        )
    return loader.construct_object(key_node)


def _walk(
    node: yaml.Node,
    prefix: KeyPath,
    lines: dict[KeyPath, int],
    path: str,
    loader: Any,
    active: set[int],
    spellings: dict[KeyPath, str],
    merged: bool = False,
) -> None:
    if id(node) in active:
        raise ConfigError(
            "an alias refers to the structure that contains it (a recursive "
            "anchor); configs must be trees.",
            file=path,
            key_path=prefix,
            line=node.start_mark.line + 1,
        )
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in sources:
                    _walk(source, prefix, lines, path, loader, active, spellings, merged=True)
                continue
            key = _key_of(key_node, loader, path, prefix)
            if key in seen:
                raise ConfigError(
                    f"duplicate key '{key}' (first written on line {seen[key]}); "
                    "YAML would silently keep only the last one.",
                    file=path,
                    key_path=prefix + (key,),
                    line=line,
                )
            seen[key] = line
            if not isinstance(key, str):
                spellings[prefix + (key,)] = str(key_node.value)
            if merged:  # keys written next to `<<:` win over merged ones, and so do their lines
                lines.setdefault(prefix + (key,), line)
            else:
                lines[prefix + (key,)] = line
            _walk(value_node, prefix + (key,), lines, path, loader, active, spellings, merged)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if merged:
                lines.setdefault(prefix + (index,), item.start_mark.line + 1)
            else:
                lines[prefix + (index,)] = item.start_mark.line + 1
            _walk(item, prefix + (index,), lines, path, loader, active, spellings, merged)
    active.discard(id(node))


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

    def spelling(self, key_path: KeyPath) -> str | None:
        """How a non-text key was written in the file (`on`, `1`), if some document wrote it."""
        for doc in self.documents:
            if key_path in doc.spellings:
                return doc.spellings[key_path]
        return None

    def error(self, message: str, key_path: KeyPath, hint: str | None = None) -> ConfigError:
        """A ConfigError located at `key_path`."""
        file, line = self.where(key_path)
        return ConfigError(message, file=file, key_path=key_path, line=line, hint=hint)
