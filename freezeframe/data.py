"""Labelled texts from a table file (read by ``tables.py``): the text and label columns checked and cleaned,
labels normalised, the classes checked against training.

Every problem a person can fix becomes a :class:`FreezeframeError` naming the file, what was
expected and what was found. Everything handled silently on the user's behalf is reported in
one line (see :func:`freezeframe.errors.report`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from freezeframe.config import SAME_COLUMNS
from freezeframe.errors import FreezeframeError, logger, report
from freezeframe.frames import LabelledFrame, frame_errors, is_frame, read_source
from freezeframe.tables import (
    SURROGATES,
    counted,
    format_names,
    format_rows,
    one_or_many,
    require_columns,
    shown_path,
)
from freezeframe.tokenizer import CONTROL_CHARS

_HAS_WORD = re.compile(r"\w")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")
_DIGIT_RUNS = re.compile(r"([0-9]+)")
MAX_CHARS = 200_000
"""Texts are cut to this many characters before tokenizing: far past any ``--max-length`` (at most 512
tokens), and it keeps a many-megabyte cell from stalling the tokenizer."""


@dataclass
class LabelledTexts:
    """Texts with their label names, and the 1-based data row each came from."""

    texts: list[str]
    labels: list[str]
    rows: list[int]
    file: str = ""
    """The file the texts were read from."""
    part: str = ""
    """Which part of the file they are once it was split (e.g. ``validation part``); empty for all of it."""

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def source(self) -> str:
        """The texts as messages name them: the file, and the part of it after a split, so that a count
        ("5 of 314 texts") is not read as the size of the whole file."""
        return f"{self.file} ({self.part})" if self.part else self.file

    def subset(self, indices: list[int], part: str | None = None) -> LabelledTexts:
        """The texts at ``indices``; ``part`` names them within the file (within the part this is, if any)."""
        if part is not None and self.part:
            part = f"{part} of {self.part}"
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.rows[i] for i in indices],
            self.file,
            self.part if part is None else part,
        )

    @property
    def label_names(self) -> list[str]:
        """The distinct labels in :func:`class_order`, which fixes the class order of a model."""
        return sorted(set(self.labels), key=class_order)


def class_order(label: str) -> tuple:
    """The sort key of a class name: numbers in numeric order (``-1``, ``2``, ``10``, before any name), digits
    within names too (``grade 2`` before ``grade 10``); names without digits sort as ``sorted`` sorts them."""
    if _NUMBER.fullmatch(label):
        return (0, float(label), (), label)
    parts = _DIGIT_RUNS.split(label)  # a name, then digits and name in turn: each place compares like with like
    return (1, 0.0, tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), label)


def model_text(value: object) -> str:
    """Any value as text a tokenizer accepts: lone surrogates become U+FFFD, at most ``MAX_CHARS`` characters."""
    text = "" if value is None else str(value)
    return SURROGATES.sub("\ufffd", text[:MAX_CHARS])


def clean_text(value: object) -> str:
    """A cell as text with control characters turned into spaces and outer spaces removed."""
    return CONTROL_CHARS.sub(" ", model_text(value)).strip()


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing a tokenizer keeps: only spaces, control characters and invisible format
    characters (a zero-width space, a byte order mark), which BERT's normaliser drops."""
    return all(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in text)


def _clean_labels(labels: list[str], path: Path, normalize: bool, known: list[str] | None = None) -> list[str]:
    """Labels without outer spaces or control characters; case-only variants merged (under the ``known``
    spelling where one is given) or refused."""
    stripped = [clean_text(label) for label in labels]
    changed = [(raw, label) for raw, label in zip(labels, stripped) if raw != label]
    if changed:
        raw, label = changed[0]
        report(f"{path}: removed spaces or control characters around {counted(len(changed), 'label')} (e.g. {raw!r} is {label!r})")
    stripped = _merge_whole_numbers(stripped, path, known)
    by_folded: dict[str, set[str]] = {}
    for label in stripped:
        by_folded.setdefault(label.casefold(), set()).add(label)
    spelled = {label.casefold(): label for label in known or []}
    if normalize:  # a label the model knows in another case is that label
        for folded, spellings in by_folded.items():
            if folded in spelled:
                spellings.add(spelled[folded])
    clashes = {k: sorted(v) for k, v in by_folded.items() if len(v) > 1}
    if not clashes:
        return stripped
    listed = "; ".join(" / ".join(repr(s) for s in spellings) for spellings in clashes.values())
    if not normalize:
        raise FreezeframeError(
            f"{path}: labels differ only in letter case ({listed}); fix the file or pass "
            "--normalize-labels to merge them under the most frequent spelling"
        )
    counts = Counter(stripped)
    canonical = {k: spelled.get(k) or max(v, key=lambda s: (counts[s], s)) for k, v in by_folded.items()}
    report(f"{path}: merged labels that differ only in case ({listed})")
    return [canonical[label.casefold()] for label in stripped]


