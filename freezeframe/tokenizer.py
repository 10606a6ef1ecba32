"""Tokenizers behind one small interface: ``encode(texts, max_length)`` and ``save(directory)``.

:class:`FastTokenizer` runs a BERT model's ``tokenizer.json`` (or a bare ``vocab.txt``) with the ``tokenizers``
library alone, so the default model never imports transformers; :class:`SubwordTokenizer` wraps any tokenizer
transformers loads. Both count the texts they truncate.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from freezeframe import bert
from freezeframe.errors import FreezeframeError
from freezeframe.layouts import TOKENIZER_FILES

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Control characters other than tabs and line breaks. Both tokenizers read them as spaces, as training data
is cleaned, so that ``predict`` and ``evaluate`` label a text alike (BERT's own normaliser would drop them,
joining the words on either side)."""


def _spaced(texts: list[str]) -> list[str]:
    return [CONTROL_CHARS.sub(" ", text) for text in texts]


TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                          "sentencepiece.bpe.model")
"""Files one of which a tokenizer needs; without any, transformers builds an empty tokenizer that maps every word to [UNK]."""


def check_tokenizer_files(source: str) -> None:
    """Refuse a local model directory that has no tokenizer vocabulary (a hub id is checked by transformers)."""
    directory = Path(source)
    if directory.is_dir() and not any((directory / name).is_file() for name in TOKENIZER_VOCABULARIES):
        raise FreezeframeError(f"{directory} has no tokenizer (no tokenizer.json or vocab.txt); "
                               "restore those files or retrain the model")


def _truncate_long(full: list[list[int]], texts: list[str], max_length: int,
                   encode_truncated: Callable[[list[str]], list[list[int]]]) -> tuple[list[list[int]], int]:
    """``full`` (each text's ids without truncation) with the texts over ``max_length`` encoded again by the
    tokenizer's own truncation (it keeps the special tokens); also how many there were."""
    long = [i for i, ids in enumerate(full) if len(ids) > max_length]
    if long:
        full = list(full)
        for i, ids in zip(long, encode_truncated([texts[i] for i in long]), strict=True):
            full[i] = ids
    return full, len(long)


def _token(value: str | dict | None, default: str) -> str:
    """A special token as ``tokenizer_config.json`` writes it: a string, or an added-token dict."""
    return (value["content"] if isinstance(value, dict) else value) or default


