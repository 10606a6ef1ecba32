"""Texts to classify read chunk by chunk: a file of any size in memory bounded by the chunk, parsed as
``tables.read_table`` parses a table whole, with the same checks, reports and errors. This is the one reading path of
texts to classify: ``data.load_texts`` joins its chunks.

A file (not standard input) is read once to check it before any text is classified, so that every error a whole
read would give (a bad JSON line, a missing column, a file of no texts) still comes before the work; the chunks are
then read again as they are classified. Standard input, or a .txt path that is a pipe (``<(cmd)``), can be read only
once: its errors come when they are met (a table that is a pipe is refused).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from freezeframe.config import CHUNK_ROWS
from freezeframe.decode import DecodedStream, file_stamp, first_text, read_once, split_lines
from freezeframe.errors import FreezeframeError, report
from freezeframe.tables import (
    SEPARATORS,
    SURROGATES,
    TABLE_SUFFIXES,
    delimited_error,
    format_rows,
    is_directory,
    json_cell,
    json_lines,
    json_value,
    merged_rows,
    read_table,
    refuse_repeated_keys,
    refuse_repeated_names,
    report_nuls,
    require_columns,
    separator_hint,
    shown_path,
    unshift,
    unsupported_type,
    warn_merged_rows,
)

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
"""Where a .txt input's lines end (str.splitlines would also cut a text at a form feed or other control character)."""


@dataclass
class _Tally:
    """What the check of a whole input found, reported once at its end."""

    texts: int = 0
    control: int = 0
    control_char: str = ""
    structured: list[int] = field(default_factory=list)
    merged: list[int] = field(default_factory=list)
    unshifted: bool = False
    nuls: int = 0


