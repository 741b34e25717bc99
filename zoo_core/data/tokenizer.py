"""BERT WordPiece tokenisation on top of the Rust ``tokenizers`` library.

Output matches Hugging Face's ``BertTokenizerFast`` built from the same vocabulary
(the default tokenizer of ``transformers``' GLUE examples), truncation included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from tokenizers import BertWordPieceTokenizer
from tokenizers.models import WordPiece

from zoo_core.errors import DataError
from zoo_core.files import check_fields, load_json

#: the special tokens a BERT vocabulary must contain
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class WordPieceTokenizer:
    """A BERT tokenizer: normalise (optionally lowercase), split, WordPiece, add [CLS]/[SEP].

    Attributes ``vocab_size``, ``pad_id``, ``cls_id`` and ``sep_id`` describe the
    vocabulary; :attr:`fingerprint` identifies it (with the lowercase flag) for caches.
    """

    def __init__(self, vocab_path: Path, lowercase: bool = True) -> None:
        self.vocab_path = Path(vocab_path)
        self.lowercase = lowercase
        if not self.vocab_path.is_file():
            raise DataError(f"{self.vocab_path}: vocabulary file not found")
        self._vocab_bytes = self.vocab_path.read_bytes()
        if not self._vocab_bytes.strip():
            raise DataError(f"{self.vocab_path}: vocabulary file is empty")
        try:
            vocab = WordPiece.read_file(str(self.vocab_path))
        except Exception as exc:  # the Rust library raises a bare Exception
            raise DataError(f"{self.vocab_path}: unreadable vocabulary ({exc})") from None
        missing = [token for token in SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise DataError(f"{self.vocab_path}: vocabulary lacks special tokens {', '.join(missing)}")
        # strip_accents=None follows ``lowercase``, exactly as BertTokenizerFast does
        self._tokenizer = BertWordPieceTokenizer(
            vocab, lowercase=lowercase, clean_text=True, handle_chinese_chars=True
        )
        self.vocab_size: int = self._tokenizer.get_vocab_size()
        self.pad_id: int = self._id("[PAD]")
        self.cls_id: int = self._id("[CLS]")
        self.sep_id: int = self._id("[SEP]")

    def _id(self, token: str) -> int:
        """The id of a special token known to be in the vocabulary."""
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:  # pragma: no cover - checked in __init__
            raise DataError(f"{self.vocab_path}: vocabulary lacks {token}")
        return int(token_id)

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest of the vocabulary bytes and the lowercase flag."""
        digest = hashlib.sha256(self._vocab_bytes)
        digest.update(b"\0lowercase=" + (b"1" if self.lowercase else b"0"))
        return digest.hexdigest()

    def encode_batch(
        self, text_a: list[str], text_b: list[str] | None, max_length: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Token ids and token type ids (int32) of every example, ``[CLS] a [SEP] (b [SEP])``.

        Sequences longer than ``max_length`` are truncated, pairs by ``longest_first``
        (tokens are removed from the longer side).
        """
        minimum = 3 if text_b is not None else 2
        if max_length < minimum:
            raise DataError(f"max_seq_length must be at least {minimum} to hold the special tokens")
        if text_b is not None and len(text_b) != len(text_a):
            raise ValueError(f"text_a has {len(text_a)} entries but text_b has {len(text_b)}")
        if not text_a:
            return [], []
        self._tokenizer.enable_truncation(max_length, strategy="longest_first")
        inputs = list(zip(text_a, text_b, strict=True)) if text_b is not None else list(text_a)
        encodings = self._tokenizer.encode_batch(inputs)
        ids = [np.asarray(e.ids, dtype=np.int32) for e in encodings]
        type_ids = [np.asarray(e.type_ids, dtype=np.int32) for e in encodings]
        return ids, type_ids

    def __repr__(self) -> str:
        return f"WordPieceTokenizer({str(self.vocab_path)!r}, lowercase={self.lowercase})"


def load_tokenizer(model_dir: Path) -> WordPieceTokenizer:
    """The tokenizer of a Hugging Face-style model directory (``vocab.txt``).

    Lowercasing follows ``tokenizer_config.json``'s ``do_lower_case`` when present,
    and defaults to True.
    """
    model_dir = Path(model_dir)
    lowercase = True
    config_path = model_dir / "tokenizer_config.json"
    if config_path.exists():
        config = load_json(config_path, error=DataError)
        check_fields(config, {"do_lower_case": bool}, config_path, error=DataError)
        lowercase = config.get("do_lower_case", True)
    return WordPieceTokenizer(model_dir / "vocab.txt", lowercase=lowercase)
