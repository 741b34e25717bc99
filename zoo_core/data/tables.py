"""Read the requested columns of a user's CSV, TSV or JSON Lines file with pyarrow.

Users train on their own labelled files.  :func:`read_table` parses them with
``pyarrow.csv`` and ``pyarrow.json`` and returns each requested column as one
``pa.string()`` array: a million-row file never becomes a million Python objects,
and the caller tokenises the text in chunks.

* csv: ``,``-separated, ``"`` quoting with doubled quotes; quoted fields may hold
  commas and newlines.
* tsv: tab-separated without quoting (GLUE-style text contains ``"`` that are not quotes).
* jsonl: one JSON object per line; numbers and booleans become their JSON text
  (``3`` -> ``"3"``, ``true`` -> ``"true"``).

A column given as a name is a header name (CSV/TSV) or a JSON key; a column given as
an ``int`` is a 0-based index into a CSV/TSV file *without* a header row.  Files may
start with a UTF-8 byte-order mark; blank lines are skipped.  Every problem is a
one-line :class:`DataError` naming the file and, where known, the 1-based line: the
pyarrow readers do not say where a problem is, so on failure (only then) the file is
streamed again with Python's ``csv``/``json`` modules to find the line.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from zoo_core.datasets import prepare_hint
from zoo_core.errors import DataError

Format = Literal["csv", "tsv", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl")

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
#: file extensions guess_format recognises
KNOWN_SUFFIXES: tuple[str, ...] = tuple(_EXTENSIONS)
_BOM = b"\xef\xbb\xbf"
#: pyarrow's block size (its default), and the one tried when a row does not fit in a block
_BLOCK_SIZE = 1 << 20
_LARGE_BLOCK_SIZE = 64 << 20
#: bytes read at a time when streaming a file on an error path
_CHUNK_SIZE = 1 << 20
#: values collected in Python lists before they become an Arrow chunk (JSON fallback)
_BATCH_SIZE = 65536
#: longest reason (e.g. pyarrow's message) quoted in an error
_MAX_REASON = 200
#: most column names / keys listed in an error
_MAX_LISTED = 20

Column = str | int


def guess_format(path: Path, declared: str = "auto") -> tuple[Format, bool]:
    """The format of ``path``: ``declared`` unless it is ``"auto"``, else from the extension.

    ``.csv`` is csv; ``.tsv`` and ``.tab`` are tsv; ``.jsonl``, ``.ndjson`` and ``.json``
    are JSON Lines.  Returns ``(format, guessed)``, ``guessed`` being True when the
    format came from the extension.  Raises :class:`DataError` for an unknown declared
    format or, with ``"auto"``, an unknown extension.
    """
    if declared != "auto":
        if declared not in FORMATS:
            raise DataError(f"{path}: unknown data.format '{declared}'; set it to auto, csv, tsv or jsonl")
        return cast(Format, declared), False
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix], True
    if not path.suffix:
        raise DataError(
            f"{path}: cannot tell the format of a file without an extension; "
            "set data.format to csv, tsv or jsonl"
        )
    raise DataError(
        f"{path}: cannot tell the format from the extension '{path.suffix}'; "
        "set data.format to csv, tsv or jsonl"
    )


@dataclass
class Table:
    """The requested columns of one file.

    ``columns`` is keyed by the column as requested (a name or a 0-based index); each
    value is a ``pa.string()`` array (chunks combined) of ``num_rows`` values, without
    nulls unless the column was passed in ``allow_null``.
    """

    path: Path
    format: Format
    columns: dict[str | int, pa.Array]
    num_rows: int

    def location(self, row: int) -> str:
        """``'<path>:<line>'`` of the 0-based data row ``row``, for error messages.

        The line is the 1-based physical line where the row starts, counting the header
        and skipped blank lines (quoted newlines in CSV are followed with the ``csv``
        module).  Computed on each call by streaming the file: meant for error paths.
        Falls back to ``'<path> (row N)'`` (1-based) if the file cannot be re-read.
        """
        if not 0 <= row < self.num_rows:
            raise IndexError(f"row {row} out of range: {self.path} has {self.num_rows} rows")
        has_header = self.format != "jsonl" and not any(_is_index(key) for key in self.columns)
        line = _record_line(self.path, self.format, row + 1 if has_header else row)
        return f"{self.path}:{line}" if line is not None else f"{self.path} (row {row + 1})"


def read_table(
    path: Path, fmt: Format, columns: Sequence[str | int], *, allow_null: Sequence[str | int] = ()
) -> Table:
    """Read ``columns`` of the ``fmt`` file ``path`` as ``pa.string()`` arrays.

    ``columns`` are header names or JSON keys (``str``), or 0-based indices (``int``)
    into a CSV/TSV file without a header row; not a mix.  Only those columns are
    converted; every value becomes a string as written (CSV ``"007"`` stays ``"007"``,
    text is not stripped).  A JSON row may lack a value (missing key or ``null``) only
    for the keys in ``allow_null``: those arrays keep the nulls.  A key that no row has
    is an error even then.

    Raises :class:`DataError` (one line, naming the file and where known the line) when
    the file is missing, empty, lacks a column, is not valid JSON, has a requested value
    that is not valid UTF-8 (other columns are not decoded), a row with the wrong number
    of fields, or a JSON object or array as a value.
    """
    wanted: list[Column] = list(dict.fromkeys(columns))
    if not wanted:
        raise ValueError("read_table needs at least one column")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    indices = [column for column in wanted if _is_index(column)]
    if indices and len(indices) != len(wanted):
        listed = ", ".join(repr(column) for column in wanted)
        raise DataError(
            f"{path}: columns must be all names (a file with a header row) or all 0-based indices "
            f"(a file without one), not a mix: {listed}"
        )
    if indices and fmt == "jsonl":
        raise DataError(f"{path}: JSON Lines columns are keys, not indices (got {indices[0]})")
    for index in indices:
        if cast(int, index) < 0:
            raise DataError(f"{path}: column {index} does not exist; column indices start at 0")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    if not path.is_file():
        raise DataError(f"{path}: file not found{prepare_hint(path)}")
    try:
        if _is_blank(path):
            raise DataError(f"{path}: file is empty")
        if fmt == "jsonl":
            arrays, num_rows = _read_jsonl(path, [cast(str, column) for column in wanted])
        else:
            arrays, num_rows = _read_delimited(path, fmt, wanted)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    table = Table(path=path, format=fmt, columns=arrays, num_rows=num_rows)
    allowed = set(allow_null)
    for column, array in arrays.items():
        if array.null_count and column not in allowed:
            first = _first_index(array.is_null())
            raise DataError(f"{table.location(first)}: no value for {column!r}")
    return table


# -- CSV and TSV ---------------------------------------------------------------------------------------


def _read_delimited(path: Path, fmt: Format, wanted: list[Column]) -> tuple[dict[Column, pa.Array], int]:
    """The ``wanted`` columns of a CSV/TSV file, and its number of data rows."""
    headerless = _is_index(wanted[0])
    names = {column: f"f{column}" if headerless else cast(str, column) for column in wanted}
    parse_options = pa_csv.ParseOptions(
        delimiter="," if fmt == "csv" else "\t",
        quote_char='"' if fmt == "csv" else False,
        double_quote=True,
        escape_char=False,
        newlines_in_values=fmt == "csv",
        ignore_empty_lines=True,
    )
    convert_options = pa_csv.ConvertOptions(
        include_columns=list(names.values()),
        column_types={name: pa.string() for name in names.values()},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )

    def read(block_size: int) -> pa.Table:
        read_options = pa_csv.ReadOptions(autogenerate_column_names=headerless, block_size=block_size)
        with pa.OSFile(str(path)) as source:
            return pa_csv.read_csv(
                source,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )

    try:
        table = _read_in_blocks(read)
    except pa.ArrowKeyError as exc:  # a column of include_columns is not in the file
        raise _missing_column_error(path, fmt, wanted, exc) from None
    except pa.ArrowInvalid as exc:
        raise _delimited_error(path, fmt, exc) from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no examples after the header")
    arrays: dict[Column, pa.Array] = {}
    for column, name in names.items():
        arrays[column] = _combine(path, column, table.column(name))
    return arrays, table.num_rows


def _missing_column_error(path: Path, fmt: Format, wanted: list[Column], exc: Exception) -> DataError:
    """The error for a requested column the file does not have."""
    first = next(_records(path, fmt), None)
    fields = first[1] if first is not None else []
    if _is_index(wanted[0]):
        for column in wanted:
            if cast(int, column) >= len(fields):
                return DataError(f"{path}: column {column} does not exist; rows have {len(fields)} columns")
    else:
        for column in wanted:
            if column not in fields:
                return DataError(f"{path}: no column {column!r} (columns: {_listing(fields)})")
    return DataError(f"{path}: cannot read as {fmt.upper()} ({_one_line(str(exc))})")


def _delimited_error(path: Path, fmt: Format, exc: Exception) -> DataError:
    """A one-line error, with its line where it can be found, for pyarrow's ``exc``."""
    message = str(exc)
    if "UTF8" in message or "UTF-8" in message:
        line = _first_invalid_utf8_line(path)
        if line is not None:
            return DataError(f"{path}:{line}: not valid UTF-8")
    if "columns, got" in message:
        wrong = _field_count_error(path, fmt)
        if wrong is not None:
            return wrong
    if "straddl" in message or "Empty CSV file or block" in message:
        # the file is not blank (checked before): a row longer than pyarrow's block
        return DataError(f"{path}: a row is longer than {_LARGE_BLOCK_SIZE >> 20} MiB; shorten or split it")
    return DataError(f"{path}: cannot read as {fmt.upper()} ({_one_line(message)})")


