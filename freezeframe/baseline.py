"""The from-scratch baseline: a word tokenizer, a frequency vocabulary, and an embedding bag.

The model is the seed notebooks' idea kept as it was: word embeddings averaged over the real
(unpadded) words of a text, then a small classifier. Nothing is pretrained; the vocabulary and
the embeddings come from the training texts alone.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from itertools import pairwise
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from freezeframe.bert import masked_mean
from freezeframe.config import BASELINE_DEFAULTS, ModelConfig
from freezeframe.errors import FreezeframeError
from freezeframe.layouts import WORD_TOKENIZER_FILE

PAD, UNK = "<PAD>", "<UNK>"
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = WORD_TOKENIZER_FILE
"""The word tokenizer's version, next to ``vocab.txt``; a baseline without it is version 1."""
CONFIG_FILE = "baseline_config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_VERSION = 2
"""The version a newly trained baseline splits words with (see ``split_words``)."""
WORD_PATTERN = r"[a-z0-9]+(?:'[a-z]+)?"
"""Version 1 (baselines saved without ``word_tokenizer.json``): ASCII letters and digits, with an optional
apostrophe suffix (``don't``, ``film's``); every other letter cuts or drops a word."""
_WORDS = re.compile(WORD_PATTERN)
_CJK = "\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
"""Han ideographs and kana: written without spaces, so each character is a word of its own."""
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})
_INSIDE_WORDS = re.compile("[\u00ad\u200c\u200d\u2060\ufeff]")
"""Soft hyphen, zero-width (non-)joiners, word joiner, BOM: invisible marks inside a word, which must not cut it
(a zero-width space stays a space: Thai and Khmer text use it between words)."""


@cache
def _unicode_words() -> re.Pattern:
    """Version 2: a word in any script, as version 1 reads ASCII (letters and digits, an optional apostrophe
    suffix of letters); combining marks (Arabic vowels, Devanagari vowel signs) stay inside their word, and a
    Han or kana character is a word alone. Built on first use: finding the combining marks takes 0.2 s."""
    marks = [i for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("M")]
    spans, start = [], marks[0]
    for previous, current in pairwise([*marks, -1]):
        if current != previous + 1:
            spans.append(f"\\U{start:08x}" + (f"-\\U{previous:08x}" if previous > start else ""))
            start = current
    mark = f"[{''.join(spans)}]"
    letter_or_digit, letter = f"(?![{_CJK}])[^\\W_]", f"(?![{_CJK}])[^\\W\\d_]"
    return re.compile(f"[{_CJK}]{mark}*|{letter_or_digit}(?:{letter_or_digit}|{mark})*(?:'{letter}(?:{letter}|{mark})*)?")


def split_words(text: str, version: int = TOKENIZER_VERSION) -> list[str]:
    """Lowercase ``text`` and cut it into words as tokenizer ``version`` does; punctuation and symbols are dropped.

    Version 2 first applies NFKC (full-width letters, ligatures and no-break spaces become plain ones) and reads
    a typographic apostrophe (``don’t``) as ``'``.
    """
    if version == 1:
        return _WORDS.findall(text.lower())
    text = _INSIDE_WORDS.sub("", unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)).lower()
    return _unicode_words().findall(text)


def build_vocabulary(texts: list[str], size: int, version: int = TOKENIZER_VERSION) -> list[str]:
    """``<PAD>``, ``<UNK>``, then the ``size`` most frequent words of ``texts`` (split by tokenizer ``version``).

    Ties in frequency are broken alphabetically, so the same texts always give the same vocabulary.
    """
    counts = Counter(word for text in texts for word in split_words(text, version))
    ranked = sorted(counts, key=lambda word: (-counts[word], word))
    return [PAD, UNK] + ranked[:size]


