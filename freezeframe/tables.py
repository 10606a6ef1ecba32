"""Read a CSV, TSV or JSON Lines file into a table of strings, and name its rows and columns in messages.

Everything a person could get wrong in a file's format (encoding, separator, quoting, header, repeated
column names, JSON that is not one object per line) is refused here, in one line naming the fix;
``data.py`` then checks what the cells mean.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from freezeframe.decode import STDIN, DecodedStream, shown_path  # noqa: F401 - named here too
from freezeframe.errors import FreezeframeError, logger, report

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None, ".ndjson": None}
"""The file types read, by suffix, with their separator (``None``: JSON Lines, or a JSON array in ``.json``)."""
SURROGATES = re.compile(r"[\ud800-\udfff]")


def format_rows(rows: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def percent(fraction: float) -> str:
    """A share for a message, e.g. ``15%`` or ``99.9%``: never rounded to a 0% or 100% it is not."""
    return f"{fraction * 100:g}%"


def counted(n: int, noun: str) -> str:
    """``1 class``, ``3 classes``, ``1 labelled text``, ``369 labelled texts``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('ss') else 's'}"


def one_or_many(n: int, one: str, many: str) -> str:
    """The words that agree with a count of ``n``: ``one`` for 1, else ``many`` (``is`` / ``are``)."""
    return one if n == 1 else many


def format_names(names: list[str], limit: int = 6, width: int = 40) -> str:
    """Names for a one-line message: quoted, the first ``limit`` of them, each cut to ``width`` characters."""
    shown = ", ".join(repr(n if len(n) <= width else n[: width - 1] + "…") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".7z")
"""Suffixes of compressed files, refused with the fix rather than as an unknown type (as are workbooks, .xls*)."""


def unsupported_type(path: Path, allowed: str) -> FreezeframeError:
    """The refusal of a file whose suffix is none of ``allowed`` (e.g. ``.csv, .tsv or .jsonl``): a compressed file
    or a workbook is named as such, with the fix."""
    suffix = path.suffix.lower()
    detail = ""
    if suffix.startswith(".xls"):
        detail = " (an Excel workbook: save the sheet as 'CSV UTF-8')"
    elif suffix in COMPRESSED_SUFFIXES:
        detail = " (compressed: decompress it first)"
    return FreezeframeError(f"{path}: unsupported file type {suffix or '(none)'!r}{detail}; use {allowed}")


def is_directory(path: Path) -> bool:
    """``path.is_dir()``, false where it cannot be looked at (the reading that follows says why)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def read_text_file(path: Path) -> str:
    """Read a whole file as UTF-8 (a byte-order mark is allowed), or say where it is not UTF-8; NUL bytes are
    removed, and counted in a report."""
    stream = DecodedStream(path)
    try:
        text = stream.read()
    finally:
        stream.close()
    report_nuls(stream.shown, stream.nuls)
    return text


def report_nuls(shown: Path | str, count: int) -> None:
    """Say that ``count`` NUL bytes were removed from the file messages name ``shown``."""
    if count:
        report(f"{shown}: removed {counted(count, 'NUL byte')}")


def read_table(path: Path, as_written: bool = False):
    """Read a CSV, TSV or JSON Lines file into a frame of strings (missing cells are None).

    Args:
        as_written: also return each row as a dict of every column in file order, with a JSON file's
            values as JSON had them (numbers, booleans, lists), for writing back beside predictions.

    Returns:
        The frame, or with ``as_written`` the frame and the rows.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if is_directory(path):
        raise FreezeframeError(f"{path} is a directory; expected a data file")
    if suffix not in TABLE_SUFFIXES:
        raise unsupported_type(path, ".csv, .tsv or .jsonl")
    text = read_text_file(path)
    if not text.strip():
        raise FreezeframeError(f"{path} is empty")
    records = None
    if TABLE_SUFFIXES[suffix] is None:
        records = [{str(json_cell(key)).strip(): value for key, value in record.items()}
                   for record in _json_records(text, path)]
        frame = pd.DataFrame.from_records([{key: json_cell(value) for key, value in record.items()} for record in records])
    else:
        frame = _read_delimited(text, path, TABLE_SUFFIXES[suffix])
    frame.columns = [str(c).strip() for c in frame.columns]
    refuse_repeated_names(list(frame.columns), path)
    frame = frame.astype(object).where(frame.notna(), None)
    if records is not None:  # the data rows holding a JSON list or object, by column: read as their JSON text
        frame.attrs["structured"] = {column: [row for row, record in enumerate(records, start=1)
                                              if isinstance(record.get(column), (list, dict))] for column in frame.columns}
    if not as_written:
        return frame
    if records is None:
        return frame, frame.to_dict("records")
    return frame, [{column: json_value(record.get(column)) for column in frame.columns} for record in records]


