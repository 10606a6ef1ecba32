"""In-memory labelled data: a pandas DataFrame where the Python API takes a labelled file.

A frame is read as :func:`~freezeframe.tables.read_table` reads a file (every cell a string or ``None``, column
names stripped), so that :func:`~freezeframe.data.labelled_from_frame` checks, cleans and warns about it exactly as
about a file. The caller's frame is never changed, and never written anywhere: records name it as
``<DataFrame: 369 rows>`` and keep a digest of its contents (which ``--resume`` compares, as a file's).

This module imports pandas only when given a frame: the command line never builds one.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from freezeframe.errors import FreezeframeError

FRAME_DIGEST = "dataframe-sha256:"
"""How a frame's digest begins, in a checkpoint's fingerprint, telling it from a file's."""


def is_frame(value: object) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas: if it is not imported, none exists)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


class _FrameType(type):
    def __instancecheck__(cls, value: object) -> bool:
        return is_frame(value)


class LabelledFrame(metaclass=_FrameType):
    """In a settings field's annotation: a pandas DataFrame of labelled rows, in place of a file
    (``isinstance`` recognises one without importing pandas)."""


class InvalidFrame(FreezeframeError, ValueError):
    """A DataFrame that cannot be used as labelled data: a ``ValueError``, as a wrong argument is, and a
    ``FreezeframeError``, as the same problem in a file is."""


def frame_name(frame: Any) -> str:
    """How messages and records name a frame: ``<DataFrame: 369 rows>``."""
    return f"<DataFrame: {len(frame)} {'row' if len(frame) == 1 else 'rows'}>"


def data_name(source: Path | Any | None) -> str | None:
    """A labelled file's path, or a frame's name, as text (``None`` stays ``None``)."""
    if source is None:
        return None
    return frame_name(source) if is_frame(source) else str(source)


def settings_repr(settings: Any) -> str:
    """A settings dataclass's repr with each DataFrame named (``<DataFrame: 369 rows>``), not printed whole."""
    import dataclasses

    shown = []
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        shown.append(f"{item.name}={data_name(value) if is_frame(value) else repr(value)}")
    return f"{type(settings).__name__}({', '.join(shown)})"


def frame_table(frame: Any):
    """A copy of ``frame`` as a file's table reads: objects, missing cells (NaN, NA, None) as ``None``, column
    names as stripped strings; a name that then appears twice is refused, as in a file."""
    from freezeframe.tables import refuse_repeated_names

    table = frame.astype(object)  # a copy: the caller's frame keeps its values and dtypes
    table = table.where(table.notna(), None)
    table.columns = [str(column).strip() for column in table.columns]
    table.attrs = {}
    with frame_errors(frame):  # an InvalidFrame wherever a frame is read: loading it, or digesting it for a checkpoint
        refuse_repeated_names(list(table.columns), frame_name(frame))
    return table


def frame_digest(frame: Any) -> str:
    """A digest of the frame's column names and cells as freezeframe reads them (its index aside)."""
    text = frame_table(frame).to_csv(index=False, lineterminator="\n")
    return FRAME_DIGEST + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def read_source(source: Path | Any) -> tuple[Any, Path | str]:
    """The table of a labelled file or frame, and the name messages give it (the path, or the frame's name)."""
    if is_frame(source):
        return frame_table(source), frame_name(source)
    from freezeframe.tables import read_table

    return read_table(Path(source)), Path(source)


@contextlib.contextmanager
def frame_errors(source: Path | Any) -> Iterator[None]:
    """Raise a problem found in a frame as :class:`InvalidFrame` (one in a file stays as it is)."""
    try:
        yield
    except InvalidFrame:
        raise
    except FreezeframeError as err:
        if not is_frame(source):
            raise
        raise InvalidFrame(str(err)) from None
