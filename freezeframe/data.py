"""Read labelled texts from CSV, TSV or JSON Lines; check and clean them; split them.

Every problem a person can fix becomes a :class:`FreezeframeError` naming the file, what was
expected and what was found. Everything handled silently on the user's behalf is reported in
one line (see :func:`freezeframe.errors.report`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from freezeframe.config import SAME_COLUMNS
from freezeframe.errors import FreezeframeError, logger, report

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None, ".ndjson": None}
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_HAS_WORD = re.compile(r"\w")
MAX_CHARS = 200_000
"""Texts are cut to this many characters before tokenizing: far past any ``--max-length`` (at most 512
tokens), and it keeps a many-megabyte cell from stalling the tokenizer."""


@dataclass
class LabelledTexts:
    """Texts with their label names, and the 1-based data row each came from."""

    texts: list[str]
    labels: list[str]
    rows: list[int]
    source: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> LabelledTexts:
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.rows[i] for i in indices],
            self.source,
        )

    @property
    def label_names(self) -> list[str]:
        """The distinct labels, sorted, which fixes the class order of a model."""
        return sorted(set(self.labels))


def _format_rows(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def format_names(names: list[str], limit: int = 6, width: int = 40) -> str:
    """Names for a one-line message: quoted, the first ``limit`` of them, each cut to ``width`` characters."""
    shown = ", ".join(repr(n if len(n) <= width else n[: width - 1] + "…") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def read_text_file(path: Path) -> str:
    """Read a whole file as UTF-8 (a byte-order mark is allowed), or say where it is not UTF-8."""
    if str(path) == "-":
        raw = sys.stdin.buffer.read()
    else:
        if not path.exists():
            raise FreezeframeError(f"file not found: {path}")
        if path.is_dir():
            raise FreezeframeError(f"{path} is a directory; expected a data file")
        raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise FreezeframeError(f"{path} is UTF-16, not UTF-8; re-save it as UTF-8, e.g. "
                               "`iconv -f utf-16 -t utf-8 in.csv > out.csv`")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise FreezeframeError(
            f"{path} is not valid UTF-8 (byte 0x{raw[err.start]:02x} at line {line}); "
            "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`"
        ) from None
    if "\x00" in text:
        report(f"{path}: removed {text.count(chr(0))} NUL bytes")
        text = text.replace("\x00", "")
    return text


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV, TSV or JSON Lines file into a frame of strings (missing cells are None)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise FreezeframeError(f"{path} is a directory; expected a data file")
    if suffix not in TABLE_SUFFIXES:
        raise FreezeframeError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .tsv or .jsonl")
    text = read_text_file(path)
    if not text.strip():
        raise FreezeframeError(f"{path} is empty")
    if TABLE_SUFFIXES[suffix] is None:
        frame = pd.DataFrame.from_records(_json_records(text, path))
    else:
        frame = _read_delimited(text, path, TABLE_SUFFIXES[suffix])
    frame.columns = [str(c).strip() for c in frame.columns]
    _refuse_repeated_names(list(frame.columns), path)
    return frame.astype(object).where(frame.notna(), None)


def _refuse_repeated_names(names: list[str], path: Path, where: str = "") -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FreezeframeError(f"{path}{where}: column name {format_names(repeated)} appears more than once "
                               "(names are compared without surrounding spaces); rename one of them")


def _read_delimited(text: str, path: Path, sep: str) -> pd.DataFrame:
    """Parse CSV/TSV text (quoted fields may hold the separator and newlines) into a frame of strings."""
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[],
                            skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise FreezeframeError(f"{path} has no header row") from None
    except pd.errors.ParserError as err:
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
        if ragged:
            expected, line, saw = ragged.groups()
            detail = (f"line {line} has {saw} fields, the header has {expected}; a text holding the separator "
                      "must be quoted")
        raise FreezeframeError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'} ({detail})"
                               f"{_separator_hint(text, sep)}") from None
    # pandas renames a repeated name ("review", "review.1"), which would hide it from read_table's check
    header = next((row for row in csv.reader(io.StringIO(text), delimiter=sep) if row), [])
    if len(header) == len(frame.columns):
        _refuse_repeated_names([name.strip() for name in header], path)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = _unshift(frame, path, _separator_hint(text, sep))
    _warn_merged_rows(frame, path, sep)
    return frame


def _unshift(frame: pd.DataFrame, path: Path, hint: str = "") -> pd.DataFrame:
    """Every row had one field more than the header, so pandas made the first column the index and
    shifted every name by one. A trailing separator (an empty last field) is dropped; anything else is refused."""
    names = list(frame.columns)
    values = frame.reset_index()
    if values.shape[1] != len(names) + 1:
        raise FreezeframeError(f"{path}: every data row has more fields than the header{hint or '; check the separator'}")
    values.columns = [*names, "\x00extra"]
    if (values["\x00extra"].fillna("").astype(str).str.strip() != "").any():
        raise FreezeframeError(f"{path}: every data row has one field more than the header (which has {len(names)}); "
                               f"add the missing column name or quote the texts that hold the separator{hint}")
    report(f"{path}: every row ends in an empty extra field (a trailing separator); ignored")
    return values.drop(columns="\x00extra")


_SEPARATORS = {",": ("commas", "name it .csv"), "\t": ("tabs", "name it .tsv"),
               ";": ("semicolons", "save it with commas as .csv or with tabs as .tsv")}


def _separator_hint(text: str, sep: str) -> str:
    """When the header is split by another separator than the file type's, the fix."""
    header = text.splitlines()[0]
    other = max((mark for mark in _SEPARATORS if mark != sep), key=header.count)
    if header.count(other) <= header.count(sep):
        return ""
    name, fix = _SEPARATORS[other]
    return f"; its header is separated by {name}: {fix}"


