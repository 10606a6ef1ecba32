"""A labelled file at a glance before training, as the course notebooks explore theirs: the class balance,
how long the texts are in words and in the model's tokens (and how many ``--max-length`` cuts), repeated
texts, what a code column such as ``aspect_encoded`` stands for, and the words most typical of each class.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freezeframe.baseline import VOCAB_FILE, WordTokenizer, split_words
from freezeframe.config import DEFAULT_MAX_LENGTH, DEFAULT_MODEL, EMPTY_MODEL
from freezeframe.data import LabelledTexts, labelled_from_frame
from freezeframe.errors import FreezeframeError
from freezeframe.storage import META_FILE
from freezeframe.tables import format_rows, read_table

MIN_COUNT = 3
"""A word must occur this often in a class to be named as typical of it."""


@dataclass
class ExploreConfig:
    """What ``freezeframe explore`` reads and how it counts."""

    data: Path
    """The labelled file (.csv, .tsv, .jsonl)."""
    text_column: str = "review"
    """Column holding the texts."""
    label_column: str = "aspect"
    """Column holding the label names."""
    normalize_labels: bool = False
    """Merge labels that differ only in case instead of refusing."""
    model: str = DEFAULT_MODEL
    """Whose tokens to count: an encoder, a cached hub id, a trained model directory, or ``baseline`` (words)."""
    max_length: int | None = None
    """Texts longer than this many tokens are counted as cut; default: a trained model's own, else 128."""
    top_words: int = 8
    """How many typical words to name per class (0: none)."""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        if self.max_length is not None and (isinstance(self.max_length, bool) or not isinstance(self.max_length, int)
                                            or self.max_length < 2):
            raise ValueError(f"max_length must be an integer of at least 2, got {self.max_length!r}")
        if isinstance(self.top_words, bool) or not isinstance(self.top_words, int) or self.top_words < 0:
            raise ValueError(f"top_words must be a non-negative integer, got {self.top_words!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise FreezeframeError(EMPTY_MODEL)


def explore_data(config: ExploreConfig) -> dict:
    """Describe a labelled file: everything ``freezeframe explore`` prints, as JSON-ready values.

    Returns:
        ``file``, ``texts`` (usable rows), ``labels``, ``majority_share``, ``tokens`` (what was counted),
        ``max_length``, ``classes`` and ``all`` (per class and overall: ``texts``, ``share``, ``words`` and
        ``tokens`` as median / p90 / max, ``over_max_length``), ``repeats``, ``code_columns`` and
        ``typical_words`` (label → words).
    """
    frame = read_table(config.data)
    data = labelled_from_frame(frame, config.data, config.text_column, config.label_column, config.normalize_labels)
    count_tokens, unit = _token_counter(config.model)
    max_length = config.max_length or _trained_max_length(Path(config.model)) or DEFAULT_MAX_LENGTH
    words = [len(split_words(text)) for text in data.texts]
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
        "file": str(config.data),
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


def _token_counter(model: str):
    """How to count a text's tokens as ``model`` sees them, and what they are called."""
    if model == "baseline":
        return (lambda texts: [len(split_words(t)) for t in texts]), "the baseline's words"
    path = Path(model).expanduser()
    if (path / VOCAB_FILE).is_file() and (path / "baseline_config.json").is_file():
        WordTokenizer.load(path)  # a damaged baseline directory is refused here, not counted as words
        return (lambda texts: [len(split_words(t)) for t in texts]), f"the words of the baseline {model}"
    from freezeframe.encoder import load_tokenizer

    tokenizer = load_tokenizer(model)

    def count(texts: list[str]) -> list[int]:
        ids, _ = tokenizer.encode(texts, max_length=10**9)
        return [len(i) for i in ids]

    return count, f"as {model}'s tokenizer cuts the texts, special tokens included"


def _trained_max_length(directory: Path) -> int | None:
    """The ``--max-length`` a model directory was trained with, if freezeframe trained it."""
    try:
        value = json.loads((directory / META_FILE).read_text(encoding="utf-8"))["settings"]["model"]["max_length"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 2 else None


def _spread(values: list[int]) -> dict:
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": int(max(values))}


def _repeats(data: LabelledTexts) -> dict:
    """Texts that occur more than once, and those among them that carry more than one label."""
    labels_of: dict[str, set[str]] = {}
    rows_of: dict[str, list[int]] = {}
    for text, label, row in zip(data.texts, data.labels, data.rows):
        labels_of.setdefault(text, set()).add(label)
        rows_of.setdefault(text, []).append(row)
    repeated = [text for text, rows in rows_of.items() if len(rows) > 1]
    conflicting = [text for text in repeated if len(labels_of[text]) > 1]
    return {"texts": len(repeated), "extra_rows": sum(len(rows_of[t]) - 1 for t in repeated),
            "conflicting": len(conflicting), "conflicting_rows": [r for t in conflicting for r in rows_of[t]]}


def _code_columns(frame, data: LabelledTexts, used: list[str]) -> dict:
    """For each other column with at most one distinct value per class and row: which value stands for which
    label, and the data rows where a column disagrees with that reading (the notebooks' ``aspect_encoded``)."""
    found = {}
    for column in frame.columns:
        if column in used:
            continue
        values = [None if value is None else str(value).strip()
                  for value in frame[column].iloc[[row - 1 for row in data.rows]]]
        if any(v in (None, "") for v in values) or len(set(values)) > len(data.label_names):
            continue
        pairs = Counter(zip(data.labels, values))
        meaning = {}
        for label in data.label_names:  # each label's most frequent value; ties go to the smallest
            counts = {v: n for (lab, v), n in pairs.items() if lab == label}
            meaning[label] = min(counts, key=lambda v: (-counts[v], v))
        if len(set(meaning.values())) < len(meaning):
            continue  # two labels share a value: not a code for the label
        disagree = [row for row, label, value in zip(data.rows, data.labels, values) if meaning[label] != value]
        found[column] = {"codes": {code: label for label, code in sorted(meaning.items(), key=lambda kv: kv[1])},
                         "disagreeing_rows": disagree}
    return found


def typical_words(data: LabelledTexts, top: int) -> dict[str, list[str]]:
    """The words most typical of each class against the rest: weighted log-odds with an informative
    Dirichlet prior (Monroe, Colaresi and Quinn, 2008), which ranks words by how surely a class uses them
    more, so that frequent words shared by every class ("the", "film") fall away without a stop list. The
    prior is the whole file's word counts."""
    counts = {label: Counter() for label in data.label_names}
    for text, label in zip(data.texts, data.labels):
        counts[label].update(split_words(text))
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
    over = f"over {summary['max_length']}"
    title = (f"{summary['file']}: {summary['texts']} labelled texts, {len(summary['labels'])} classes "
             f"(always guessing the largest class scores {summary['majority_share']:.1%})")
    lines = [title, "",
             f"{'':<{width}}  {'':>5}  {'':>6}  {'words':^17}  {'tokens':^17}",
             f"{'class':<{width}}  {'texts':>5}  {'share':>6}  {'median  p90  max':>17}  {'median  p90  max':>17}  {over}"]
    for name, row in [*summary["classes"].items(), ("all", summary["all"])]:
        lines.append(f"{name:<{width}}  {row['texts']:>5}  {row['share']:>6.1%}  {_spread_text(row['words'])}  "
                     f"{_spread_text(row['tokens'])}  {row['over_max_length']:>{len(over)}}")
    cut = summary["all"]["over_max_length"]
    lines += ["", f"tokens: {summary['tokens']}; " + (
        (f"{cut} texts are longer than --max-length {summary['max_length']} and lose their ends" if cut != 1 else
         f"1 text is longer than --max-length {summary['max_length']} and loses its end") + " in training and prediction"
        if cut else f"every text fits in --max-length {summary['max_length']}")]
    repeats = summary["repeats"]
    if repeats["texts"]:
        clash = (f", {repeats['conflicting']} of them under different labels (data rows "
                 f"{format_rows(repeats['conflicting_rows'])})" if repeats["conflicting"] else "")
        lines.append(f"repeated texts: {repeats['texts']} occur more than once ({repeats['extra_rows']} extra rows){clash}")
    else:
        lines.append("repeated texts: none")
    for column, found in summary["code_columns"].items():
        codes = ", ".join(f"{code} = {label}" for code, label in found["codes"].items())
        rows = found["disagreeing_rows"]
        lines.append(f"column {column!r} codes the labels: {codes}" + (
            f"; {len(rows)} rows disagree (data rows {format_rows(rows)})" if rows else ", on every row"))
    if any(summary["typical_words"].values()):
        lines += ["", "words most typical of each class (weighted log-odds against the other classes):"]
        lines += [f"  {label:<{width}}  {', '.join(words) or '(none stands out)'}"
                  for label, words in summary["typical_words"].items()]
    return "\n".join(line.rstrip() for line in lines)


def _spread_text(spread: dict) -> str:
    return f"{spread['median']:>6g}  {spread['p90']:>3.0f}  {spread['max']:>4}"