def wordpiece_from_vocab(vocab_file: Path, settings: dict):
    """A ``tokenizers.Tokenizer`` for a bare BERT ``vocab.txt``: the pipeline transformers' ``BertConverter``
    builds (BERT normaliser and pre-tokenizer, WordPiece, ``[CLS] text [SEP]``), with the casing, accent and
    special-token settings of ``tokenizer_config.json``."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    try:
        text = vocab_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {vocab_file}: {err}") from None
    lines = text.split("\n")[: -1 if text.endswith("\n") else None] if text else []  # as transformers reads it
    vocab = {token: index for index, token in enumerate(lines)}
    specials = {name: _token(settings.get(f"{name}_token"), f"[{name.upper()}]") for name in ("unk", "sep", "pad", "cls", "mask")}
    absent = [token for token in (specials["unk"], specials["cls"], specials["sep"]) if token not in vocab]
    if absent:
        raise ValueError(f"{vocab_file} lacks the special token {absent[0]}")
    tokenizer = Tokenizer(WordPiece(vocab, unk_token=specials["unk"], max_input_chars_per_word=100))
    lowercase = settings.get("do_lower_case", True)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"), lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = specials["cls"], specials["sep"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens([AddedToken(t, normalized=False) for t in specials.values() if t in vocab])
    return tokenizer


def record_max_length(directory: Path, max_length: int) -> None:
    """Set ``model_max_length`` in a saved tokenizer's ``tokenizer_config.json`` to the length the model was
    trained at (the pretrained encoder's file says what its positions allow, e.g. 512), so that transformers'
    tokenizer, asked to truncate, cuts where freezeframe does; and the same length in ``tokenizer.json``'s
    own truncation and fixed padding (all-MiniLM-L6-v2's say 128), which the ``tokenizers`` library applies
    when it reads that file alone."""
    path = Path(directory) / "tokenizer_config.json"
    settings = bert.read_json(path)
    settings["model_max_length"] = max_length
    _write_json(path, settings)
    path = Path(directory) / "tokenizer.json"
    pipeline = bert.read_json(path)
    truncation, padding = pipeline.get("truncation"), pipeline.get("padding")
    lengths = [(truncation, "max_length")] if isinstance(truncation, dict) else []
    if isinstance(padding, dict) and isinstance(padding.get("strategy"), dict) and "Fixed" in padding["strategy"]:
        lengths.append((padding["strategy"], "Fixed"))
    if any(setting[key] != max_length for setting, key in lengths):
        for setting, key in lengths:
            setting[key] = max_length
        _write_json(path, pipeline)


def _write_json(path: Path, value: dict) -> None:
    """Write a tokenizer settings file as transformers writes it (indented, characters as they are)."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class SubwordTokenizer:
    """A Hugging Face tokenizer behind the small interface freezeframe's models share.

    Args:
        tokenizer: a ``PreTrainedTokenizer(Fast)``.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
        """Token ids per text (with special tokens, truncated to ``max_length``) and how many were cut."""
        if not texts:
            return [], 0
        texts = _spaced(texts)
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return _truncate_long(full, texts, max_length,
                              lambda long: self.tokenizer(long, truncation=True, max_length=max_length)["input_ids"])

    @property
    def vocab_size(self) -> int:
        """How many token ids the tokenizer can produce (added tokens included)."""
        return len(self.tokenizer)

    def save(self, directory: Path) -> None:
        self.tokenizer.save_pretrained(directory)


class FastTokenizer:
    """The same interface over the ``tokenizers`` library alone (importing transformers for it would cost
    seconds): it reads ``tokenizer.json``, the file transformers' fast tokenizers run, or builds from a bare
    ``vocab.txt`` the WordPiece tokenizer that transformers builds from it.

    Args:
        directory: the model directory; ``save`` copies its tokenizer files.
    """

    def __init__(self, directory: Path) -> None:
        from tokenizers import Tokenizer

        self.directory = directory
        settings = bert.read_json(directory / "tokenizer_config.json")
        if (directory / "tokenizer.json").is_file():
            try:
                self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
            except Exception as err:  # noqa: BLE001 - the Rust library raises plain Exceptions
                raise ValueError(f"cannot read {directory / 'tokenizer.json'}: {err}") from None
        else:
            self.tokenizer = wordpiece_from_vocab(directory / "vocab.txt", settings)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        pad_id = self.tokenizer.token_to_id(_token(settings.get("pad_token"), "[PAD]"))
        self.pad_id = pad_id if pad_id is not None else 0

    def encode(self, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
        """Token ids per text (with special tokens, truncated to ``max_length``) and how many were cut."""
        if not texts:
            return [], 0
        texts = _spaced(texts)
        full = [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]
        return _truncate_long(full, texts, max_length, self._encode_truncated(max_length))

    @property
    def vocab_size(self) -> int:
        """How many token ids the tokenizer can produce (added tokens included)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _encode_truncated(self, max_length: int) -> Callable[[list[str]], list[list[int]]]:
        def encode(long: list[str]) -> list[list[int]]:
            self.tokenizer.enable_truncation(max_length)
            try:
                return [e.ids for e in self.tokenizer.encode_batch(long, add_special_tokens=True)]
            finally:
                self.tokenizer.no_truncation()

        return encode

    def save(self, directory: Path) -> None:
        for name in TOKENIZER_FILES:
            if (self.directory / name).is_file():
                shutil.copyfile(self.directory / name, directory / name)
        settings_file = Path(directory) / "tokenizer_config.json"
        settings = bert.read_json(settings_file)
        if "tokenizer_class" not in settings:
            # Without it transformers picks the tokenizer by model type, and a mean-pooled model's type
            # (freezeframe_bert) names none: a bare vocab.txt (TinyBERT's download) would not load in pipeline().
            # This module runs only BERT's WordPiece, which transformers' BertTokenizer reads with these defaults.
            settings["tokenizer_class"] = "BertTokenizer"
            _write_json(settings_file, settings)