@dataclass
class TextChunks:
    """The texts ``predict`` classifies, read ``chunk_rows`` at a time: texts given as arguments first, then the
    file's; each with the row written back beside its prediction: a table's rows keep every column in file order, and
    a given text fills the table's text column (its other columns left empty), so every row has the same columns in
    the same place.

    Build it with :func:`open_texts`, which checks the whole file first; iterate it for ``(texts, rows)`` chunks.
    """

    given: list[str]
    path: Path | None = None
    text_column: str = "review"
    chunk_rows: int = CHUNK_ROWS
    column: str | None = None
    """The column the texts come from; ``None`` for a text file."""
    columns: list[str] | None = None
    """A table's columns in file order (a JSON Lines file's, in the order each first appears)."""
    quoting: int = csv.QUOTE_MINIMAL
    whole: tuple | None = None
    """A JSON array, read whole (it is one value, not one per line): its frame and rows."""
    checked: bool = False
    stamp: tuple | None = None
    """The checked file's device, inode, size and time of last change: the chunks are read only from that file."""

    def __post_init__(self) -> None:
        if isinstance(self.chunk_rows, bool) or not isinstance(self.chunk_rows, int) or self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a whole number of at least 1, got {self.chunk_rows!r}")

    def __iter__(self) -> Iterator[tuple[list[str], list[dict]]]:
        # bytes of an argument that are not UTF-8 arrive as lone surrogates, which no output can encode: the model reads
        # them as U+FFFD (model_text), and so does the output, as with a JSON input's lone surrogates
        given = [SURROGATES.sub("\ufffd", text) for text in self.given]
        blank = dict.fromkeys(self.columns) if self.columns is not None else None  # a table's columns, all empty
        for start in range(0, len(given), self.chunk_rows):
            part = given[start:start + self.chunk_rows]
            yield part, [{"text": text} for text in part] if blank is None else [blank | {self.column: t} for t in part]
        if self.path is not None:
            yield from self._file_chunks(check=not self.checked)

    def check(self) -> TextChunks:
        """Read the whole file once, without keeping it, to refuse or report what a whole read would, before any
        text is classified (standard input, or a pipe, is checked as it is classified instead)."""
        if self.path is None or str(self.path) == "-":
            return self
        suffix = self.path.suffix.lower()
        if read_once(self.path):  # `--input <(cmd)`, /dev/stdin: a second read would find nothing
            if suffix in (".txt", ""):
                return self  # checked as it is classified, as standard input is
            if suffix in TABLE_SUFFIXES:
                raise FreezeframeError(f"{self.path} is a pipe, not a file, and a {suffix} input is read twice (checked "
                                       "whole first, then classified); save it to a file first")
        if suffix not in (".txt", "") or is_directory(self.path):
            if suffix not in TABLE_SUFFIXES and not is_directory(self.path):
                raise unsupported_type(self.path, ".csv, .tsv, .jsonl or .txt")
            if TABLE_SUFFIXES.get(suffix) is None:
                self._scan_json()
            elif TABLE_SUFFIXES[suffix] == "\t":
                self._scan_tsv()
        self.stamp = file_stamp(self.path)
        for _ in self._file_chunks(check=True):
            pass
        self.checked = True
        return self

    def _file_chunks(self, check: bool) -> Iterator[tuple[list[str], list[dict] | None]]:
        tally = _Tally()
        if not check:
            self._unchanged()
        if str(self.path) == "-" or self.path.suffix.lower() in (".txt", ""):
            chunks = self._line_chunks(tally, check)
        else:
            chunks = self._table_chunks(tally, check)
        for chunk in chunks:
            if not check:
                self._unchanged()  # and before each chunk is classified: what was checked is what is classified
            yield chunk
        if check:
            self._report(tally)

    def _unchanged(self) -> None:
        """Refuse a file that changed after its check (a file being written, or replaced)."""
        if self.stamp is not None and file_stamp(self.path) != self.stamp:
            raise FreezeframeError(f"{self.path} changed after predict checked it (it is read twice: checked whole, "
                                   "then classified chunk by chunk); run again once nothing writes to it")

    def _report(self, tally: _Tally) -> None:
        from freezeframe.data import report_control_characters, report_structured_rows

        shown = shown_path(self.path)
        report_nuls(shown, tally.nuls)
        if tally.unshifted:
            report(f"{self.path}: every row ends in an empty extra field (a trailing separator); ignored")
        warn_merged_rows(tally.merged, self.path)
        report_structured_rows(tally.structured, self.path, "text", "read as their JSON text")
        if not tally.texts:
            raise FreezeframeError(f"{shown}: no texts to classify")
        report_control_characters(tally.control, tally.control_char, shown, "read as spaces, as in training")

    def _tally(self, tally: _Tally, texts: list[str]) -> None:
        from freezeframe.tokenizer import CONTROL_CHARS

        tally.texts += len(texts)
        for text in texts:
            if match := CONTROL_CHARS.search(text):
                tally.control += 1
                tally.control_char = tally.control_char or match.group()

    def _line_chunks(self, tally: _Tally, check: bool) -> Iterator[tuple[list[str], None]]:
        stream = DecodedStream(self.path)
        try:
            carry, texts = [], []  # carry: the pieces of a line begun in earlier blocks, joined once it ends
            for block in stream.blocks():
                # line breaks only: str.splitlines would also cut a text at a form feed or other control character.
                # Each block is split alone, so that a long line is not scanned again with every block: a \r\n cut
                # between two blocks makes one more blank line, which is skipped as every blank line is
                lines = _LINE_BREAKS.split(block)
                if len(lines) > 1:
                    lines[0] = "".join(carry) + lines[0]
                    carry = []
                carry.append(lines.pop())
                texts += [line.strip() for line in lines if line.strip()]
                whole = len(texts) - len(texts) % self.chunk_rows  # sliced once each: not the rest after every chunk
                for start in range(0, whole, self.chunk_rows):
                    yield self._texts_chunk(texts[start:start + self.chunk_rows], tally, check)
                del texts[:whole]
            if last := "".join(carry).strip():
                texts.append(last)
            if texts:
                yield self._texts_chunk(texts, tally, check)
            tally.nuls = stream.nuls
        finally:
            stream.close()

    def _texts_chunk(self, texts: list[str], tally: _Tally, check: bool) -> tuple[list[str], None]:
        from freezeframe.data import report_table_read_as_lines

        if check:
            if not tally.texts:
                report_table_read_as_lines(texts[0], self.path, self.text_column)
            self._tally(tally, texts)
        return texts, None

    def _table_chunks(self, tally: _Tally, check: bool) -> Iterator[tuple[list[str], list[dict]]]:
        from freezeframe.data import model_text

        sep = TABLE_SUFFIXES.get(self.path.suffix.lower(), ",")  # a directory: refused on reading
        frames = self._json_frames(tally) if sep is None else self._delimited_frames(self.quoting, tally)
        try:
            for number, (frame, rows) in enumerate(frames):
                if number == 0 and self.column is None:
                    self._choose_column(list(frame.columns))
                texts = [model_text(v) for v in frame[self.column]]
                if check:
                    self._tally(tally, texts)
                yield texts, rows
        except pd.errors.ParserError as err:
            raise delimited_error(err, self.path, first_text(self.path), sep)[0] from None

    def _choose_column(self, columns: list[str]) -> None:
        """The text column: ``text_column``, else a table's only column (reported), else a refusal naming the columns."""
        self.columns = columns
        self.column = self.text_column
        if self.text_column in columns:
            return
        if len(columns) == 1:
            only = columns[0]
            if any(mark in only for mark in SEPARATORS):
                sep = TABLE_SUFFIXES.get(self.path.suffix.lower()) or ","
                raise FreezeframeError(f"{self.path}: no column {self.text_column!r}, and its one column {only!r} looks "
                                       f"like several names run together{separator_hint(only, sep)}")
            report(f"{self.path}: no column {self.text_column!r}; classifying its only column, {only!r}")
            self.column = only
        else:
            require_columns(pd.DataFrame(columns=columns), self.path, [self.text_column], "--text-column")

    # --- CSV and TSV -------------------------------------------------------------------------------------------

    def _delimited_frames(self, quoting: int, tally: _Tally) -> Iterator[tuple[pd.DataFrame, list[dict]]]:
        """Checked frames of ``chunk_rows`` rows, as :func:`~freezeframe.tables.read_table` reads the whole file."""
        sep = TABLE_SUFFIXES.get(self.path.suffix.lower(), ",")
        stream = DecodedStream(self.path)
        try:
            first = stream.start()
            offset = 0
            try:
                reader = pd.read_csv(stream, sep=sep, dtype=str, keep_default_na=False, na_values=[],
                                     skip_blank_lines=True, quoting=quoting, chunksize=self.chunk_rows)
                frames = iter(reader)
                frame = next(frames, None)
            except pd.errors.EmptyDataError:
                raise FreezeframeError(f"{self.path} has no header row") from None
            # pandas renames a repeated name ("review", "review.1"), which would hide it: check the header itself
            header = next((row for row in csv.reader(io.StringIO(first, newline=""), delimiter=sep) if row), [])
            if frame is not None and len(header) == len(frame.columns):
                refuse_repeated_names([name.strip() for name in header], self.path)
            while frame is not None:
                if not isinstance(frame.index, pd.RangeIndex):
                    frame = unshift(frame, self.path, separator_hint(first, sep), quiet=True)
                    tally.unshifted = True
                tally.merged += [offset + row for row in merged_rows(frame, sep)]
                frame.columns = [str(c).strip() for c in frame.columns]
                if offset == 0:
                    refuse_repeated_names(list(frame.columns), self.path)
                frame = frame.astype(object).where(frame.notna(), None)
                offset += len(frame)
                yield frame, frame.to_dict("records")
                frame = next(frames, None)
            tally.nuls = stream.nuls
        finally:
            stream.close()

    def _scan_tsv(self) -> None:
        """Choose how a TSV file is read, as :func:`~freezeframe.tables._read_delimited` does: quoted, or each line
        one row when quote marks would merge lines (or open a field that never closes)."""
        tally, columns = _Tally(), None
        try:
            for frame, _ in self._delimited_frames(csv.QUOTE_MINIMAL, tally):
                columns = list(frame.columns) if columns is None else columns
        except pd.errors.ParserError as err:
            refusal, unclosed = delimited_error(err, self.path, first_text(self.path), "\t")
            if unclosed is None or self._parses_unquoted() is None:
                raise refusal from None
            report(f"{self.path}: {unclosed}; read as TSV without quoting instead: each line is one row, and quote "
                   "marks are part of the texts")
            self.quoting = csv.QUOTE_NONE
            return
        if tally.merged and self._parses_unquoted() == columns:
            report(f"{self.path}: quote marks merged lines into one field (data row {format_rows(tally.merged)}); read "
                   "as TSV without quoting instead: each line is one row, and quote marks are part of the texts")
            self.quoting = csv.QUOTE_NONE

    def _parses_unquoted(self) -> list[str] | None:
        """The columns of this TSV file read without quoting, or ``None`` when it does not parse that way either."""
        columns = None
        try:
            for frame, _ in self._delimited_frames(csv.QUOTE_NONE, _Tally()):
                columns = list(frame.columns) if columns is None else columns
        except (FreezeframeError, pd.errors.ParserError):
            return None
        return columns or []

    # --- JSON Lines ----------------------------------------------------------------------------------------------

    def _records(self, tally: _Tally | None = None) -> Iterator[tuple[int, object]]:
        """:func:`~freezeframe.tables.json_lines` of the file; the NUL bytes removed are counted in ``tally``."""
        stream = DecodedStream(self.path)
        try:
            stream.start()
            yield from json_lines(split_lines(stream.blocks()))
            if tally is not None:
                tally.nuls = stream.nuls
        finally:
            stream.close()

    def _scan_json(self) -> None:
        """The columns of every record, in the order each first appears, and the refusal of a line that holds no
        JSON object, as :func:`~freezeframe.tables.read_table` gives them (a JSON array is read whole)."""
        if first_text(self.path).lstrip().startswith("["):
            self.whole = read_table(self.path, as_written=True)
            self._choose_column(list(self.whole[0].columns))
            return
        columns: dict[str, None] = {}
        bad, lines = [], 0
        for number, record in self._records():
            lines += 1
            refuse_repeated_keys(record, self.path, number)
            if isinstance(record, dict):
                columns.update(dict.fromkeys(str(json_cell(key)).strip() for key in record))
            else:
                bad.append(number)
        if bad:
            raise FreezeframeError(
                f"{self.path}: {len(bad)} of {lines} records are not JSON objects like "
                f'{{"review": "...", "aspect": "..."}} (line {format_rows(bad)}); fix or remove them'
            )
        self._choose_column(list(columns))

    def _json_frames(self, tally: _Tally) -> Iterator[tuple[pd.DataFrame, list[dict]]]:
        if self.whole is not None:
            frame, rows = self.whole
            tally.structured += frame.attrs.get("structured", {}).get(self.column, [])
            for start in range(0, len(frame), self.chunk_rows):
                yield frame.iloc[start:start + self.chunk_rows], rows[start:start + self.chunk_rows]
            return
        records = []
        for ordinal, (_, record) in enumerate(self._records(tally), start=1):
            record = {str(json_cell(key)).strip(): value for key, value in record.items()}
            if isinstance(record.get(self.column), (list, dict)):
                tally.structured.append(ordinal)
            records.append(record)
            if len(records) == self.chunk_rows:
                yield self._json_frame(records)
                records = []
        if records:
            yield self._json_frame(records)

    def _json_frame(self, records: list[dict]) -> tuple[pd.DataFrame, list[dict]]:
        column = self.column
        frame = pd.DataFrame({column: [json_cell(record.get(column)) for record in records]}, dtype=object)
        return frame, [{name: json_value(record.get(name)) for name in self.columns} for record in records]


def open_texts(texts: list[str], path: Path | str | None = None, text_column: str = "review",
               chunk_rows: int = CHUNK_ROWS) -> TextChunks:
    """The texts to classify, given ones first and then ``path``'s, read ``chunk_rows`` rows at a time.

    Args:
        texts: texts given as arguments.
        path: a .csv, .tsv, .jsonl or .txt file, or ``-`` for standard input (one text per line); ``None``: none.
        text_column: a table's column of texts (its only column stands in when it has no such column).
        chunk_rows: rows read at a time.

    Returns:
        The chunks, the file checked whole already (standard input is checked as it is read).
    """
    return TextChunks(list(texts), None if path is None else Path(path), text_column, chunk_rows).check()