def _field_count_error(path: Path, fmt: Format) -> DataError | None:
    """The error for the first row whose number of fields differs from the first row's."""
    expected: int | None = None
    try:
        for line, fields in _records(path, fmt):
            if expected is None:
                expected = len(fields)
            elif len(fields) != expected:
                return DataError(f"{path}:{line}: expected {expected} fields, found {len(fields)}")
    except csv.Error:
        return None
    return None


# -- JSON Lines --------------------------------------------------------------------------------------


def _read_jsonl(path: Path, wanted: list[str]) -> tuple[dict[Column, pa.Array], int]:
    """The ``wanted`` keys of a JSON Lines file as string arrays (nulls kept), and its number of rows.

    Tried in turn: pyarrow with every wanted key declared a string (the usual file);
    pyarrow inferring the types (number and boolean columns, cast to strings); Python's
    ``json`` module line by line, in batches (mixed types in a column, values pyarrow
    would misread such as dates, and every malformed file: it finds the bad line).
    """
    schema = pa.schema([(key, pa.string()) for key in wanted])
    strict = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")

    def read(parse_options: pa_json.ParseOptions | None) -> Callable[[int], pa.Table]:
        def in_blocks(block_size: int) -> pa.Table:
            with pa.OSFile(str(path)) as source:
                return pa_json.read_json(
                    source,
                    read_options=pa_json.ReadOptions(block_size=block_size),
                    parse_options=parse_options,
                )

        return in_blocks

    arrays: dict[Column, pa.Array] | None = None
    num_rows = 0
    try:
        table = _read_in_blocks(read(strict))
        arrays, num_rows = {key: _combine(path, key, table.column(key)) for key in wanted}, table.num_rows
    except pa.ArrowInvalid:
        try:
            table = _read_in_blocks(read(None))
            arrays, num_rows = _inferred_columns(path, table, wanted), table.num_rows
        except pa.ArrowInvalid:
            arrays = None
    if arrays is None:
        return _read_jsonl_python(path, wanted)
    for key, array in arrays.items():
        try:
            array.validate(full=True)  # pyarrow's JSON reader passes invalid UTF-8 through
        except pa.ArrowInvalid:
            line = _first_invalid_utf8_line(path)
            raise DataError(
                f"{path}:{line}: not valid UTF-8" if line else f"{path}: not valid UTF-8"
            ) from None
        if num_rows and array.null_count == num_rows:
            missing = _missing_key_error(path, cast(str, key))
            if missing is not None:
                raise missing
    return arrays, num_rows


