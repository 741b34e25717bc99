"""zoo_core.data.tables: reading the columns of users' CSV, TSV and JSON Lines files with pyarrow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from zoo_core.data.tables import FORMATS, Format, Table, guess_format, read_table
from zoo_core.errors import DataError

REPO = Path(__file__).resolve().parents[1]
#: real files shipped in the repository: 40 ChnSentiCorp rows, TREC, MRPC (with its BOM)
CHNSENTICORP = Path(__file__).parent / "data" / "chnsenticorp-40.tsv"
TREC = REPO / "data" / "trec" / "train.jsonl"
MRPC = REPO / "data" / "glue" / "MRPC" / "train.tsv"
BOM = b"\xef\xbb\xbf"


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    """``content`` (UTF-8 if text, written byte for byte) as ``tmp_path / name``."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _values(table: Table) -> dict[str | int, list[str | None]]:
    """The table's columns as Python lists (tiny test files only)."""
    return {column: array.to_pylist() for column, array in table.columns.items()}


def _error(
    path: Path, fmt: Format, columns: Sequence[str | int], *, allow_null: Sequence[str | int] = ()
) -> str:
    """The message of the DataError that reading ``path`` raises, checked to be one line."""
    with pytest.raises(DataError) as caught:
        read_table(path, fmt, columns, allow_null=allow_null)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(str(path))
    return message


def _head(source: Path, tmp_path: Path, lines: int) -> Path:
    """The first ``lines`` lines of a real data file, copied into ``tmp_path``."""
    with source.open("rb") as stream:
        head = b"".join(stream.readline() for _ in range(lines))
    return _write(tmp_path, source.name, head)


# -- guess_format -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("train.csv", "csv"),
        ("train.tsv", "tsv"),
        ("train.tab", "tsv"),
        ("train.jsonl", "jsonl"),
        ("train.ndjson", "jsonl"),
        ("train.json", "jsonl"),
        ("TRAIN.CSV", "csv"),
    ],
)
def test_guess_format_from_the_extension(name: str, expected: str) -> None:
    assert guess_format(Path("data") / name) == (expected, True)


def test_guess_format_keeps_a_declared_format() -> None:
    assert guess_format(Path("train.txt"), "tsv") == ("tsv", False)
    assert guess_format(Path("train.csv"), "jsonl") == ("jsonl", False)
    assert FORMATS == ("csv", "tsv", "jsonl")


def test_guess_format_unknown_extension() -> None:
    with pytest.raises(DataError) as caught:
        guess_format(Path("data/train.txt"))
    assert str(caught.value) == (
        "data/train.txt: cannot tell the format from the extension '.txt'; "
        "set data.format to csv, tsv or jsonl"
    )
    with pytest.raises(DataError, match="without an extension"):
        guess_format(Path("data/train"))
    with pytest.raises(DataError, match=r"unknown data\.format 'xlsx'"):
        guess_format(Path("train.csv"), "xlsx")


# -- reading ------------------------------------------------------------------------------------------


def test_csv_quoted_commas_newlines_and_doubled_quotes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train.csv",
        'id,text,label\n1,"one, two",007\n\n2,"first line\nsecond ""quoted"" line",1\n3,  spaced  ,x\n',
    )
    table = read_table(path, "csv", ["text", "label"])
    assert table.num_rows == 3
    assert table.format == "csv" and table.path == path
    assert _values(table) == {
        "text": ["one, two", 'first line\nsecond "quoted" line', "  spaced  "],
        "label": ["007", "1", "x"],
    }
    assert all(isinstance(array, pa.Array) and array.type == pa.string() for array in table.columns.values())
    # rows start on lines 2, 4 (after a blank line; the quoted newline spans 4-5) and 6
    assert [table.location(row) for row in range(3)] == [f"{path}:2", f"{path}:4", f"{path}:6"]
    with pytest.raises(IndexError):
        table.location(3)


def test_tsv_keeps_stray_quotes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "train.tsv",
        'sentence\tlabel\nhe said "hi\t1\n"quoted" start, and comma\t0\nit \'s a "\t1\r\n',
    )
    table = read_table(path, "tsv", ["label", "sentence"])
    assert list(table.columns) == ["label", "sentence"]
    assert _values(table) == {
        "sentence": ['he said "hi', '"quoted" start, and comma', "it 's a \""],
        "label": ["1", "0", "1"],
    }


