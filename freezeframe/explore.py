"""A labelled file at a glance before training, as the course notebooks explore theirs: the class balance,
how long the texts are in words and in the model's tokens (and how many ``--max-length`` cuts), repeated
texts, what a code column such as ``aspect_encoded`` stands for, and the words most typical of each class.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freezeframe.baseline import VOCAB_FILE, WordTokenizer, split_words
from freezeframe.config import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    EMPTY_MODEL,
    MAX_LENGTH_RANGE,
    SAME_COLUMNS,
    check_fields,
)
from freezeframe.data import LabelledTexts, labelled_from_frame, occurrences
from freezeframe.frames import LabelledFrame, frame_errors, read_source, settings_repr
from freezeframe.layouts import META_FILE
from freezeframe.tables import counted, format_rows, one_or_many

WORDS = re.compile(r"[^\W_]+(?:'[^\W\d_]+)?")
"""A word in any script: letters and digits, with an optional apostrophe suffix (the baseline, which also keeps
combining marks in their word and cuts Han and kana into single characters, counts with ``split_words``)."""

CODE_AGREEMENT = 0.75
"""A column codes the labels when more than this share of the rows carry their class's value."""

MIN_COUNT = 3
"""A word must occur this often in a class to be named as typical of it."""


@dataclass
class ExploreConfig:
    """What ``freezeframe explore`` reads and how it counts."""

    data: Path | LabelledFrame
    """The labelled file (.csv, .tsv, .jsonl), or a pandas DataFrame with the same columns."""
    text_column: str = "review"
    """Column holding the texts."""
    label_column: str = "aspect"
    """Column holding the label names."""
    normalize_labels: bool = False
    """Merge labels that differ only in case instead of refusing."""
    model: str = DEFAULT_MODEL
    """Whose tokens to count: an encoder, a cached hub id, a trained model directory, or ``baseline`` (words)."""
    max_length: int | None = None
    """Texts longer than this many tokens are counted as cut (8 to 512, as train takes it); default: a trained
    model's own, else 128."""
    top_words: int = 8
    """How many typical words to name per class (0: none)."""

    __repr__ = settings_repr

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):  # a model directory given as a Path
            self.model = os.fspath(self.model)
        check_fields(self)
        low, high = MAX_LENGTH_RANGE
        if self.max_length is not None and not low <= self.max_length <= high:  # what train would cut at, not more
            raise ValueError(f"--max-length must be between {low} and {high}, as train takes it, got {self.max_length}")
        if self.top_words < 0:
            raise ValueError(f"--top-words must be 0 or more, got {self.top_words}")
        if not self.text_column or not self.label_column:
            raise ValueError("--text-column and --label-column must be non-empty")
        if self.text_column == self.label_column:
            raise ValueError(SAME_COLUMNS.format(self.text_column))
        if not self.model.strip():
            raise ValueError(EMPTY_MODEL)


def explore_data(config: ExploreConfig) -> dict:
    """Describe a labelled file or DataFrame: everything ``freezeframe explore`` prints, as JSON-ready values.

    Returns:
        ``file`` (the path, or ``<DataFrame: N rows>``), ``texts`` (usable rows), ``labels``, ``majority_share``, ``tokens`` (what was counted),
        ``max_length``, ``classes`` and ``all`` (per class and overall: ``texts``, ``share``, ``words`` and
        ``tokens`` as median / p90 / max, ``over_max_length``), ``repeats``, ``code_columns`` and
        ``typical_words`` (label → words).
    """
    with frame_errors(config.data):
        frame, name = read_source(config.data)
        data = labelled_from_frame(frame, name, config.text_column, config.label_column, config.normalize_labels)
    trained = _trained_model_settings(Path(config.model).expanduser())
    count_tokens, unit = _token_counter(config.model, trained)
    max_length = config.max_length or _trained_max_length(trained) or DEFAULT_MAX_LENGTH
    words = [len(text_words(text)) for text in data.texts]
    tokens = count_tokens(data.texts)
    groups = {label: [i for i, lab in enumerate(data.labels) if lab == label] for label in data.label_names}
    groups_all = {**groups, "all": list(range(len(data)))}
    stats = {
        name: {
            "texts": len(members),
            "share": len(members) / len(data),
            "words": _spread([words[i] for i in members]),
            "tokens": _spread([tokens[i] for i in members]),
            "over_max_length": sum(1 for i in members if tokens[i] > max_length),
        }
        for name, members in groups_all.items()
    }
    return {
        "file": str(name),
        "texts": len(data),
        "labels": data.label_names,
        "majority_share": max(len(m) for m in groups.values()) / len(data),
        "tokens": unit,
        "max_length": max_length,
        "classes": {label: stats[label] for label in groups},
        "all": stats["all"],
        "repeats": _repeats(data),
        "code_columns": _code_columns(frame, data, [config.text_column, config.label_column]),
        "typical_words": typical_words(data, config.top_words) if config.top_words else {},
    }