def _inferred_columns(path: Path, table: pa.Table, wanted: list[str]) -> dict[Column, pa.Array] | None:
    """The ``wanted`` columns of a type-inferred JSON table as strings.

    None if a column has a type whose text cannot be recovered exactly (pyarrow reads
    ``"2020-01-01"`` as a timestamp); :class:`DataError` for objects and arrays.
    """
    arrays: dict[Column, pa.Array] = {}
    for key in wanted:
        if key not in table.column_names:
            arrays[key] = pa.nulls(table.num_rows, pa.string())
            continue
        array = _combine(path, key, table.column(key))
        kind = array.type
        if pa.types.is_struct(kind) or pa.types.is_map(kind):
            raise _nested_value_error(path, table.num_rows, key, array, "an object")
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
            raise _nested_value_error(path, table.num_rows, key, array, "an array")
        if pa.types.is_null(kind):
            arrays[key] = pa.nulls(len(array), pa.string())
        elif (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
        ):
            arrays[key] = array.cast(pa.string())
        else:
            return None
    return arrays


def _nested_value_error(path: Path, num_rows: int, key: str, array: pa.Array, found: str) -> DataError:
    """The error for a JSON object or array given as the value of ``key``."""
    row = _first_index(array.is_valid())
    where = Table(path=path, format="jsonl", columns={}, num_rows=num_rows).location(row)
    return DataError(f"{where}: {key!r} must be a string or number, found {found}")


