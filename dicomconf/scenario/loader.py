"""A YAML loader that remembers where every value came from.

Theory of operation
-------------------
PyYAML's composer builds a node graph in which every node carries its start
mark (line and column).  :func:`load_yaml` composes the document, converts the
nodes to plain Python values with the safe constructor's rules (so ``5``,
``true`` and ``null`` mean what they mean in any YAML file) and records, for
every value, the line it starts on under its *path*: the tuple of mapping keys
and sequence indexes that leads to it from the root, exactly as JSON Schema
validators report an error's ``absolute_path``.  A schema error at path
``("steps", 3, "expect", "within")`` is then reported at the line of that key.

Errors are :class:`SourceError` (file, line, message) and format as
``file:line: message``; YAML syntax errors are converted to them too.  When
a file has several problems they travel together as :class:`SourceErrors`
(a ``SourceError`` whose ``errors`` lists them all, ordered by line, and
whose text is one ``file:line: message`` line per error), so that a user
fixes a file in one pass.  :meth:`SourceErrors.merge` builds one from any
number of errors and returns a plain ``SourceError`` when there is one.
Booleans follow YAML 1.2 (only ``true``/``false``), so that ``on: main``
means the string "on".  Duplicate mapping keys are an error (YAML says keys are unique; PyYAML keeps
the last silently); every duplicate of a document is reported at once.

Composing is libyaml's work when PyYAML was built with it (``yaml.CSafeLoader``:
the same node graph and start marks, about eight times faster than the
pure-Python composer); the tag resolution (YAML 1.2 booleans) and the
conversion above stay in Python.  libyaml words its syntax errors
differently, so a text it refuses (or that holds a character the pure-Python
reader refuses) is composed again by the pure-Python loader, whose error is
the one reported: a user sees the same ``file:line: YAML syntax error ...``
either way.  Without libyaml the pure-Python composer does it all.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

Path_ = tuple[Any, ...]


class SourceError(Exception):
    """A problem in a user's file, located: ``file:line: message``."""

    def __init__(self, file: str | Path, line: int | None, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.message = message
        where = f"{self.file}:{line}" if line else self.file
        super().__init__(f"{where}: {message}")


class SourceErrors(SourceError):
    """Several problems in one user's file, ordered by line.

    ``errors`` holds each :class:`SourceError`; ``file``, ``line`` and
    ``message`` are the first one's (``message`` adds how many more there
    are), and the text is one ``file:line: message`` line per error.
    """

    def __init__(self, errors: Iterable[SourceError]) -> None:
        self.errors: tuple[SourceError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("SourceErrors needs at least one error")
        first = self.errors[0]
        more = len(self.errors) - 1
        self.file, self.line = first.file, first.line
        self.message = first.message + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        Exception.__init__(self, "\n".join(str(e) for e in self.errors))

    @staticmethod
    def merge(errors: Iterable[SourceError]) -> SourceError | None:
        """One error for ``errors`` (flattened, de-duplicated, ordered by line), or None when empty."""
        flat: list[SourceError] = []
        seen: set[str] = set()
        for error in errors:
            for one in error.errors if isinstance(error, SourceErrors) else (error,):
                if str(one) not in seen:
                    seen.add(str(one))
                    flat.append(one)
        if not flat:
            return None
        flat.sort(key=lambda e: e.line or 0)  # stable: equal lines keep their order
        return flat[0] if len(flat) == 1 else SourceErrors(flat)


@dataclass(slots=True)
class Located:
    """A loaded document and the line of every value in it (1-based)."""

    file: str
    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    key_lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[SourceError] = field(default_factory=list, repr=False)
    order: dict[Path_, int] = field(default_factory=dict, repr=False)

    def line_of(self, path: Path_) -> int | None:
        """The line of the key naming the value at ``path`` (or of the value
        itself, for a sequence element), else of its nearest ancestor."""
        path = tuple(path)
        while True:
            if path in self.key_lines:
                return self.key_lines[path]
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def position(self, path: Path_) -> tuple[int, int]:
        """``(line, place in the document)`` of ``path`` (or its nearest known ancestor):
        a sort key that keeps document order among values on one line (``[a, b, c]``)."""
        path = tuple(path)
        line = self.line_of(path) or 0
        while path and path not in self.order:
            path = path[:-1]
        return line, self.order.get(path, 0)

    def sub(self, prefix: Path_) -> "Located":
        """The document rooted at ``prefix`` (paths re-based, lines kept)."""
        prefix = tuple(prefix)
        n = len(prefix)
        value: Any = self.value
        for key in prefix:
            value = value[key]
        return Located(
            self.file,
            value,
            {p[n:]: ln for p, ln in self.lines.items() if p[:n] == prefix},
            {p[n:]: ln for p, ln in self.key_lines.items() if p[:n] == prefix},
            order={p[n:]: i for p, i in self.order.items() if p[:n] == prefix},
        )

    def error(self, path: Path_, message: str) -> SourceError:
        return SourceError(self.file, self.line_of(path), message)


class _Constructor(yaml.constructor.SafeConstructor):
    """Safe scalar construction; collections are built by :func:`_convert`."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 also reads ``on``, ``off``, ``yes``, ``no`` as booleans, which
    would turn a scenario's ``on: second`` into ``True: second``.
    """


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

_CLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """libyaml's parser and composer with :class:`_Loader`'s tag resolution (YAML 1.2 booleans)."""

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


def _compose(text: str, fast: bool = True) -> yaml.Node | None:
    """The node graph of ``text``: libyaml's when ``fast`` and it can, else the pure-Python
    composer's, which also words every error (see the module docstring)."""
    if fast and _CLoader is not None and not yaml.reader.Reader.NON_PRINTABLE.search(text):
        try:
            return yaml.compose(text, Loader=_CLoader)
        except yaml.YAMLError:
            pass  # composed again below, for the pure-Python loader's wording of the error
    return yaml.compose(text, Loader=_Loader)


def _convert(node: yaml.Node, path: Path_, out: Located, ctor: _Constructor) -> Any:
    out.lines[path] = node.start_mark.line + 1
    out.order[path] = len(out.order)
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if isinstance(key, list):
                raise SourceError(out.file, key_node.start_mark.line + 1, "a mapping key cannot be a list")
            if key in result:
                out.problems.append(SourceError(out.file, key_node.start_mark.line + 1, f"duplicate key {key!r}"))
                continue
            out.key_lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, path + (key,), out, ctor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(child, path + (i,), out, ctor) for i, child in enumerate(node.value)]
    return ctor.construct_object(node, deep=True)


def load_yaml_text(text: str, file: str | Path = "<string>", *, fast: bool = True) -> Located:
    """Load one YAML document from ``text``, keeping line numbers (``fast``: with libyaml when
    PyYAML has it; the result and every error are the same either way)."""
    out = Located(str(file), None)
    try:
        node = _compose(text, fast)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise SourceError(file, line, f"YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise SourceError(file, None, f"YAML error: {exc}") from None
    if node is None:
        return out
    ctor = _Constructor()
    try:
        out.value = _convert(node, (), out, ctor)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise SourceError(file, mark.line + 1 if mark else None, f"YAML error: {exc.problem}") from None
    error = SourceErrors.merge(out.problems)
    if error is not None:
        raise error
    return out


def load_yaml(path: str | Path) -> Located:
    """Load the YAML file at ``path``; any problem is a :class:`SourceError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SourceError(path, None, f"not UTF-8 text: {exc.reason}") from None
    return load_yaml_text(text, path)
