"""Every JSON and YAML file zoo reads goes through here: bounded, decoded, parsed, type-checked.

A file is read with a size cap, decoded as UTF-8 (a byte-order mark is allowed),
parsed, and its top-level type checked.  Whatever goes wrong is one line naming the
file (and the line or field where there is one) and what was expected, raised as
the :class:`~zoo_core.errors.ZooError` subclass the caller names, e.g.::

    runs/x/best/config.json: not valid JSON (Expecting ',' delimiter at line 3 column 5)
    x.yaml:4: nested more than 32 levels deep
    runs/x/best/zoo.json: unreadable: recipe: expected an object, got a list

Hostile YAML is refused before anything is built from it, in time and memory
proportional to the (capped) file: aliases may not expand the document beyond
:data:`MAX_YAML_NODES` values, nest deeper than :data:`MAX_YAML_DEPTH`, refer to
themselves, or hold a scalar longer than :data:`MAX_YAML_SCALAR`.  Values quoted in
messages are cut to about 80 characters (:func:`quote`).
"""

from __future__ import annotations

import hashlib
import json
import math
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from zoo_core.errors import ZooError

#: largest JSON file read (config.json, zoo.json, ... are a few KB; 4 MiB parses in < 0.1 s, < 100 MB)
MAX_JSON_BYTES = 4 << 20
#: largest YAML file read (recipes are a few KB)
MAX_YAML_BYTES = 1 << 20
#: most values (scalars, mappings, sequences) a YAML document may hold, every alias expanded
MAX_YAML_NODES = 10_000
#: deepest nesting of YAML mappings and sequences
MAX_YAML_DEPTH = 32
#: longest YAML scalar, in characters (a path is at most 4096 bytes)
MAX_YAML_SCALAR = 4096
#: longest quoted value or parser message in an error
QUOTE_LIMIT = 80

_BOM = b"\xef\xbb\xbf"
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple = 2, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = QUOTE_LIMIT, QUOTE_LIMIT, 40


def one_line(text: object, limit: int = 2 * QUOTE_LIMIT) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A short ``repr`` of ``value`` for an error message, in bounded time for any value."""
    return one_line(_repr.repr(value), limit)


def kind_of(value: object) -> str:
    """The JSON/YAML name of ``value``'s type, with an article: ``a list``, ``null``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return f"a string ({quote(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({quote(value)})"
    return f"a {type(value).__name__}"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n:,} bytes"


def display_name(path: Path | str) -> str:
    """``path`` for a one-line message: control characters (a newline in a file name) escaped."""
    name = str(path)
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _fail(
    error: type[ZooError], path: Path | str, reason: str, context: str | None, line: int | None = None
) -> ZooError:
    where = f"{display_name(path)}:{line}" if line else display_name(path)
    return error(f"{where}: {context}: {reason}" if context else f"{where}: {reason}")