def _token_counter(model: str, trained: dict):
    """How to count a text's tokens as ``model`` sees them (``trained``: the model settings freezeframe recorded
    there, if any), and what they are called."""
    if model == "baseline":
        return (lambda texts: [len(split_words(t)) for t in texts]), "the baseline's words"
    path = Path(model).expanduser()
    own_words = (path / VOCAB_FILE).is_file() and (path / "baseline_config.json").is_file()
    # a baseline ensemble keeps its vocabularies in member-N/, a baseline's ONNX export has no baseline_config.json
    if not own_words and trained.get("model") == "baseline" and (path / "member-0" / VOCAB_FILE).is_file():
        path = path / "member-0"
    if own_words or trained.get("model") == "baseline":
        # a damaged baseline directory (no vocab.txt) is refused here, not counted as words; each cuts words as it was
        # trained to
        tokenizer = WordTokenizer.load(path)
        return (lambda texts: [len(tokenizer.split(t)) for t in texts]), f"the words of the baseline {model}"
    from freezeframe.encoder import load_tokenizer

    tokenizer = load_tokenizer(model)

    def count(texts: list[str]) -> list[int]:
        ids, _ = tokenizer.encode(texts, max_length=10**9)
        return [len(i) for i in ids]

    return count, f"as {model}'s tokenizer cuts the texts, special tokens included"


def text_words(text: str) -> list[str]:
    """``text`` lowercased and cut into words, in whatever script it is written."""
    return WORDS.findall(text.lower())