_MISSING_MARKS = {"nan", "na", "n/a", "#n/a", "<na>", "null"}
"""Labels that other tools write for a missing value (pandas, R, Excel, SQL), casefolded: a label all the same, since
"NA" may name a class, but doubtful ("None" is left out: it names a class too often)."""
_WHOLE_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(?:\.0+)?")
"""A whole number as a label, also as a float spells it (``2.0``): a column of class codes with one empty cell is
written out by pandas as floats. Leading zeros are left alone: ``01`` may be a code of its own."""


def _merge_whole_numbers(labels: list[str], path: Path, known: list[str] | None) -> list[str]:
    """One class per whole number: ``2`` and ``2.0`` (in one file, or in a file and the model it tests) are
    read as one label, the model's spelling where it has one, else the plain ``2`` (as JSON's ``2.0`` is read)."""
    spellings: dict[int, set[str]] = {}
    for label in {*labels, *(known or [])}:
        if match := _WHOLE_NUMBER.fullmatch(label):
            spellings.setdefault(int(match.group(1)), set()).add(label)
    canonical = {}
    for number, spelled in spellings.items():
        if len(spelled) > 1:  # the model's spelling, else the plain number
            chosen = next((label for label in known or [] if label in spelled), str(number))
            canonical.update(dict.fromkeys(spelled, chosen))
    changed = sorted({(label, canonical[label]) for label in labels if canonical.get(label, label) != label})
    if changed:
        listed = ", ".join(f"{label!r} as {spelled!r}" for label, spelled in changed[:5])
        whose = "the model's label" if known and any(spelled in known for _, spelled in changed) else "one class"
        report(f"{path}: labels that write one whole number two ways are read as {whose} "
               f"({listed}{', ...' if len(changed) > 5 else ''})")
    return [canonical.get(label, label) for label in labels]


def load_labelled(
    path: Path | LabelledFrame, text_column: str = "review", label_column: str = "aspect", normalize_labels: bool = False,
    known: list[str] | None = None,
) -> LabelledTexts:
    """Read labelled texts, drop rows without text or label (reported), and check the labels.

    Args:
        path: a .csv, .tsv or .jsonl file, or a pandas DataFrame with the same columns (read as the file would be,
            never changed; its problems are :class:`~freezeframe.frames.InvalidFrame`, a ``ValueError``).
        text_column: column holding the texts.
        label_column: column holding the label names.
        normalize_labels: merge labels that differ only in case instead of refusing.
        known: the labels of the model these texts test; ``normalize_labels`` spells them its way.

    Returns:
        The usable rows, in file order.
    """
    if not isinstance(path, (str, os.PathLike)) and not is_frame(path):  # a list or Series: Path() would name no fix
        raise TypeError(f"load_labelled's path must be a path (str or pathlib.Path) or a pandas DataFrame, got "
                        f"{type(path).__name__}")
    with frame_errors(path):
        table, name = read_source(path)
        return labelled_from_frame(table, name, text_column, label_column, normalize_labels, known)