def read_bytes(
    path: Path,
    *,
    error: type[ZooError] = ZooError,
    max_bytes: int = MAX_JSON_BYTES,
    context: str | None = None,
) -> bytes:
    """The bytes of ``path``, at most ``max_bytes`` of them, or one-line ``error``.

    ``context`` is put after the file name in every message (e.g. ``"unreadable"``).
    A missing file, a directory, an unreadable file and a file over the cap are each
    refused; no more than ``max_bytes + 1`` bytes are ever read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise _fail(error, path, "no such file", context) from None
    except IsADirectoryError:
        raise _fail(error, path, "is a directory, expected a file", context) from None
    except PermissionError:
        raise _fail(error, path, "cannot read (permission denied)", context) from None
    except OSError as exc:
        raise _fail(error, path, f"cannot read ({one_line(exc.strerror or exc)})", context) from None
    except ValueError:  # a NUL character in the name
        raise _fail(error, path, "not a valid file name", context) from None
    if len(data) > max_bytes:
        try:
            size = f"{_size(path.stat().st_size)}, "
        except (OSError, ValueError):
            size = ""
        raise _fail(error, path, f"too large ({size}at most {_size(max_bytes)} is read)", context)
    return data


def decode_text(
    data: bytes, path: Path | str, *, error: type[ZooError] = ZooError, context: str | None = None
) -> str:
    """``data`` as UTF-8 text without a byte-order mark; binary data is refused with its line."""
    try:
        text = data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(_BOM) if data.startswith(_BOM) else 0)
        line = data.count(b"\n", 0, offset) + 1
        reason = f"not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}); is it a binary file?"
        raise _fail(error, path, reason, context, line) from None
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise _fail(error, path, "holds a NUL character: a binary file, not text", context, line)
    return text


def read_text(
    path: Path,
    *,
    error: type[ZooError] = ZooError,
    max_bytes: int = MAX_JSON_BYTES,
    context: str | None = None,
) -> str:
    """:func:`read_bytes` then :func:`decode_text`."""
    return decode_text(
        read_bytes(path, error=error, max_bytes=max_bytes, context=context),
        path,
        error=error,
        context=context,
    )


def _check_type(
    value: Any, expect: type | None, what: str, path: Path | str, error: type[ZooError], context: str | None
) -> None:
    if expect is None or (isinstance(value, expect) and not (expect is int and isinstance(value, bool))):
        return
    names: dict[tuple[str, type], str] = {
        ("JSON", dict): "a JSON object",
        ("JSON", list): "a JSON array",
        ("YAML", dict): "a YAML mapping (key: value lines)",
        ("YAML", list): "a YAML list",
    }
    expected = names.get((what, expect), f"a {expect.__name__}")
    raise _fail(error, path, f"expected {expected}, got {kind_of(value)}", context)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(
    text: str,
    path: Path | str,
    *,
    error: type[ZooError] = ZooError,
    expect: type | None = dict,
    context: str | None = None,
) -> Any:
    """Parse JSON ``text`` read from ``path``; NaN and Infinity are refused, as is a wrong top-level type."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        reason = f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise _fail(error, path, reason, context) from None
    except RecursionError:
        raise _fail(error, path, "not valid JSON (nested too deeply)", context) from None
    except ValueError as exc:  # NaN / Infinity, an integer of more than 4300 digits
        raise _fail(error, path, f"not valid JSON ({one_line(exc)})", context) from None
    _check_type(value, expect, "JSON", path, error, context)
    return value


def load_json(
    path: Path,
    *,
    error: type[ZooError] = ZooError,
    expect: type | None = dict,
    max_bytes: int = MAX_JSON_BYTES,
    context: str | None = None,
) -> Any:
    """Read, decode and parse JSON file ``path``; its top level must be ``expect`` (None: anything).

    Every failure is one line raised as ``error``, naming the file; ``context`` is put
    after the file name (e.g. ``"unreadable"``).
    """
    text = read_text(path, error=error, max_bytes=max_bytes, context=context)
    return parse_json(text, path, error=error, expect=expect, context=context)