def _read_jsonl_python(path: Path, wanted: list[str]) -> tuple[dict[Column, pa.Array], int]:
    """The JSON Lines reader of last resort: ``json.loads`` per line, values gathered in Arrow batches.

    Numbers keep their JSON text; raises the :class:`DataError` of the first bad line.
    """
    pending: dict[str, list[str | None]] = {key: [] for key in wanted}
    chunks: dict[str, list[pa.Array]] = {key: [] for key in wanted}
    present: set[str] = set()
    num_rows = 0

    def flush() -> None:
        for key in wanted:
            chunks[key].append(pa.array(pending[key], type=pa.string()))
            pending[key] = []

    for line, obj in _json_objects(path):
        for key in wanted:
            value = obj.get(key)
            if key in obj:
                present.add(key)
            pending[key].append(_json_text(path, line, key, value))
        num_rows += 1
        if num_rows % _BATCH_SIZE == 0:
            flush()
    flush()
    for key in wanted:
        if key not in present:
            raise _missing_key_error(path, key) or DataError(f"{path}: no key {key!r}")
    arrays: dict[Column, pa.Array] = {
        key: _combine(path, key, pa.chunked_array(chunks[key], type=pa.string())) for key in wanted
    }
    return arrays, num_rows


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of a JSON Lines file with their 1-based line numbers; DataError at the first bad line."""
    with path.open("rb") as stream:
        for line, raw in enumerate(stream, start=1):
            if line == 1:
                raw = raw.removeprefix(_BOM)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{line}: not valid UTF-8") from None
            try:
                obj = json.loads(text, parse_int=str, parse_float=str, parse_constant=_reject_constant)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except ValueError as exc:
                raise DataError(f"{path}:{line}: not valid JSON ({_one_line(str(exc))})") from None
            if not isinstance(obj, dict):  # parsed again: numbers were kept as text above
                raise DataError(
                    f"{path}:{line}: expected a JSON object, found {_json_kind(json.loads(text))}"
                )
            yield line, obj


def _reject_constant(name: str) -> Any:
    """``json.loads``' hook for ``NaN`` and ``Infinity``, which are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def _json_text(path: Path, line: int, key: str, value: Any) -> str | None:
    """A JSON value as text (numbers arrive as their JSON text); DataError for objects and arrays."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raise DataError(f"{path}:{line}: {key!r} must be a string or number, found {_json_kind(value)}")


def _json_kind(value: Any) -> str:
    """What a parsed JSON value is, for an error message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _missing_key_error(path: Path, key: str) -> DataError | None:
    """``no key`` listing the keys of the file, or None if some row has ``key`` (error path)."""
    keys: dict[str, None] = {}
    with path.open("rb") as stream:
        for raw in stream:
            try:
                obj = json.loads(raw.removeprefix(_BOM).decode("utf-8", errors="replace"))
            except ValueError:
                continue
            if isinstance(obj, dict):
                if key in obj:
                    return None
                keys.update(dict.fromkeys(obj))
    return DataError(f"{path}: no key {key!r} (keys: {_listing(list(keys))})")