class WordTokenizer:
    """Maps texts to word ids over a fixed vocabulary; unknown words become ``<UNK>``.

    Args:
        vocabulary: the words in id order, starting with ``<PAD>`` (0) and ``<UNK>`` (1).
        version: how texts are cut into words (``split_words``); a saved baseline keeps the version it was
            trained with.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, vocabulary: list[str], version: int = TOKENIZER_VERSION) -> None:
        if vocabulary[:2] != [PAD, UNK]:
            raise FreezeframeError(f"a baseline vocabulary must start with {PAD} and {UNK}, found {vocabulary[:2]}")
        if version not in (1, 2):
            raise FreezeframeError(f"word tokenizer version {version!r} is unknown (this freezeframe reads 1 and 2); "
                                   "the baseline was written by a newer freezeframe: upgrade it, or retrain the baseline")
        self.vocabulary = list(vocabulary)
        self.version = version
        self.index = {word: i for i, word in enumerate(self.vocabulary)}

    @classmethod
    def fit(cls, texts: list[str], size: int) -> WordTokenizer:
        """A tokenizer (the current version) whose vocabulary is the ``size`` most frequent words of ``texts``."""
        return cls(build_vocabulary(texts, size), TOKENIZER_VERSION)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def split(self, text: str) -> list[str]:
        """The words of ``text`` as this tokenizer cuts them."""
        return split_words(text, self.version)

    def encode(self, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
        """Word ids per text, cut to ``max_length``, and how many texts were cut.

        A text without any word becomes a single ``<UNK>`` so that every example has one position.
        """
        ids, truncated = [], 0
        for text in texts:
            row = [self.index.get(word, self.unk_id) for word in self.split(text)] or [self.unk_id]
            if len(row) > max_length:
                truncated += 1
                row = row[:max_length]
            ids.append(row)
        return ids, truncated

    def save(self, directory: Path) -> None:
        """Write ``vocab.txt`` and, from version 2 on, ``word_tokenizer.json`` (version 1 writes none, as it did)."""
        (Path(directory) / VOCAB_FILE).write_text("\n".join(self.vocabulary) + "\n", encoding="utf-8")
        if self.version > 1:
            (Path(directory) / TOKENIZER_FILE).write_text(json.dumps({"version": self.version}) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> WordTokenizer:
        """The tokenizer saved in ``directory``; without ``word_tokenizer.json`` (baselines saved before it
        existed) it cuts words as version 1, the ASCII pattern they were trained with."""
        path = Path(directory) / VOCAB_FILE
        if not path.is_file():
            raise FreezeframeError(f"{directory} has no {VOCAB_FILE}; it is not a complete baseline model directory")
        return cls(path.read_text(encoding="utf-8").splitlines(), _saved_version(Path(directory) / TOKENIZER_FILE))


def _saved_version(path: Path) -> int:
    if not path.is_file():
        return 1
    try:
        version = json.loads(path.read_text(encoding="utf-8"))["version"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise FreezeframeError(f"{path} is damaged (expected {{\"version\": N}}); retrain the baseline") from None
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:  # versions count from 1
        raise FreezeframeError(f"{path} is damaged (version {version!r} is not a whole number from 1); retrain the baseline")
    return version


@dataclass
class BaselineSettings:
    """The shape of a baseline network, saved next to its weights."""

    vocabulary_size: int
    """Rows of the embedding table, ``<PAD>`` and ``<UNK>`` included."""
    embedding_dim: int
    """Size of a word vector."""
    num_labels: int
    """Number of classes."""
    dropout: float
    """Dropout on the averaged word vector before the classifier."""


class BaselineClassifier(nn.Module):
    """Word embeddings, masked mean pooling, dropout, a linear classifier.

    Args:
        settings: vocabulary size, embedding size, classes and dropout.
    """

    kind = "baseline"

    def __init__(self, settings: BaselineSettings) -> None:
        super().__init__()
        self.settings = settings
        self.embedding = nn.Embedding(settings.vocabulary_size, settings.embedding_dim, padding_idx=WordTokenizer.pad_id)
        self.dropout = nn.Dropout(settings.dropout)
        self.classifier = nn.Linear(settings.embedding_dim, settings.num_labels)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The mean word vector of each text over its real positions: [batch, seq] -> [batch, dim]."""
        return masked_mean(self.embedding(input_ids), attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(input_ids, attention_mask)))

    def save(self, directory: Path) -> None:
        """Write the weights (safetensors) and the network's shape (JSON)."""
        directory = Path(directory)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.settings), indent=2), encoding="utf-8")


def build_baseline(config: ModelConfig, labels: list[str], train_texts: list[str]) -> tuple[BaselineClassifier, WordTokenizer]:
    """A fresh, randomly initialised baseline and the tokenizer fitted on ``train_texts``.

    Args:
        config: ``vocab_size``, ``embedding_dim`` and ``dropout`` (``None`` takes the baseline default).
        labels: class names in index order.
        train_texts: the training texts the vocabulary is counted on.
    """
    tokenizer = WordTokenizer.fit(train_texts, config.vocab_size)
    dropout = config.dropout if config.dropout is not None else BASELINE_DEFAULTS["dropout"]
    settings = BaselineSettings(len(tokenizer), config.embedding_dim, len(labels), dropout)
    return BaselineClassifier(settings), tokenizer


def load_baseline(directory: Path) -> tuple[BaselineClassifier, WordTokenizer]:
    """Load a baseline written by ``freezeframe train --model baseline``."""
    directory = Path(directory)
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if not (directory / name).is_file()]
    if missing:
        raise FreezeframeError(f"{directory} is not a complete baseline model directory: {', '.join(missing)} missing")
    try:
        settings = BaselineSettings(**json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as err:
        raise FreezeframeError(f"{directory / CONFIG_FILE} is damaged ({err}); retrain the baseline") from None
    tokenizer = WordTokenizer.load(directory)
    if len(tokenizer) != settings.vocabulary_size:
        raise FreezeframeError(f"{directory}: {VOCAB_FILE} has {len(tokenizer)} words but the weights expect "
                               f"{settings.vocabulary_size}; the directory mixes two models")
    model = BaselineClassifier(settings)
    model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    return model.eval(), tokenizer