# ---- YAML -----------------------------------------------------------------------------
def _yaml_problem(exc: yaml.YAMLError) -> tuple[int | None, str]:
    """The 1-based line and a one-line description of a PyYAML error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None)
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        problem = f"unacceptable character #x{code:04x} at position {exc.position}"
    text = one_line(problem or exc)
    return (mark.line + 1 if mark is not None else None), text


def check_yaml_limits(
    text: str, source: Path | str, *, error: type[ZooError] = ZooError, context: str | None = None
) -> None:
    """Refuse YAML whose aliases expand, or whose nesting or scalars, go beyond the limits.

    Walks the parser's events only (nothing is built), so it costs time proportional
    to the text and stops at the first limit.  Syntax errors are left to the parser
    that follows (they pass silently here).
    """
    nodes = 0
    sizes: dict[str, int] = {}  # anchor -> values it stands for, every alias inside expanded
    open_: list[tuple[str | None, int]] = []  # enclosing collections: (anchor, nodes before it)
    aliased = False
    try:
        for event in yaml.parse(text, Loader=_YAML_LOADER):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.AliasEvent):
                if any(anchor == event.anchor for anchor, _ in open_):
                    raise _fail(
                        error, source, f"alias *{one_line(event.anchor, 40)} refers to itself", context, line
                    )
                nodes += sizes.get(event.anchor or "", 1)
                aliased = True
            elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
                nodes += 1
                if isinstance(event, yaml.ScalarEvent):
                    if len(event.value) > MAX_YAML_SCALAR:
                        reason = f"a value of {len(event.value):,} characters (at most {MAX_YAML_SCALAR:,})"
                        raise _fail(error, source, reason, context, line)
                    if event.anchor is not None:
                        sizes[event.anchor] = 1
                else:
                    open_.append((event.anchor, nodes - 1))
                    if len(open_) > MAX_YAML_DEPTH:
                        reason = f"nested more than {MAX_YAML_DEPTH} levels deep"
                        raise _fail(error, source, reason, context, line)
            elif isinstance(event, yaml.CollectionEndEvent) and open_:
                anchor, before = open_.pop()
                if anchor is not None:
                    sizes[anchor] = nodes - before
            if nodes > MAX_YAML_NODES:
                why = "; its aliases (*name) repeat too much" if aliased else ""
                reason = f"more than {MAX_YAML_NODES:,} values{why}"
                raise _fail(error, source, reason, context, line)
    except yaml.YAMLError:
        return


def parse_yaml(
    text: str,
    source: Path | str,
    *,
    error: type[ZooError] = ZooError,
    expect: type | None = dict,
    context: str | None = None,
) -> tuple[Any, yaml.Node | None]:
    """The single YAML document in ``text`` and its node tree (for line numbers).

    :func:`check_yaml_limits` runs first; an empty document is ``None``.
    """
    check_yaml_limits(text, source, error=error, context=context)
    loader = _YAML_LOADER(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        line, problem = _yaml_problem(exc)
        raise _fail(error, source, f"not valid YAML ({problem})", context, line) from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise _fail(error, source, f"not valid YAML ({one_line(exc)})", context) from None
    finally:
        loader.dispose()
    _check_type(data, expect, "YAML", source, error, context)
    return data, root


def load_yaml(
    path: Path,
    *,
    error: type[ZooError] = ZooError,
    expect: type | None = dict,
    max_bytes: int = MAX_YAML_BYTES,
    context: str | None = None,
) -> tuple[Any, yaml.Node | None]:
    """Read, decode, limit-check and parse YAML file ``path``: its data and node tree.

    Every failure is one line raised as ``error``, naming the file (and line).
    """
    text = read_text(path, error=error, max_bytes=max_bytes, context=context)
    return parse_yaml(text, path, error=error, expect=expect, context=context)


# ---- fields ---------------------------------------------------------------------------
class Count(int):
    """Schema marker for :func:`check_fields`: a non-negative integer."""


_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    Count: "an integer >= 0",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


def _matches(value: Any, expected: type) -> bool:
    if isinstance(value, bool):
        return expected is bool
    if expected is Count:
        return isinstance(value, int) and value >= 0
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, expected)


def _found(node: Any, parts: list[str], dotted: str) -> list[tuple[str, Any]]:
    """The values at path ``parts`` under ``node`` with their dotted names (``*``: every key or item)."""
    if not parts:
        return [(dotted, node)]
    head, rest = parts[0], parts[1:]
    if isinstance(node, list) and head == "*":
        items: list[tuple[Any, Any]] = list(enumerate(node))
    elif isinstance(node, Mapping):
        keys = list(node) if head == "*" else [head] if head in node else []
        items = [(key, node[key]) for key in keys]
    else:
        return []
    return [
        hit for key, value in items for hit in _found(value, rest, f"{dotted}.{key}" if dotted else str(key))
    ]


def check_fields(
    data: Mapping[str, Any],
    schema: Mapping[str, type | tuple[type, ...]],
    source: Path | str,
    *,
    error: type[ZooError] = ZooError,
    context: str | None = None,
) -> None:
    """Check the types of the fields in ``schema`` (dotted paths; ``*``: every key or item) ``data`` has.

    A missing field (or one under a missing section) is fine; a wrong type is one line
    ``source: dotted.path: expected ..., got ...``.  ``bool`` passes only for ``bool``;
    ``float`` means any finite number; :class:`Count` a non-negative integer.
    """
    for path, expected in schema.items():
        types = expected if isinstance(expected, tuple) else (expected,)
        for dotted, node in _found(data, path.split("."), ""):
            if not any(_matches(node, t) for t in types):
                want = " or ".join(_NAMES.get(t, t.__name__) for t in types)
                name = one_line(dotted, QUOTE_LIMIT)
                raise _fail(error, source, f"{name}: expected {want}, got {kind_of(node)}", context)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