def refuse_repeated_names(names: list[str], path: Path, where: str = "") -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise FreezeframeError(f"{path}{where}: column name {format_names(repeated)} appears more than once "
                               "(names are compared without surrounding spaces); rename one of them")


def _read_delimited(text: str, path: Path, sep: str) -> pd.DataFrame:
    """Parse CSV/TSV text (quoted fields may hold the separator and newlines) into a frame of strings."""
    try:
        frame = _parse(text, sep)
    except pd.errors.EmptyDataError:
        raise FreezeframeError(f"{path} has no header row") from None
    except pd.errors.ParserError as err:
        refusal, unclosed = delimited_error(err, path, text, sep)
        frame = _parse_unquoted(text) if sep == "\t" and unclosed else None
        if frame is not None:
            report(f"{path}: {unclosed}; read as TSV without quoting instead: each line is one row, and quote marks "
                   "are part of the texts")
            return _checked(frame, text, path, sep)
        raise refusal from None
    merged = merged_rows(frame, sep) if sep == "\t" else []
    unquoted = _parse_unquoted(text) if merged else None
    if unquoted is not None and list(unquoted.columns) == list(frame.columns):
        report(f"{path}: quote marks merged lines into one field (data row {format_rows(merged)}); read as TSV without "
               "quoting instead: each line is one row, and quote marks are part of the texts")
        frame = unquoted
    return _checked(frame, text, path, sep)


def delimited_error(err: pd.errors.ParserError, path: Path, text: str, sep: str) -> tuple[FreezeframeError, str | None]:
    """The refusal of a CSV/TSV file pandas cannot parse (``text``: the file's text, or its start), and the detail of
    a quote mark that opens a field that never closes (``None`` for another fault)."""
    detail = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
    unclosed = re.search(r"EOF inside string starting at row (\d+)", detail)
    if unclosed:
        detail = f"a quote mark in data row {unclosed.group(1)} opens a field that never closes"
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
    if ragged:
        expected, line, saw = ragged.groups()
        detail = (f"line {line} has {saw} fields, the header has {expected}; a text holding the separator "
                  "must be quoted")
    refusal = FreezeframeError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'} ({detail})"
                               f"{separator_hint(text, sep)}")
    return refusal, detail if unclosed else None


def _parse(text: str, sep: str, quoting: int = csv.QUOTE_MINIMAL) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[],
                       skip_blank_lines=True, quoting=quoting)


def _parse_unquoted(text: str) -> pd.DataFrame | None:
    """TSV text parsed without quoting (as tab-separated files are often written, with quote marks in the texts
    left as they are), or ``None`` when it does not parse that way either."""
    try:
        return _parse(text, "\t", csv.QUOTE_NONE)
    except pd.errors.ParserError:
        return None


def _checked(frame: pd.DataFrame, text: str, path: Path, sep: str) -> pd.DataFrame:
    """A parsed table with repeated column names refused, a trailing separator dropped, swallowed rows reported."""
    # pandas renames a repeated name ("review", "review.1"), which would hide it from read_table's check
    header = next((row for row in csv.reader(io.StringIO(text, newline=""), delimiter=sep) if row), [])
    if len(header) == len(frame.columns):
        refuse_repeated_names([name.strip() for name in header], path)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = unshift(frame, path, separator_hint(text, sep))
    warn_merged_rows(merged_rows(frame, sep), path)
    return frame


def unshift(frame: pd.DataFrame, path: Path, hint: str = "", quiet: bool = False) -> pd.DataFrame:
    """Every row had one field more than the header, so pandas made the first column the index and
    shifted every name by one. A trailing separator (an empty last field) is dropped (and reported unless
    ``quiet``); anything else is refused."""
    names = list(frame.columns)
    values = frame.reset_index()
    if values.shape[1] != len(names) + 1:
        raise FreezeframeError(f"{path}: every data row has more fields than the header{hint or '; check the separator'}")
    values.columns = [*names, "\x00extra"]
    if (values["\x00extra"].fillna("").astype(str).str.strip() != "").any():
        raise FreezeframeError(f"{path}: every data row has one field more than the header (which has {len(names)}); "
                               f"add the missing column name or quote the texts that hold the separator{hint}")
    if not quiet:
        report(f"{path}: every row ends in an empty extra field (a trailing separator); ignored")
    return values.drop(columns="\x00extra")


SEPARATORS = {",": ("commas", "name it .csv"), "\t": ("tabs", "name it .tsv"),
               ";": ("semicolons", "save it with commas as .csv or with tabs as .tsv")}


def separator_hint(text: str, sep: str) -> str:
    """When the header is split by another separator than the file type's, the fix."""
    header = text.splitlines()[0]
    other = max((mark for mark in SEPARATORS if mark != sep), key=header.count)
    if header.count(other) <= header.count(sep):
        return ""
    name, fix = SEPARATORS[other]
    return f"; its header is separated by {name}: {fix}"