def test_headerless_tsv_by_index(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "train.tsv", "gj04\t1\t\tour friends won't buy this\ngj04\t0\t*\tthey drank the pub\n"
    )
    table = read_table(path, "tsv", [3, 1])
    assert table.num_rows == 2
    assert _values(table) == {3: ["our friends won't buy this", "they drank the pub"], 1: ["1", "0"]}
    assert table.location(0) == f"{path}:1"  # no header: the first data row is line 1


@pytest.mark.parametrize(("fmt", "content"), [("csv", "text,label\n"), ("tsv", "text\tlabel\n")])
def test_byte_order_mark_in_header(tmp_path: Path, fmt: Format, content: str) -> None:
    separator = "," if fmt == "csv" else "\t"
    path = _write(tmp_path, f"train.{fmt}", BOM + f"{content}héllo{separator}1\n".encode())
    assert _values(read_table(path, fmt, ["text", "label"])) == {"text": ["héllo"], "label": ["1"]}


def test_byte_order_mark_headerless_and_jsonl(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "train.tsv", BOM + b"first\t1\nsecond\t0\n")
    assert _values(read_table(tsv, "tsv", [0])) == {0: ["first", "second"]}
    jsonl = _write(tmp_path, "train.jsonl", BOM + b'{"text": "a", "label": "x"}\n')
    assert _values(read_table(jsonl, "jsonl", ["text", "label"])) == {"text": ["a"], "label": ["x"]}


def test_jsonl_numbers_and_booleans_become_strings(tmp_path: Path) -> None:
    ints = _write(tmp_path, "ints.jsonl", '{"text": "a", "label": 3}\n\n{"text": "b", "label": 0}\n')
    assert _values(read_table(ints, "jsonl", ["text", "label"])) == {"text": ["a", "b"], "label": ["3", "0"]}
    floats = _write(tmp_path, "floats.jsonl", '{"text": "a", "score": 2.5}\n{"text": "b", "score": 4.75}\n')
    assert read_table(floats, "jsonl", ["score"]).columns["score"].to_pylist() == ["2.5", "4.75"]
    bools = _write(tmp_path, "bools.jsonl", '{"text": "a", "ok": true}\n{"text": "b", "ok": false}\n')
    assert read_table(bools, "jsonl", ["ok"]).columns["ok"].to_pylist() == ["true", "false"]


def test_jsonl_mixed_types_and_date_like_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "mixed.jsonl",
        '{"text": "2020-01-01", "label": 1}\n{"text": "b", "label": "neg"}\n{"text": "c", "label": true}\n'
        '{"text": "d", "label": 2.5, "extra": {"nested": [1]}}\n',
    )
    table = read_table(path, "jsonl", ["text", "label"])
    assert _values(table) == {"text": ["2020-01-01", "b", "c", "d"], "label": ["1", "neg", "true", "2.5"]}
    assert all(array.type == pa.string() for array in table.columns.values())


def test_jsonl_allow_null_keeps_nulls(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "predict.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b"}\n{"text": "c", "label": null}\n',
    )
    table = read_table(path, "jsonl", ["text", "label"], allow_null=["label"])
    assert _values(table) == {"text": ["a", "b", "c"], "label": ["x", None, None]}


def test_row_longer_than_a_pyarrow_block(tmp_path: Path) -> None:
    long = "word " * 300_000  # 1.5 MB: more than pyarrow's default block of 1 MiB
    csv_path = _write(tmp_path, "long.csv", f'text,label\n"{long}",1\nshort,0\n')
    assert [len(text) for text in read_table(csv_path, "csv", ["text"]).columns["text"].to_pylist()] == [
        len(long),
        5,
    ]
    jsonl = _write(
        tmp_path, "long.jsonl", json.dumps({"text": long, "label": 1}) + '\n{"text": "s", "label": 0}\n'
    )
    assert read_table(jsonl, "jsonl", ["label"]).columns["label"].to_pylist() == ["1", "0"]


