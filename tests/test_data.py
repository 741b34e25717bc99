"""Readers, tokenizer, tokenised-dataset cache and batching, on real GLUE files and small bad ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoo_core.backend import Batch
from zoo_core.data import (
    TokenizedDataset,
    WordPieceTokenizer,
    collate,
    default_cache_dir,
    eval_batches,
    load_dataset,
    load_tokenizer,
    read_split,
    read_text_lines,
    read_unlabelled,
    tokenize_examples,
    train_batches,
)
from zoo_core.errors import DataError
from zoo_core.models.catalog import BUNDLED_VOCAB
from zoo_core.tasks import get_task

GLUE = Path(__file__).resolve().parents[1] / "data" / "glue"


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(BUNDLED_VOCAB)


@pytest.fixture(scope="module")
def sst2_train(tokenizer: WordPieceTokenizer) -> TokenizedDataset:
    return load_dataset(get_task("sst2"), GLUE / "SST-2", "train", tokenizer, 128, cache_dir=None)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    ("task", "split", "rows"),
    [
        ("SST-2", "train", 67349), ("SST-2", "dev", 872),
        ("CoLA", "train", 8551), ("CoLA", "dev", 1043),
        # the README says 3,668 but this copy of train.tsv holds 3,667 data rows (3,668 lines with header)
        ("MRPC", "train", 3667), ("MRPC", "dev", 408),
        ("RTE", "train", 2490), ("RTE", "dev", 277),
        ("STS-B", "train", 5749), ("STS-B", "dev", 1500),
        ("WNLI", "train", 635), ("WNLI", "dev", 71),
    ],
)  # fmt: skip
def test_real_glue_files_read_with_expected_row_counts(task: str, split: str, rows: int) -> None:
    t = get_task(task)
    examples = read_split(t, GLUE / t.dir_name, split)
    assert len(examples.text_a) == rows and examples.labels is not None and len(examples.labels) == rows
    assert (examples.text_b is None) == (t.split(split).text_b is None)
    if examples.text_b is not None:
        assert len(examples.text_b) == rows
    if t.is_regression:
        assert (
            examples.labels.dtype == np.float32
            and 0.0 <= examples.labels.min() <= examples.labels.max() <= 5.0
        )
    else:
        assert examples.labels.dtype == np.int64 and set(np.unique(examples.labels)) == {0, 1}
    assert all(text.strip() for text in examples.text_a)


def test_real_file_contents() -> None:
    cola = read_split(get_task("cola"), GLUE / "CoLA", "dev")  # no header, no trailing newline
    assert cola.text_a[0] == "The sailors rode the breeze clear of the rocks."
    assert cola.labels is not None and cola.labels[0] == 1
    mrpc = read_split(get_task("mrpc"), GLUE / "MRPC", "dev")  # header starts with a BOM
    assert mrpc.text_b is not None and mrpc.text_b[0].startswith('" The foodservice pie')  # quotes kept
    rte = read_split(get_task("rte"), GLUE / "RTE", "train")
    assert rte.labels is not None and rte.labels[0] == 1  # "not_entailment"
    assert rte.source == str(GLUE / "RTE" / "train.tsv")


def test_bom_crlf_blank_lines_and_missing_final_newline(tmp_path: Path) -> None:
    write(tmp_path / "dev.tsv", '\ufeffsentence\tlabel\r\nit\'s "good"\t1\r\n\r\n  \nbad .\t0')
    examples = read_split(get_task("sst2"), tmp_path, "dev")
    assert examples.text_a == ['it\'s "good"', "bad ."]
    assert examples.labels is not None and examples.labels.tolist() == [1, 0]


def test_extra_columns_and_columns_found_by_header_name(tmp_path: Path) -> None:
    write(tmp_path / "train.tsv", "label\textra\tsentence\n0\tx\tfirst\textra\n")
    examples = read_split(get_task("sst2"), tmp_path, "train")
    assert examples.text_a == ["first"] and examples.labels is not None and examples.labels.tolist() == [0]


def test_missing_data_directory(tmp_path: Path) -> None:
    missing = tmp_path / "SST-3"
    with pytest.raises(DataError) as info:
        read_split(get_task("sst2"), missing, "train")
    assert (
        str(info.value)
        == f"data directory {missing} does not exist (task sst2 expects train.tsv, dev.tsv there)"
    )
    with pytest.raises(DataError, match=r"expects train\.tsv, dev_matched\.tsv, dev_mismatched\.tsv there"):
        read_split(get_task("mnli"), missing, "dev")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dev\.tsv: file not found"):
        read_split(get_task("sst2"), tmp_path, "dev")


def test_missing_header_column(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "text\tlabel\nhello\t1\n")
    with pytest.raises(DataError) as info:
        read_split(get_task("sst2"), tmp_path, "dev")
    assert str(info.value) == f"{path}:1: header has no column 'sentence' (columns: text, label)"


def test_row_with_too_few_columns_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\n\nno label here\n")
    with pytest.raises(DataError) as info:
        read_split(get_task("sst2"), tmp_path, "dev")
    assert str(info.value) == f"{path}:4: expected at least 2 tab-separated columns, found 1"


def test_headerless_cola_row_with_too_few_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "gj04\t1\t\tFine.\ngj04\t0\t*\n")
    with pytest.raises(DataError, match=rf"^{path}:2: expected at least 4 tab-separated columns, found 3$"):
        read_split(get_task("cola"), tmp_path, "train")


def test_label_outside_the_label_set(tmp_path: Path) -> None:
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nodd\t2\n")
    with pytest.raises(DataError) as info:
        read_split(get_task("sst2"), tmp_path, "dev")
    assert str(info.value) == f"{path}:3: label '2' is not one of 0, 1 for task sst2"
    write(tmp_path / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(
        DataError, match=r"train\.tsv:2: label 'neutral' is not one of entailment, not_entailment"
    ):
        read_split(get_task("rte"), tmp_path, "train")


def test_unparsable_regression_score(tmp_path: Path) -> None:
    write(tmp_path / "dev.tsv", "sentence1\tsentence2\tscore\na\tb\t4.2\nc\td\tfive\n")
    with pytest.raises(DataError, match=r"dev\.tsv:3: score 'five' is not a finite number for task stsb"):
        read_split(get_task("stsb"), tmp_path, "dev")


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "dev.tsv").write_bytes(b"sentence\tlabel\nok\t1\nbad \xff\t0\n")
    with pytest.raises(DataError, match=r"dev\.tsv:3: not valid UTF-8"):
        read_split(get_task("sst2"), tmp_path, "dev")


def test_unlabelled_test_split_has_no_labels(tmp_path: Path) -> None:
    write(tmp_path / "test.tsv", "index\tsentence\n0\tfirst one\n1\tsecond\n")
    examples = read_split(get_task("cola"), tmp_path, "test")
    assert examples.text_a == ["first one", "second"] and examples.labels is None


def test_read_unlabelled_uses_a_glue_header(tmp_path: Path) -> None:
    path = write(tmp_path / "test.tsv", "index\tsentence\n0\tfirst one\n1\tsecond\n")
    examples = read_unlabelled(get_task("sst2"), path)
    assert examples.text_a == ["first one", "second"] and examples.labels is None
    path = write(tmp_path / "pairs.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    examples = read_unlabelled(get_task("rte"), path)
    assert (examples.text_a, examples.text_b, examples.labels) == (["a"], ["b"], None)


def test_read_unlabelled_plain_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", "\ufeffa great film\n\nawful .\n")
    examples = read_unlabelled(get_task("sst2"), path)  # a blank line keeps its place
    assert examples.text_a == ["a great film", "", "awful ."] and examples.text_b is None
    path = write(tmp_path / "pairs.txt", "a man sings\ta person sings\nit rains\tit is dry")
    examples = read_unlabelled(get_task("stsb"), path)
    assert examples.text_a == ["a man sings", "it rains"] and examples.text_b == [
        "a person sings",
        "it is dry",
    ]


def test_read_unlabelled_pair_line_without_tab(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.txt", "a\tb\njust one sentence\n")
    with pytest.raises(DataError, match=rf"^{path}:2: expected text_a<TAB>text_b for pair task rte"):
        read_unlabelled(get_task("rte"), path)


def test_read_text_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "lines.txt", "\ufeff first \n\n\t\nsecond\r\n")
    assert read_text_lines(path) == ["first", "second"]
    with pytest.raises(DataError, match="file not found"):
        read_text_lines(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- tokenizer


def test_single_sentence(tokenizer: WordPieceTokenizer) -> None:
    ids, type_ids = tokenizer.encode_batch(["Hello, World!"], None, max_length=16)
    # [CLS] hello , world ! [SEP] in bert-base-uncased
    assert ids[0].tolist() == [101, 7592, 1010, 2088, 999, 102]
    assert ids[0].dtype == np.int32 and type_ids[0].tolist() == [0] * 6
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.vocab_size) == (
        0,
        101,
        102,
        30522,
    )


def test_pair_with_longest_first_truncation(tokenizer: WordPieceTokenizer) -> None:
    long_a = "one two three four five six seven eight nine ten"
    ids, type_ids = tokenizer.encode_batch([long_a, "a b"], ["yes no", long_a], max_length=9)
    first, second = (x.tolist() for x in ids)
    assert len(first) == len(second) == 9
    # 9 − 3 specials = 6 tokens: "yes no" keeps its 2, the long side keeps 4
    assert first == [101, 2028, 2048, 2093, 2176, 102, 2748, 2053, 102]
    assert type_ids[0].tolist() == [0] * 6 + [1] * 3
    assert second[:4] == [101, 1037, 1038, 102] and second[-1] == 102
    short_ids, _ = tokenizer.encode_batch(["a b"], ["c"], max_length=128)
    assert short_ids[0].tolist() == [101, 1037, 1038, 102, 1039, 102]


def test_empty_batch_and_too_small_max_length(tokenizer: WordPieceTokenizer) -> None:
    assert tokenizer.encode_batch([], None, 8) == ([], [])
    with pytest.raises(DataError, match="at least 3"):
        tokenizer.encode_batch(["a"], ["b"], 2)


@pytest.mark.parametrize(("task", "max_length"), [("SST-2", 128), ("RTE", 128), ("MRPC", 48), ("STS-B", 24)])
def test_matches_transformers_bert_tokenizer_fast(
    tokenizer: WordPieceTokenizer, task: str, max_length: int
) -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertTokenizerFast(str(BUNDLED_VOCAB), do_lower_case=True)
    t = get_task(task)
    examples = read_split(t, GLUE / t.dir_name, "dev")
    ids, type_ids = tokenizer.encode_batch(examples.text_a, examples.text_b, max_length)
    args = (examples.text_a,) if examples.text_b is None else (examples.text_a, examples.text_b)
    expected = reference(*args, truncation="longest_first", max_length=max_length)
    assert [x.tolist() for x in ids] == expected["input_ids"]
    assert [x.tolist() for x in type_ids] == expected["token_type_ids"]


def test_missing_or_empty_vocab(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"vocab\.txt: vocabulary file not found"):
        WordPieceTokenizer(tmp_path / "vocab.txt")
    write(tmp_path / "vocab.txt", "")
    with pytest.raises(DataError, match=r"vocab\.txt: vocabulary file is empty"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_bytes(b"[PAD]\n\xff\n")
    with pytest.raises(DataError, match=r"vocab\.txt: unreadable vocabulary"):
        load_tokenizer(tmp_path)
    write(tmp_path / "vocab.txt", "[PAD]\n[UNK]\nhello\n")
    with pytest.raises(DataError, match=r"lacks special tokens \[CLS\], \[SEP\]"):
        load_tokenizer(tmp_path)


def test_load_tokenizer_reads_do_lower_case(tmp_path: Path, tokenizer: WordPieceTokenizer) -> None:
    write(tmp_path / "vocab.txt", BUNDLED_VOCAB.read_text(encoding="utf-8"))
    assert load_tokenizer(tmp_path).lowercase is True
    write(tmp_path / "tokenizer_config.json", '{"do_lower_case": false}')
    cased = load_tokenizer(tmp_path)
    assert cased.lowercase is False
    assert cased.fingerprint != tokenizer.fingerprint
    assert load_tokenizer(tmp_path).fingerprint == cased.fingerprint
    # the uncased vocabulary has no "Hello": cased tokenisation differs
    assert (
        cased.encode_batch(["Hello"], None, 8)[0][0].tolist()
        != tokenizer.encode_batch(["Hello"], None, 8)[0][0].tolist()
    )
    write(tmp_path / "tokenizer_config.json", "{not json")
    with pytest.raises(DataError, match=r"tokenizer_config\.json: not valid JSON"):
        load_tokenizer(tmp_path)


# --------------------------------------------------------------------------- dataset + cache


def test_tokenize_examples_layout(tokenizer: WordPieceTokenizer) -> None:
    examples = read_split(get_task("rte"), GLUE / "RTE", "dev")
    dataset = tokenize_examples(examples, tokenizer, 64)
    ids, type_ids = tokenizer.encode_batch(
        examples.text_a[:5], examples.text_b[:5] if examples.text_b else None, 64
    )
    assert len(dataset) == 277 and dataset.offsets.shape == (278,) and dataset.offsets.dtype == np.int64
    assert dataset.ids.dtype == np.int32 and dataset.ids.shape == dataset.type_ids.shape
    for i in range(5):
        start, end = dataset.offsets[i], dataset.offsets[i + 1]
        assert dataset.ids[start:end].tolist() == ids[i].tolist()
        assert dataset.type_ids[start:end].tolist() == type_ids[i].tolist()
    assert dataset.lengths.max() == 64 and dataset.labels is examples.labels


def test_cache_hit_does_not_retokenise(
    tmp_path: Path, tokenizer: WordPieceTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, cache = get_task("sst2"), tmp_path / "cache"
    first = load_dataset(task, GLUE / "SST-2", "dev", tokenizer, 64, cache)
    assert len(list(cache.glob("*.npz"))) == 1 and not list(cache.glob("*.tmp"))

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("re-tokenised despite a cache hit")

    monkeypatch.setattr(tokenizer, "encode_batch", fail)
    second = load_dataset(task, GLUE / "SST-2", "dev", tokenizer, 64, cache)
    for name in ("ids", "type_ids", "offsets", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert second.source == str(GLUE / "SST-2" / "dev.tsv")
    with pytest.raises(AssertionError, match="re-tokenised"):  # another length is another cache entry
        load_dataset(task, GLUE / "SST-2", "dev", tokenizer, 32, cache)


def test_cache_invalidated_when_the_file_changes(tmp_path: Path, tokenizer: WordPieceTokenizer) -> None:
    task, cache = get_task("sst2"), tmp_path / "cache"
    data = write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\ngood film\t1\n")
    assert len(load_dataset(task, data.parent, "dev", tokenizer, 32, cache)) == 1
    write(data, "sentence\tlabel\ngood film\t1\nbad film\t0\n")
    changed = load_dataset(task, data.parent, "dev", tokenizer, 32, cache)
    assert len(changed) == 2 and changed.labels is not None and changed.labels.tolist() == [1, 0]
    assert len(list(cache.glob("*.npz"))) == 2


def test_corrupt_cache_is_rebuilt(tmp_path: Path, tokenizer: WordPieceTokenizer) -> None:
    task, cache = get_task("wnli"), tmp_path / "cache"
    expected = load_dataset(task, GLUE / "WNLI", "dev", tokenizer, 64, cache)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(b"not a zip file")
    rebuilt = load_dataset(task, GLUE / "WNLI", "dev", tokenizer, 64, cache)
    np.testing.assert_array_equal(rebuilt.ids, expected.ids)
    assert cache_file.read_bytes()[:2] == b"PK"  # rewritten as a valid npz


def test_no_cache_dir_writes_nothing(
    tmp_path: Path, tokenizer: WordPieceTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dataset = load_dataset(get_task("wnli"), GLUE / "WNLI", "dev", tokenizer, 64, None)
    assert len(dataset) == 71 and list(tmp_path.iterdir()) == []


def test_load_dataset_missing_file_is_a_data_error(tmp_path: Path, tokenizer: WordPieceTokenizer) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(get_task("sst2"), tmp_path / "nope", "dev", tokenizer, 64, tmp_path / "cache")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "zc"))
    assert default_cache_dir() == tmp_path / "zc"
    monkeypatch.delenv("ZOO_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "zoo"


# --------------------------------------------------------------------------- batching


def tiny_dataset() -> TokenizedDataset:
    # three examples of lengths 3, 1, 2
    return TokenizedDataset(
        ids=np.array([101, 7, 102, 101, 101, 102], dtype=np.int32),
        type_ids=np.array([0, 0, 0, 0, 0, 1], dtype=np.int8),
        offsets=np.array([0, 3, 4, 6]),
        labels=np.array([1, 0, 1]),
        source="tiny",
    )


def test_collate_pads_to_the_longest_in_the_batch() -> None:
    batch = collate(tiny_dataset(), np.array([2, 1]))
    assert isinstance(batch, Batch)
    assert batch.input_ids.tolist() == [[101, 102], [101, 0]]
    assert batch.token_type_ids.tolist() == [[0, 1], [0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1], [1, 0]]
    assert all(a.dtype == np.int64 for a in (batch.input_ids, batch.token_type_ids, batch.attention_mask))
    assert batch.labels is not None and batch.labels.tolist() == [1, 0]
    assert batch.indices is not None and batch.indices.tolist() == [2, 1] and batch.num_tokens == 3
    full = collate(tiny_dataset(), np.array([0, 1, 2]))
    assert full.input_ids.tolist() == [[101, 7, 102], [101, 0, 0], [101, 102, 0]]


def test_collate_without_labels(sst2_train: TokenizedDataset) -> None:
    unlabelled = TokenizedDataset(sst2_train.ids, sst2_train.type_ids, sst2_train.offsets, None, "x")
    batch = collate(unlabelled, np.array([5, 9, 100]))
    assert batch.labels is None and batch.input_ids.shape == (3, int(sst2_train.lengths[[5, 9, 100]].max()))
    for row, i in enumerate([5, 9, 100]):
        n = int(sst2_train.lengths[i])
        assert (
            batch.input_ids[row, :n].tolist()
            == sst2_train.ids[sst2_train.offsets[i] : sst2_train.offsets[i + 1]].tolist()
        )
        assert not batch.input_ids[row, n:].any()


def test_train_batches_are_deterministic_and_change_per_epoch() -> None:
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    a = train_batches(lengths, 16, seed=7, epoch=0)
    b = train_batches(lengths, 16, seed=7, epoch=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = train_batches(lengths, 16, seed=7, epoch=1)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_train_batches_cover_every_index_once() -> None:
    lengths = np.random.default_rng(1).integers(3, 60, 1003)
    batches = train_batches(lengths, 16, seed=0, epoch=3, bucket_batches=5)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert sorted(len(b) for b in batches)[:2] == [1003 % 16, 16]  # one short batch
    dropped = train_batches(lengths, 16, seed=0, epoch=3, bucket_batches=5, drop_last=True)
    assert len(dropped) == 1003 // 16 and all(len(b) == 16 for b in dropped)


def test_train_batches_shard_global_batches_across_ranks() -> None:
    lengths = np.random.default_rng(2).integers(3, 60, 1000)
    world = 4
    global_batches = train_batches(lengths, 32, seed=5, epoch=0)  # world 1, batch 32 = 4 × 8
    shards = [train_batches(lengths, 8, seed=5, epoch=0, rank=r, world_size=world) for r in range(world)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(global_batches)
    for step, global_batch in enumerate(global_batches):
        union = np.concatenate([shards[r][step] for r in range(world)])
        assert sorted(union.tolist()) == sorted(global_batch.tolist())
        sizes = [len(shards[r][step]) for r in range(world)]
        assert max(sizes) - min(sizes) <= 1
    assert sorted(np.concatenate([b for s in shards for b in s]).tolist()) == list(range(1000))


def test_too_short_final_global_batch_is_dropped_on_every_rank() -> None:
    lengths = np.arange(3, 3 + 66)  # 66 = 2 global batches of 32, then 2 examples for 4 ranks
    shards = [train_batches(lengths, 8, seed=0, epoch=0, rank=r, world_size=4) for r in range(4)]
    assert [len(s) for s in shards] == [2, 2, 2, 2]
    assert sum(len(b) for s in shards for b in s) == 64


def test_bucketing_pads_far_less_than_random_batches(sst2_train: TokenizedDataset) -> None:
    lengths = sst2_train.lengths
    real = int(lengths.sum())

    def padded(batches: list[np.ndarray]) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    bucketed = padded(train_batches(lengths, 32, seed=0, epoch=0))
    shuffled = np.random.default_rng(0).permutation(len(lengths))
    random = padded([shuffled[i : i + 32] for i in range(0, len(shuffled), 32)])
    assert bucketed <= 1.25 * real, bucketed / real
    assert random >= 2 * real  # SST-2 mixes phrases and long sentences
    batch = train_batches(lengths, 32, seed=0, epoch=0)[0]
    assert len(batch) == 32


def test_eval_batches_sorted_longest_first() -> None:
    lengths = np.array([5, 9, 1, 9, 3, 7, 2])
    batches = eval_batches(lengths, 3)
    assert [b.tolist() for b in batches] == [[1, 3, 5], [0, 4, 6], [2]]
    assert eval_batches(np.array([], dtype=np.int64), 4) == []