def _warn_merged_rows(frame: pd.DataFrame, path: Path, sep: str) -> None:
    """An unbalanced quote makes the parser swallow the following lines into one field: say so.

    A quoted text may hold a line break and the separator; two or more of its lines holding the
    separator look like swallowed rows."""
    broken = pd.Series(False, index=frame.index)
    for column in frame.columns:  # only cells with a line break can hold two lines
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            broken |= frame[column].str.contains("\n", regex=False, na=False)
    suspects = [int(position) + 1 for position in broken.to_numpy().nonzero()[0]
                if any(isinstance(cell, str) and sum(sep in line for line in cell.split("\n")) >= 2
                       for cell in frame.iloc[position])]
    if suspects:
        logger.warning("%s: %d row(s) hold line breaks and the separator inside one field (data row %s); an unbalanced "
                       "quote may have merged several lines into one", path, len(suspects), _format_rows(suspects))


class _KeyPairs(dict):
    """A JSON object as a dict that remembers every key as written, repeats included."""

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.keys_in_order = [key for key, _ in pairs]


def _json_records(text: str, path: Path) -> list[dict]:
    """Objects of a JSON Lines file (or of a .json array); every bad line is named at once."""
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text, object_pairs_hook=_KeyPairs)
        except (json.JSONDecodeError, RecursionError) as err:
            raise FreezeframeError(f"{path} is not valid JSON ({getattr(err, 'msg', 'nested too deeply')})") from None
        lines = list(enumerate(records, start=1))
    else:
        lines = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    lines.append((number, json.loads(line, object_pairs_hook=_KeyPairs)))
                except (json.JSONDecodeError, RecursionError):
                    lines.append((number, None))
    for number, record in lines:  # where a plain dict would keep only the last value of a repeated key
        if isinstance(record, _KeyPairs):
            _refuse_repeated_names([str(key).strip() for key in record.keys_in_order], path, f" (record {number})")
    bad = [number for number, record in lines if not isinstance(record, dict)]
    if bad:
        raise FreezeframeError(
            f"{path}: {len(bad)} of {len(lines)} records are not JSON objects like "
            f'{{"review": "...", "aspect": "..."}} (line {_format_rows(bad)}); fix or remove them'
        )
    return [{_json_cell(key): _json_cell(value) for key, value in record.items()} for _, record in lines]