def merged_rows(frame: pd.DataFrame, sep: str) -> list[int]:
    """Data rows where an unbalanced quote may have made the parser swallow the following lines into one field.

    A quoted text may hold a line break and the separator; two or more of its lines holding the separator (in a
    TSV, where texts seldom hold a tab, one) look like swallowed rows."""
    broken = pd.Series(False, index=frame.index)
    for column in frame.columns:  # only cells with a line break can hold two lines
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            broken |= frame[column].str.contains("\n", regex=False, na=False)
    enough = 1 if sep == "\t" else 2
    return [int(position) + 1 for position in broken.to_numpy().nonzero()[0]
            if any(isinstance(cell, str) and sum(sep in line for line in cell.split("\n")) >= enough
                   for cell in frame.iloc[position])]


def warn_merged_rows(rows: list[int], path: Path) -> None:
    """Warn about the data ``rows`` that :func:`merged_rows` found."""
    if rows:
        logger.warning("%s: %d row(s) hold line breaks and the separator inside one field (data row %s); an unbalanced "
                       "quote may have merged several lines into one", path, len(rows), format_rows(rows))


class KeyPairs(dict):
    """A JSON object as a dict that remembers every key as written, repeats included (see
    :func:`refuse_repeated_keys`)."""

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        super().__init__(pairs)
        self.keys_in_order = [key for key, _ in pairs]


def json_lines(lines: Iterable[str]) -> Iterator[tuple[int, object]]:
    """``(line number, value)`` for each line of a JSON Lines text that holds anything; ``None`` for a line that is
    no JSON. Objects are :class:`KeyPairs`."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line, object_pairs_hook=KeyPairs)
            except (json.JSONDecodeError, RecursionError):
                yield number, None


def refuse_repeated_keys(record: object, path: Path, number: int) -> None:
    """Refuse JSON record ``number`` when it repeats a key, where a plain dict would keep only the last value."""
    if isinstance(record, KeyPairs):
        refuse_repeated_names([str(key).strip() for key in record.keys_in_order], path, f" (record {number})")


def _json_records(text: str, path: Path) -> list[dict]:
    """Objects of a JSON Lines file (or of a .json array), as parsed; every bad line is named at once."""
    records = None
    if text.lstrip().startswith("["):  # a JSON array: a .json file's form, and a .jsonl file's by mistake
        try:
            records = json.loads(text, object_pairs_hook=KeyPairs)
        except (json.JSONDecodeError, RecursionError) as err:
            if path.suffix.lower() == ".json":
                raise FreezeframeError(f"{path} is not valid JSON ({getattr(err, 'msg', 'nested too deeply')})") from None
        if records is not None and path.suffix.lower() != ".json":
            report(f"{path} holds one JSON array, not one object per line; read its items as the records")
    where = "item" if records is not None else "line"
    lines = list(enumerate(records, start=1) if records is not None else json_lines(text.splitlines()))
    for number, record in lines:
        refuse_repeated_keys(record, path, number)
    bad = [number for number, record in lines if not isinstance(record, dict)]
    if bad:
        raise FreezeframeError(
            f"{path}: {len(bad)} of {len(lines)} records are not JSON objects like "
            f'{{"review": "...", "aspect": "..."}} ({where} {format_rows(bad)}); fix or remove them'
        )
    return [record for _, record in lines]


def json_cell(value: object) -> object:
    """A JSON value as a table cell: numbers as their usual text (1.0 is "1"), true and false as JSON spells them,
    lists and objects as JSON."""
    if isinstance(value, str):
        return SURROGATES.sub("\ufffd", value)  # JSON escapes can hold lone surrogates; nothing downstream can
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
    return json.dumps(json_value(value), ensure_ascii=False)


def require_columns(frame: pd.DataFrame, path: Path | str, columns: list[str],
                     options: str = "--text-column / --label-column") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = format_names([str(c) for c in frame.columns]) or "none"
        sep = TABLE_SUFFIXES.get(Path(path).suffix.lower())  # a DataFrame's name has no suffix
        hint = separator_hint(str(frame.columns[0]), sep) if sep and len(frame.columns) == 1 else ""
        raise FreezeframeError(f"{path}: {'column' if len(missing) == 1 else 'columns'} {format_names(missing)} not found; "
                               f"columns found: {found} "
                               f"(choose others with {options}){hint}")


def json_value(value: object) -> object:
    """A JSON value as written, made safe to write again: lone surrogates (JSON escapes can hold them)
    replaced, NaN and infinity (Python's JSON reads them) become None."""
    if isinstance(value, str):
        return SURROGATES.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {json_value(str(key)): json_value(item) for key, item in value.items()}
    return value