def labelled_from_frame(frame, path: Path | str, text_column: str, label_column: str, normalize_labels: bool = False,
                        known: list[str] | None = None) -> LabelledTexts:
    """:func:`load_labelled` on a frame :func:`~freezeframe.tables.read_table` read from ``path`` (or, for a DataFrame
    given in place of a file, :func:`~freezeframe.frames.frame_table` made; ``path`` is then its name)."""
    if text_column == label_column:
        raise FreezeframeError(SAME_COLUMNS.format(text_column))
    require_columns(frame, path, [text_column, label_column])
    _report_structured(frame, path, text_column, "text", "read as their JSON text")
    _report_structured(frame, path, label_column, "label", "each distinct one is a class of its own (one label per text)")
    texts = [clean_text(v) for v in frame[text_column]]
    labels = ["" if v is None else str(v) for v in frame[label_column]]
    rows = list(range(1, len(frame) + 1))
    empty = [r for r, t in zip(rows, texts) if not t]
    unlabelled = [r for r, t, lab in zip(rows, texts, labels) if t and not clean_text(lab)]
    if empty:
        report(f"{path}: dropped {counted(len(empty), 'row')} with no text (empty, missing, or only spaces and control "
               f"characters; data rows {format_rows(empty)})")
    if unlabelled:
        report(f"{path}: dropped {counted(len(unlabelled), 'row')} with no label (data rows {format_rows(unlabelled)})")
    keep = [i for i, (t, lab) in enumerate(zip(texts, labels)) if t and clean_text(lab)]
    if not keep:
        raise FreezeframeError(
            f"{path}: no rows with both a text and a label (columns {text_column!r} and {label_column!r})"
        )
    cut = sum(1 for v in frame[text_column] if v is not None and len(str(v)) > MAX_CHARS)
    if cut:
        report(f"{path}: {counted(cut, 'text')} {one_or_many(cut, 'is', 'are')} longer than {MAX_CHARS:,} characters; "
               "cut to that length before tokenizing")
    _report_control_characters([model_text(frame[text_column].iloc[i]) for i in keep], path,
                               "replaced by spaces", [rows[i] for i in keep])
    data = LabelledTexts([texts[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep], str(path))
    data.labels = _clean_labels(data.labels, path, normalize_labels, known)
    numbers = [label for label in data.label_names if _NUMBER.fullmatch(label)]
    if len(numbers) == len(data.label_names):
        report(f"{path}: the labels are numbers ({', '.join(data.label_names[:5])}); each number is a class name")
    elif numbers:  # codes among names: each code becomes a class of its own beside the class it stands for
        rows = [row for row, label in zip(data.rows, data.labels) if label in numbers]
        report(f"{path}: {counted(len(rows), 'row')} {one_or_many(len(rows), 'has', 'have')} a number for a label ({', '.join(numbers[:5])}) where the others have "
               f"names (data rows {format_rows(rows)}); each number is a class of its own: give every row its class name")
    missing = [row for row, label in zip(data.rows, data.labels) if label.casefold() in _MISSING_MARKS]
    if missing:
        marks = sorted({label for label in data.labels if label.casefold() in _MISSING_MARKS})
        report(f"{path}: {counted(len(missing), 'row')} {one_or_many(len(missing), 'has', 'have')} a label that usually marks a missing value ({format_names(marks)}; "
               f"data rows {format_rows(missing)}); kept as a class of its own: remove those rows or give them their class")
    duplicates = len(data) - len(set(zip(data.texts, data.labels)))
    if duplicates:
        report(f"{path}: {counted(duplicates, 'row')} {one_or_many(duplicates, 'repeats', 'repeat')} an earlier text and "
               "label exactly (kept; the copies of a text stay on one side of every split)")
    _report_conflicting_labels(data, path)
    wordless = sum(1 for t in data.texts if not _HAS_WORD.search(t))
    if wordless:
        report(f"{path}: {counted(wordless, 'text')} {one_or_many(wordless, 'has', 'have')} no letters or digits "
               "(only symbols, emoji or invisible characters such as a zero-width space; kept)")
    return data


def _report_structured(frame, path: Path, column: str, what: str, outcome: str) -> None:
    """Say which rows of a JSON file hold a list or an object where a text or a label (``what``) belongs."""
    report_structured_rows(frame.attrs.get("structured", {}).get(column), path, what, outcome)


def report_structured_rows(rows: list[int] | None, path: Path, what: str, outcome: str) -> None:
    """Say which data ``rows`` of a JSON file hold a list or an object where a text or a label (``what``) belongs."""
    if rows:
        report(f"{path}: {counted(len(rows), what)} {one_or_many(len(rows), 'is a JSON list or object', 'are JSON lists or objects')}"
               f", not {one_or_many(len(rows), 'a string', 'strings')} (data rows {format_rows(rows)}); {outcome}")


def _report_control_characters(texts: list[str], path: Path, outcome: str, rows: list[int] | None = None) -> None:
    """Say how many texts hold control characters (tabs and line breaks aside) and what became of them: they are
    rarely meant (a terminal's colour codes, a bell, a form feed) and change what the model reads."""
    found = [(i, match.group()) for i, text in enumerate(texts) if (match := CONTROL_CHARS.search(text))]
    if found:
        i, char = found[0]
        report_control_characters(len(found), char, path, outcome, rows[i] if rows is not None else None)


def report_control_characters(count: int, char: str, path: Path | str, outcome: str, row: int | None = None) -> None:
    """Say that ``count`` texts hold control characters, the first of them ``char`` (in data row ``row``)."""
    if count:
        where = f" in data row {row}" if row is not None else ""
        report(f"{path}: {counted(count, 'text')} {one_or_many(count, 'holds', 'hold')} control characters (e.g. {char!r}{where}); {outcome}")


def occurrences(data: LabelledTexts) -> tuple[dict[str, list[int]], dict[str, set[str]]]:
    """Per distinct text, the data rows it is on and the labels it carries there."""
    rows_of: dict[str, list[int]] = {}
    labels_of: dict[str, set[str]] = {}
    for text, row, label in zip(data.texts, data.rows, data.labels):
        rows_of.setdefault(text, []).append(row)
        labels_of.setdefault(text, set()).add(label)
    return rows_of, labels_of


def _report_conflicting_labels(data: LabelledTexts, path: Path) -> None:
    """Say which texts appear more than once with different labels: the model cannot get both right."""
    rows_of, labels_of = occurrences(data)
    conflicting = [text for text, labels in labels_of.items() if len(labels) > 1]
    if conflicting:
        shown = "; ".join(" and ".join(map(str, rows_of[text][:4])) + (
            f" and {len(rows_of[text]) - 4} more" if len(rows_of[text]) > 4 else "") for text in conflicting[:3])
        texts = f"{counted(len(conflicting), 'text')} {one_or_many(len(conflicting), 'appears', 'appear')}"
        report(f"{path}: {texts} with different labels (data rows {shown}"
               f"{'; ...' if len(conflicting) > 3 else ''}); kept, but no model can get both right: fix their labels")


def check_classes(data: LabelledTexts) -> None:
    """Refuse training data with fewer than two classes; warn when most labels are unique (the wrong column?)."""
    names = data.label_names
    if len(names) < 2:
        raise FreezeframeError(
            f"{data.source}: training needs at least two classes, found {len(names)} ({format_names(names)})"
        )
    if len(names) > 20 and len(names) > len(data) / 2:
        report(f"{data.source}: {len(names)} classes for {len(data)} texts, most with a single example; "
               "is the label column the right one (--label-column)?")


def warn_absent_labels(data: LabelledTexts, known: list[str], averages: str) -> None:
    """Warn when scoring data lacks some of the model's classes: their recall of 0 still counts in ``averages``."""
    present = set(data.labels)
    absent = [label for label in known if label not in present]
    if absent:
        logger.warning("%s has no examples of %s; recall 0 for %s counts in the %s (accuracy is unaffected)",
                       data.source, format_names(absent), "it" if len(absent) == 1 else "them", averages)


def check_known_labels(data: LabelledTexts, known: list[str]) -> None:
    """Refuse evaluation data whose labels the model was never trained on."""
    unknown = sorted(set(data.labels) - set(known), key=class_order)
    if unknown:
        folded = {label.casefold() for label in known}
        hint = ("; they differ from the model's only in letter case: pass --normalize-labels"
                if all(label.casefold() in folded for label in unknown) else "")
        raise FreezeframeError(
            f"{data.source}: {len(unknown)} label(s) never seen in training: {format_names(unknown)}; "
            f"the model knows {format_names(known)}{hint}"
        )


def load_texts(path: Path | str, text_column: str = "review") -> list[str]:
    """Texts to classify, read whole: a table's text column, or one text per line of a .txt file or stdin (``-``).

    The chunks of :func:`freezeframe.chunks.open_texts` joined: the same texts, checks, reports and errors as
    ``predict --input``, in memory that grows with the file.
    """
    from freezeframe.chunks import open_texts

    return [text for texts, _ in open_texts([], path, text_column) for text in texts]


def report_table_read_as_lines(first: str, path: Path, text_column: str) -> None:
    """Say when a file read one text per line looks like a table (a .csv without its suffix, a table piped to standard
    input): its header, or each JSON record whole, would be classified as texts."""
    fields = [field.strip().strip('"').strip() for field in re.split(r"[,\t;]", first)]
    header = text_column.casefold() in {field.casefold() for field in fields} and all(
        len(field) <= 40 and len(field.split()) <= 3 for field in fields)
    record = first.startswith("{") and first.endswith("}")
    if header or record:
        what = f"a table's header ({first[:60]!r})" if header else "a JSON record"
        fix = "pass it as a .csv, .tsv or .jsonl file" if str(path) == "-" else "name it .csv, .tsv or .jsonl"
        report(f"{shown_path(path)}: read as one text per line, but its first line looks like {what}; "
               f"to classify its {text_column!r} column, {fix}")