def _json_cell(value: object) -> object:
    """A JSON value as a table cell: numbers as their usual text (1.0 is "1"), true and false as JSON spells them,
    lists and objects as JSON."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)  # JSON escapes can hold lone surrogates; nothing downstream can
    if value is None:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):  # NaN (an empty cell) or infinity
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _require_columns(frame: pd.DataFrame, path: Path, columns: list[str],
                     options: str = "--text-column / --label-column") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = format_names([str(c) for c in frame.columns]) or "none"
        sep = TABLE_SUFFIXES.get(path.suffix.lower())
        hint = _separator_hint(str(frame.columns[0]), sep) if sep and len(frame.columns) == 1 else ""
        raise FreezeframeError(f"{path}: {'column' if len(missing) == 1 else 'columns'} {format_names(missing)} not found; "
                               f"columns found: {found} "
                               f"(choose others with {options}){hint}")


def model_text(value: object) -> str:
    """Any value as text a tokenizer accepts: lone surrogates become U+FFFD, at most ``MAX_CHARS`` characters."""
    text = "" if value is None else str(value)
    return _SURROGATES.sub("\ufffd", text[:MAX_CHARS])


def clean_text(value: object) -> str:
    """A cell as text with control characters turned into spaces and outer spaces removed."""
    return _CONTROL_CHARS.sub(" ", model_text(value)).strip()


def _clean_labels(labels: list[str], path: Path, normalize: bool, known: list[str] | None = None) -> list[str]:
    """Labels without outer spaces or control characters; case-only variants merged (under the ``known``
    spelling where one is given) or refused."""
    stripped = [clean_text(label) for label in labels]
    changed = [(raw, label) for raw, label in zip(labels, stripped) if raw != label]
    if changed:
        raw, label = changed[0]
        report(f"{path}: removed spaces or control characters around {len(changed)} labels (e.g. {raw!r} is {label!r})")
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


def load_labelled(
    path: Path, text_column: str = "review", label_column: str = "aspect", normalize_labels: bool = False,
    known: list[str] | None = None,
) -> LabelledTexts:
    """Read labelled texts, drop rows without text or label (reported), and check the labels.

    Args:
        path: a .csv, .tsv or .jsonl file.
        text_column: column holding the texts.
        label_column: column holding the label names.
        normalize_labels: merge labels that differ only in case instead of refusing.
        known: the labels of the model these texts test; ``normalize_labels`` spells them its way.

    Returns:
        The usable rows, in file order.
    """
    if text_column == label_column:
        raise FreezeframeError(SAME_COLUMNS.format(text_column))
    path = Path(path)
    frame = read_table(path)
    _require_columns(frame, path, [text_column, label_column])
    texts = [clean_text(v) for v in frame[text_column]]
    labels = ["" if v is None else str(v) for v in frame[label_column]]
    rows = list(range(1, len(frame) + 1))
    empty = [r for r, t in zip(rows, texts) if not t]
    unlabelled = [r for r, t, lab in zip(rows, texts, labels) if t and not clean_text(lab)]
    if empty:
        report(f"{path}: dropped {len(empty)} rows with no text (empty, missing, or only spaces and control "
               f"characters; data rows {_format_rows(empty)})")
    if unlabelled:
        report(f"{path}: dropped {len(unlabelled)} rows with no label (data rows {_format_rows(unlabelled)})")
    keep = [i for i, (t, lab) in enumerate(zip(texts, labels)) if t and clean_text(lab)]
    if not keep:
        raise FreezeframeError(
            f"{path}: no rows with both a text and a label (columns {text_column!r} and {label_column!r})"
        )
    cut = sum(1 for v in frame[text_column] if v is not None and len(str(v)) > MAX_CHARS)
    if cut:
        report(f"{path}: {cut} texts are longer than {MAX_CHARS:,} characters; cut to that length before tokenizing")
    data = LabelledTexts([texts[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep], str(path))
    data.labels = _clean_labels(data.labels, path, normalize_labels, known)
    if all(re.fullmatch(r"[-+]?\d+(\.\d+)?", label) for label in data.labels):
        report(f"{path}: the labels are numbers ({', '.join(data.label_names[:5])}); each number is a class name")
    duplicates = len(data) - len(set(zip(data.texts, data.labels)))
    if duplicates:
        report(f"{path}: {duplicates} rows repeat an earlier text and label exactly (kept; the copies of a text "
               "stay on one side of every split)")
    _report_conflicting_labels(data, path)
    wordless = sum(1 for t in data.texts if not _HAS_WORD.search(t))
    if wordless:
        report(f"{path}: {wordless} texts have no letters or digits (only symbols or emoji; kept)")
    return data


def _report_conflicting_labels(data: LabelledTexts, path: Path) -> None:
    """Say which texts appear more than once with different labels: the model cannot get both right."""
    rows_of: dict[str, list[int]] = {}
    labels_of: dict[str, set[str]] = {}
    for text, row, label in zip(data.texts, data.rows, data.labels):
        rows_of.setdefault(text, []).append(row)
        labels_of.setdefault(text, set()).add(label)
    conflicting = [text for text, labels in labels_of.items() if len(labels) > 1]
    if conflicting:
        shown = "; ".join(" and ".join(map(str, rows_of[text])) for text in conflicting[:3])
        texts = "1 text appears" if len(conflicting) == 1 else f"{len(conflicting)} texts appear"
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


def check_known_labels(data: LabelledTexts, known: list[str]) -> None:
    """Refuse evaluation data whose labels the model was never trained on."""
    unknown = sorted(set(data.labels) - set(known))
    if unknown:
        folded = {label.casefold() for label in known}
        hint = ("; they differ from the model's only in letter case: pass --normalize-labels"
                if all(label.casefold() in folded for label in unknown) else "")
        raise FreezeframeError(
            f"{data.source}: {len(unknown)} label(s) never seen in training: {format_names(unknown)}; "
            f"the model knows {format_names(known)}{hint}"
        )


def load_texts(path: Path, text_column: str = "review") -> list[str]:
    """Texts to classify: a table's text column, or one text per line of a .txt file or stdin (``-``)."""
    return load_text_rows(path, text_column)[0]