# -- real files -------------------------------------------------------------------------------------


def test_chinese_tsv_round_trips(tmp_path: Path) -> None:
    path = _head(CHNSENTICORP, tmp_path, 40)
    table = read_table(path, "tsv", [0, 1])
    expected = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    assert table.num_rows == 40
    assert table.columns[0].to_pylist() == [text for text, _ in expected]
    assert table.columns[1].to_pylist() == [label for _, label in expected]
    assert table.columns[0][0].as_py().startswith("选择珠江花园的原因")
    assert set(table.columns[1].to_pylist()) == {"positive", "negative"}
    assert table.location(39) == f"{path}:40"


def test_trec_jsonl_round_trips(tmp_path: Path) -> None:
    path = _head(TREC, tmp_path, 50)
    table = read_table(path, "jsonl", ["text", "label", "fine"])
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert table.num_rows == 50
    for key in ("text", "label", "fine"):
        assert table.columns[key].to_pylist() == [row[key] for row in rows]
    assert table.columns["text"][0].as_py() == "How did serfdom develop in and then leave Russia ?"


def test_mrpc_header_with_byte_order_mark(tmp_path: Path) -> None:
    path = _head(MRPC, tmp_path, 30)
    table = read_table(path, "tsv", ["Quality", "#1 String"])
    lines = path.read_bytes().removeprefix(BOM).decode("utf-8").splitlines()
    assert table.num_rows == 29
    assert table.columns["#1 String"].to_pylist() == [line.split("\t")[3] for line in lines[1:]]
    assert set(table.columns["Quality"].to_pylist()) <= {"0", "1"}


# -- errors -----------------------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    assert _error(path, "csv", ["text"]) == f"{path}: file not found"


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \n\t\r\n", BOM + b"\n"])
@pytest.mark.parametrize(("fmt", "columns"), [("csv", ["text"]), ("tsv", [0]), ("jsonl", ["text"])])
def test_empty_file(tmp_path: Path, content: bytes, fmt: Format, columns: list[str | int]) -> None:
    path = _write(tmp_path, f"empty.{fmt}", content)
    assert _error(path, fmt, columns) == f"{path}: file is empty"


@pytest.mark.parametrize(("fmt", "header"), [("csv", "text,label\n"), ("tsv", "text\tlabel\n\n")])
def test_header_only(tmp_path: Path, fmt: Format, header: str) -> None:
    path = _write(tmp_path, f"train.{fmt}", header)
    assert _error(path, fmt, ["text"]) == f"{path}: no examples after the header"


def test_missing_column(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, "train.csv", "text,label\na,1\n")
    assert _error(csv_path, "csv", ["txt", "label"]) == f"{csv_path}: no column 'txt' (columns: text, label)"
    tsv = _write(tmp_path, "train.tsv", "a\t1\nb\t0\n")
    assert _error(tsv, "tsv", [0, 3]) == f"{tsv}: column 3 does not exist; rows have 2 columns"
    jsonl = _write(
        tmp_path, "train.jsonl", '{"text": "a", "label": "x", "fine": "y"}\n{"text": "b", "label": "z"}\n'
    )
    assert _error(jsonl, "jsonl", ["txt"]) == f"{jsonl}: no key 'txt' (keys: text, label, fine)"
    # a key no row has is an error even when rows may lack it
    assert _error(jsonl, "jsonl", ["text", "lable"], allow_null=["lable"]).startswith(
        f"{jsonl}: no key 'lable'"
    )


def test_column_kinds(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "train.tsv", "a\t1\n")
    assert "not a mix" in _error(tsv, "tsv", [0, "label"])
    jsonl = _write(tmp_path, "train.jsonl", '{"text": "a"}\n')
    assert _error(jsonl, "jsonl", [0]) == f"{jsonl}: JSON Lines columns are keys, not indices (got 0)"


def test_jsonl_line_that_is_not_json(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "train.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", label: 2}\n{"text": "c"}\n'
    )
    message = _error(path, "jsonl", ["text"])
    assert message.startswith(f"{path}:3: not valid JSON (")
    assert "column 15" in message


