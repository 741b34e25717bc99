"""GLUE data: readers, WordPiece tokenisation, cached tokenised datasets and batching."""

from zoo_core.data.batching import collate, eval_batches, train_batches
from zoo_core.data.dataset import TokenizedDataset, default_cache_dir, load_dataset, tokenize_examples
from zoo_core.data.readers import Examples, read_split, read_text_lines, read_unlabelled
from zoo_core.data.tokenizer import WordPieceTokenizer, load_tokenizer

__all__ = [
    "Examples",
    "TokenizedDataset",
    "WordPieceTokenizer",
    "collate",
    "default_cache_dir",
    "eval_batches",
    "load_dataset",
    "load_tokenizer",
    "read_split",
    "read_text_lines",
    "read_unlabelled",
    "tokenize_examples",
    "train_batches",
]