def load_text_rows(path: Path, text_column: str = "review") -> tuple[list[str], list[dict] | None]:
    """Texts to classify and, for a table, its rows (every column, in file order) to write back with them."""
    path = Path(path)
    rows = None
    if str(path) == "-" or path.suffix.lower() in (".txt", ""):
        lines = read_text_file(path).splitlines()
        texts = [line.strip() for line in lines if line.strip()]
    else:
        if path.suffix.lower() not in TABLE_SUFFIXES and not path.is_dir():
            raise FreezeframeError(f"{path}: unsupported file type {path.suffix.lower()!r}; use .csv, .tsv, .jsonl or .txt")
        frame = read_table(path)
        if text_column not in frame.columns:
            if len(frame.columns) == 1:
                only = frame.columns[0]
                if any(mark in only for mark in _SEPARATORS):
                    raise FreezeframeError(f"{path}: no column {text_column!r}, and its one column {only!r} looks like "
                                           f"several names run together{_separator_hint(only, TABLE_SUFFIXES[path.suffix.lower()] or ',')}")
                report(f"{path}: no column {text_column!r}; classifying its only column, {only!r}")
                text_column = only
            else:
                _require_columns(frame, path, [text_column], "--text-column")
        texts = [model_text(v) for v in frame[text_column]]
        rows = frame.to_dict("records")
    if not texts:
        raise FreezeframeError(f"{path}: no texts to classify")
    return texts, rows