# -- streaming helpers (error paths) ---------------------------------------------------------------


def _records(path: Path, fmt: Format) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record of ``path`` with the 1-based line it starts on and its fields.

    CSV records are split by the ``csv`` module (quoted fields may span lines); TSV and
    JSON Lines records are lines (the fields of a JSON line are not split: ``[]``).
    """
    if fmt == "csv":
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as stream, _no_csv_field_limit():
            reader = csv.reader(stream, delimiter=",", quotechar='"', doublequote=True)
            end = 0
            for fields in reader:
                start, end = end + 1, reader.line_num
                if fields:
                    yield start, fields
        return
    with path.open("rb") as stream:
        for line, raw in enumerate(stream, start=1):
            if line == 1:
                raw = raw.removeprefix(_BOM)
            content = raw.rstrip(b"\r\n")
            if fmt == "tsv":
                if content:
                    yield line, content.decode("utf-8", errors="replace").split("\t")
            elif content.strip():
                yield line, []


def _record_line(path: Path, fmt: Format, index: int) -> int | None:
    """The line where the 0-based record ``index`` (header included) starts, or None."""
    try:
        for position, (line, _fields) in enumerate(_records(path, fmt)):
            if position == index:
                return line
    except (OSError, csv.Error):
        return None
    return None


@contextlib.contextmanager
def _no_csv_field_limit() -> Iterator[None]:
    """Lift the ``csv`` module's 128 KiB field limit while streaming a file."""
    previous = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _first_invalid_utf8_line(path: Path) -> int | None:
    """The 1-based line of the first byte sequence that is not UTF-8, or None if all is UTF-8."""
    line = 1
    carry = b""
    with path.open("rb") as stream:
        while True:
            chunk = stream.read(_CHUNK_SIZE)
            data = carry + chunk
            if not data:
                return None
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.reason == "unexpected end of data":  # a character split by the chunk
                    line += data.count(b"\n", 0, exc.start)
                    carry = data[exc.start :]
                    continue
                return line + data.count(b"\n", 0, exc.start)
            line += data.count(b"\n")
            carry = b""


def _is_blank(path: Path) -> bool:
    """Whether ``path`` holds nothing but a byte-order mark and whitespace."""
    with path.open("rb") as stream:
        first = True
        while chunk := stream.read(_CHUNK_SIZE):
            if first:
                chunk, first = chunk.removeprefix(_BOM), False
            if chunk.strip():
                return False
    return True


# -- small helpers ------------------------------------------------------------------------------------


def _read_in_blocks(read: Callable[[int], pa.Table]) -> pa.Table:
    """``read(block_size)`` with pyarrow's block size, again with a large one if a row did not fit."""
    try:
        return read(_BLOCK_SIZE)
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "straddl" not in message and "Empty CSV file or block" not in message:
            raise
    return read(_LARGE_BLOCK_SIZE)


def _is_index(column: object) -> bool:
    """Whether a requested column is a 0-based index rather than a name."""
    return isinstance(column, int) and not isinstance(column, bool)


def _combine(path: Path, column: Column, values: pa.ChunkedArray) -> pa.Array:
    """One array of a column's chunks."""
    try:
        return values.combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowCapacityError):  # offsets of pa.string() are 32-bit
        raise DataError(f"{path}: column {column!r} holds more than 2 GiB of text; split the file") from None


def _first_index(mask: pa.Array) -> int:
    """The index of the first True of a boolean array (one that has a True)."""
    return int(pc.index(mask, True).as_py())


def _listing(names: Sequence[str]) -> str:
    """Names for an error message, the first few of many."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (", ..." if len(names) > _MAX_LISTED else "") if names else "none"


def _one_line(text: str) -> str:
    """``text`` on one line, cut to a readable length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_REASON else flat[: _MAX_REASON - 3] + "..."