def _trained_model_settings(directory: Path) -> dict:
    """The model settings freezeframe recorded in a directory it trained or exported (empty if none)."""
    try:
        settings = json.loads((directory / META_FILE).read_text(encoding="utf-8"))["settings"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _trained_max_length(trained: dict) -> int | None:
    """The ``--max-length`` a model was trained with, from the settings freezeframe recorded (``{}`` if none)."""
    value = trained.get("max_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 2 else None


def _spread(values: list[int]) -> dict:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": int(max(values))}


def _repeats(data: LabelledTexts) -> dict:
    """Texts that occur more than once, and those among them that carry more than one label."""
    rows_of, labels_of = occurrences(data)
    repeated = [text for text, rows in rows_of.items() if len(rows) > 1]
    conflicting = [text for text in repeated if len(labels_of[text]) > 1]
    return {"texts": len(repeated), "extra_rows": sum(len(rows_of[t]) - 1 for t in repeated),
            "conflicting": len(conflicting), "conflicting_rows": [r for t in conflicting for r in rows_of[t]]}


def _code_columns(frame, data: LabelledTexts, used: list[str]) -> dict:
    """Each other column that stands for the label, one value per class (the notebooks' ``aspect_encoded``):
    which value stands for which label, the data rows where a filled cell disagrees with that reading and
    the rows where the cell is empty. A column reads as a code when each class's most frequent value is
    its own and more than ``CODE_AGREEMENT`` of the rows carry it, so that a code with a few mistakes (or a
    few empty cells) is found, and an ID, a constant or a column of unrelated values is not."""
    found = {}
    if len(data.label_names) < 2:
        return found
    for column in frame.columns:
        if column in used:
            continue
        values = [None if value is None or not str(value).strip() else str(value).strip()
                  for value in frame[column].iloc[[row - 1 for row in data.rows]]]
        pairs = Counter((label, value) for label, value in zip(data.labels, values) if value is not None)
        meaning = {}
        for label in data.label_names:  # each label's most frequent value; ties go to the smallest
            counts = {v: n for (lab, v), n in pairs.items() if lab == label}
            if counts:
                meaning[label] = min(counts, key=lambda v: (-counts[v], v))
        if len(meaning) < len(data.label_names) or len(set(meaning.values())) < len(meaning):
            continue  # a class with no value, or two classes sharing one: not a code for the label
        agree = sum(pairs[label, code] for label, code in meaning.items())
        if agree <= CODE_AGREEMENT * len(values):
            continue
        found[column] = {
            "codes": {code: label for label, code in sorted(meaning.items(), key=lambda kv: kv[1])},
            "disagreeing_rows": [row for row, label, value in zip(data.rows, data.labels, values)
                                 if value is not None and meaning[label] != value],
            "empty_rows": [row for row, value in zip(data.rows, values) if value is None],
        }
    return found


def typical_words(data: LabelledTexts, top: int) -> dict[str, list[str]]:
    """The words most typical of each class against the rest: weighted log-odds with an informative
    Dirichlet prior (Monroe, Colaresi and Quinn, 2008), which ranks words by how surely a class uses them
    more, so that frequent words shared by every class ("the", "film") fall away without a stop list. The
    prior is the whole file's word counts."""
    counts = {label: Counter() for label in data.label_names}
    for text, label in zip(data.texts, data.labels):
        counts[label].update(text_words(text))
    total = sum(counts.values(), Counter())
    size = sum(total.values())
    typical = {}
    for label, own in counts.items():
        n_own, n_rest = sum(own.values()), size - sum(own.values())
        scores = {}
        for word, n in own.items():
            if n < MIN_COUNT:
                continue
            rest, a = total[word] - n, total[word]
            delta = math.log((n + a) / (n_own + size - n - a)) - math.log((rest + a) / (n_rest + size - rest - a))
            scores[word] = delta / math.sqrt(1 / (n + a) + 1 / (rest + a))
        ranked = sorted((w for w, z in scores.items() if z > 0), key=lambda w: (-scores[w], w))
        typical[label] = ranked[:top]
    return typical


def format_exploration(summary: dict) -> str:
    """The text ``freezeframe explore`` prints for :func:`explore_data`'s result."""
    width = max(5, *(len(label) for label in summary["labels"]))
    title = (f"{summary['file']}: {counted(summary['texts'], 'labelled text')}, {counted(len(summary['labels']), 'class')} "
             f"(always guessing the largest class scores {summary['majority_share']:.1%})")
    lines = [title, "", *_length_table(summary, width)]
    cut = summary["all"]["over_max_length"]
    lines += ["", f"tokens: {summary['tokens']}; " + (
        f"{counted(cut, 'text')} {one_or_many(cut, 'is', 'are')} longer than --max-length {summary['max_length']} and "
        f"{one_or_many(cut, 'loses its end', 'lose their ends')} in training and prediction"
        if cut else f"every text fits in --max-length {summary['max_length']}")]
    repeats = summary["repeats"]
    if repeats["texts"]:
        clash = (f", {repeats['conflicting']} of them under different labels (data rows "
                 f"{format_rows(repeats['conflicting_rows'])})" if repeats["conflicting"] else "")
        lines.append(f"repeated texts: {repeats['texts']} {one_or_many(repeats['texts'], 'occurs', 'occur')} more than once "
                     f"({counted(repeats['extra_rows'], 'extra row')}){clash}")
    else:
        lines.append("repeated texts: none")
    for column, found in summary["code_columns"].items():
        codes = ", ".join(f"{code} = {label}" for code, label in found["codes"].items())
        rows, empty = found["disagreeing_rows"], found["empty_rows"]
        disagree = f"; {counted(len(rows), 'row')} {one_or_many(len(rows), 'disagrees', 'disagree')} (data rows {format_rows(rows)})"
        blank = f"; {counted(len(empty), 'row')} {one_or_many(len(empty), 'is', 'are')} empty (data rows {format_rows(empty)})"
        lines.append(f"column {column!r} codes the labels: {codes}" + (
            (disagree if rows else "") + (blank if empty else "") if rows or empty else ", on every row"))
    if any(summary["typical_words"].values()):
        lines += ["", "words most typical of each class (weighted log-odds against the other classes):"]
        lines += [f"  {label:<{width}}  {', '.join(words) or '(none stands out)'}"
                  for label, words in summary["typical_words"].items()]
    return "\n".join(line.rstrip() for line in lines)


def _length_table(summary: dict, width: int) -> list[str]:
    """The per-class table, each column as wide as its longest cell, so that a 5,000-word text or a
    long label name does not push the numbers out from under their headings."""
    over = f"over {summary['max_length']}"
    rows = [*summary["classes"].items(), ("all", summary["all"])]
    cells = [[f"{row['texts']}", f"{row['share']:.1%}",
              *(value for unit in ("words", "tokens") for value in _spread_cells(row[unit])),
              f"{row['over_max_length']}"] for _, row in rows]
    heads = ["texts", "share", "median", "p90", "max", "median", "p90", "max", over]
    least = [5, 6, 6, 3, 4, 6, 3, 4, len(over)]
    widths = [max(low, *(len(cell[i]) for cell in cells)) for i, low in enumerate(least)]
    # words / tokens centred over their three columns
    spans = [sum(widths[start:start + 3]) + 4 for start in (2, 5)]
    lines = [f"{'':<{width}}  {'':>{widths[0]}}  {'':>{widths[1]}}  {'words':^{spans[0]}}  {'tokens':^{spans[1]}}",
             "  ".join([f"{'class':<{width}}", *(f"{h:>{w}}" for h, w in zip(heads, widths))])]
    lines += ["  ".join([f"{name:<{width}}", *(f"{c:>{w}}" for c, w in zip(cell, widths))])
              for (name, _), cell in zip(rows, cells)]
    return lines


def _spread_cells(spread: dict) -> list[str]:
    median = f"{spread['median']:.1f}".removesuffix(".0")  # a median is a whole or a half: never 1e+06
    return [median, f"{spread['p90']:.0f}", f"{spread['max']}"]