@pytest.mark.parametrize(
    ("line", "found"), [("[1, 2]", "an array"), ("42", "a number"), ('"text"', "a string")]
)
def test_jsonl_line_that_is_not_an_object(tmp_path: Path, line: str, found: str) -> None:
    path = _write(tmp_path, "train.jsonl", '{"text": "a"}\n' + line + "\n")
    assert _error(path, "jsonl", ["text"]) == f"{path}:2: expected a JSON object, found {found}"


def test_jsonl_row_without_a_value(tmp_path: Path) -> None:
    missing = _write(tmp_path, "missing.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b"}\n')
    assert _error(missing, "jsonl", ["text", "label"]) == f"{missing}:3: no value for 'label'"
    null = _write(
        tmp_path,
        "null.jsonl",
        '{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n{"text": null, "label": 3}\n',
    )
    assert _error(null, "jsonl", ["text", "label"]) == f"{null}:3: no value for 'text'"
    all_null = _write(tmp_path, "all_null.jsonl", '{"text": "a", "label": null}\n')
    assert _error(all_null, "jsonl", ["text", "label"]) == f"{all_null}:1: no value for 'label'"


@pytest.mark.parametrize(
    ("fmt", "columns", "content", "line"),
    [
        ("csv", ["text"], b'text,label\nok,1\n"two\nlines",0\nbad \xff\xfe,1\n', 5),
        ("tsv", [0], b"ok\t1\n\nfine\t0\nbad \xc3\x28\t1\n", 4),
        ("jsonl", ["text"], b'{"text": "ok"}\n{"text": "fine"}\n\n{"text": "bad \xff"}\n', 4),
        ("jsonl", ["text", "label"], b'{"text": "ok", "label": 1}\n{"text": "caf\xe9", "label": 2}\n', 2),
    ],
)
def test_not_utf8(tmp_path: Path, fmt: Format, columns: list[str | int], content: bytes, line: int) -> None:
    path = _write(tmp_path, f"train.{fmt}", content)
    assert _error(path, fmt, columns) == f"{path}:{line}: not valid UTF-8"


def test_only_requested_columns_are_decoded(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, "train.csv", b"text,other\nok,caf\xe9\n")
    assert _values(read_table(csv_path, "csv", ["text"])) == {"text": ["ok"]}
    jsonl = _write(tmp_path, "train.jsonl", b'{"text": "ok", "other": "caf\xe9"}\n')
    assert _values(read_table(jsonl, "jsonl", ["text"])) == {"text": ["ok"]}


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, "train.csv", 'text,label\na,1\n"multi\nline, text",0\n\nb,2,extra\n')
    assert _error(csv_path, "csv", ["text"]) == f"{csv_path}:6: expected 2 fields, found 3"
    tsv = _write(tmp_path, "train.tsv", 'a "quote\t1\nb\t0\nno label here\nc\t1\n')
    assert _error(tsv, "tsv", [0, 1]) == f"{tsv}:3: expected 2 fields, found 1"
    unclosed = _write(tmp_path, "unclosed.csv", 'text,label\n"never closed,1\nb,0\n')
    assert _error(unclosed, "csv", ["text"]) == f"{unclosed}:2: expected 2 fields, found 1"


@pytest.mark.parametrize(
    ("content", "line", "found"),
    [
        ('{"text": {"a": 1}, "label": "x"}\n', 1, "an object"),  # every text an object
        ('{"text": "a", "label": "x"}\n{"text": {"a": 1}, "label": "x"}\n', 2, "an object"),
        ('{"text": "a", "label": 1}\n\n{"text": ["a", "b"], "label": 2}\n', 3, "an array"),
    ],
)
def test_jsonl_object_or_array_value(tmp_path: Path, content: str, line: int, found: str) -> None:
    path = _write(tmp_path, "train.jsonl", content)
    assert _error(path, "jsonl", ["text", "label"]) == (
        f"{path}:{line}: 'text' must be a string or number, found {found}"
    )


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    directory = tmp_path / "dir.csv"
    directory.mkdir()
    assert _error(directory, "csv", ["text"]) == f"{directory}: is a directory, not a data file"
