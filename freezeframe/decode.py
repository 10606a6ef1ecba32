"""The bytes of a file or of standard input as UTF-8 text, read block by block (a file of any size in bounded memory),
or refused in one line that says where it is not UTF-8 and how to convert it."""

from __future__ import annotations

import codecs
import io
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from freezeframe.errors import FreezeframeError

_BLOCK = 1 << 20
"""Bytes read at a time."""
_LINE_ENDS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""What ``str.splitlines`` ends a line at (how a JSON Lines file is cut into records)."""


STDIN = "standard input"
"""How messages name ``-``, the file that reads standard input."""


def shown_path(path: Path) -> Path | str:
    """``path`` as messages name it: ``-`` is standard input."""
    return STDIN if str(path) == "-" else path


_BINARY_STARTS = {
    b"\x1f\x8b": "gzip-compressed; decompress it first, e.g. `zcat FILE > plain.csv`",
    b"\xfd7zXZ\x00": "xz-compressed; decompress it first, e.g. `xzcat FILE > plain.csv`",
    b"\x28\xb5\x2f\xfd": "zstd-compressed; decompress it first, e.g. `zstdcat FILE > plain.csv`",
    b"BZh": "bzip2-compressed; decompress it first, e.g. `bzcat FILE > plain.csv`",
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx workbook is one), not text; save the sheet as 'CSV UTF-8' or unzip it",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook, not text; save the sheet as 'CSV UTF-8'",
}
"""What a file that is not UTF-8 text is, by its first bytes, and the fix (looked up only once it failed to decode,
so that no text file is refused for how it starts)."""


class DecodedStream(io.TextIOBase):
    """A file or standard input (``-``) read block by block as UTF-8 text (a byte-order mark is allowed), or refused
    in one line where it is not UTF-8 (UTF-16, compressed, a workbook, another encoding: the byte and its line); NUL
    bytes are removed and counted in ``nuls``."""

    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        self.shown = shown_path(path)
        self.raw = sys.stdin.buffer
        if str(path) != "-":
            try:
                if not path.exists():
                    raise FreezeframeError(f"file not found: {path}")
                if path.is_dir():
                    raise FreezeframeError(f"{path} is a directory; expected a data file")
                self.raw = open(path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as err:
                raise FreezeframeError(f"cannot read {path}: {err.strerror or err}") from None
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.head = b""
        self.lines = 0
        self.nuls = 0
        self.pending = ""
        self.done = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.raw is not sys.stdin.buffer:
            self.raw.close()
        super().close()

    def block(self) -> str | None:
        """The next block of text, ``None`` at the end."""
        try:
            raw = self.raw.read(_BLOCK)
        except OSError as err:
            raise FreezeframeError(f"cannot read {self.shown}: {err.strerror or err}") from None
        if len(self.head) < 8:
            self.head += raw[: 8 - len(self.head)]
            if self.head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise FreezeframeError(f"{self.shown} is UTF-16, not UTF-8; re-save it as UTF-8, e.g. "
                                       "`iconv -f utf-16 -t utf-8 in.csv > out.csv`")
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            binary = next((what for start, what in _BINARY_STARTS.items() if self.head.startswith(start)), None)
            if binary is not None:
                raise FreezeframeError(f"{self.shown} is {binary}") from None
            line = self.lines + err.object[: err.start].count(b"\n") + 1
            raise FreezeframeError(
                f"{self.shown} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at line {line}); "
                "re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`"
            ) from None
        self.lines += raw.count(b"\n")
        if "\x00" in text:
            self.nuls += text.count("\x00")
            text = text.replace("\x00", "")
        return text if raw else None

    def blocks(self) -> Iterator[str]:
        """Every block of text, the pending one first."""
        if self.pending:
            yield self.pending
            self.pending = ""
        while not self.done:
            text = self.block()
            if text is None:
                self.done = True
            elif text:
                yield text

    def read(self, size: int | None = -1) -> str:
        """Up to ``size`` characters (all that is left when ``size`` is negative or ``None``)."""
        if size is None or size < 0:
            return "".join(self.blocks())  # joined once: adding each block to the last would copy the text again
        while len(self.pending) < size and not self.done:
            text = self.block()
            if text is None:
                self.done = True
            else:
                self.pending += text
        if size >= len(self.pending):
            out, self.pending = self.pending, ""
        else:
            out, self.pending = self.pending[:size], self.pending[size:]
        return out

    def start(self) -> str:
        """The text up to its first visible character (at least a block's worth), or a refusal of an empty file."""
        while not self.pending.strip() and not self.done:
            text = self.block()
            if text is None:
                self.done = True
            else:
                self.pending += text
        if not self.pending.strip():
            raise FreezeframeError(f"{self.shown} is empty")
        return self.pending


def first_text(path: Path | str) -> str:
    """A file's text up to its first visible character (see :meth:`DecodedStream.start`), the file closed again."""
    stream = DecodedStream(path)
    try:
        return stream.start()
    finally:
        stream.close()


def read_once(path: Path) -> bool:
    """Whether ``path`` can be read only once: a pipe (``<(cmd)``, ``/dev/stdin``) or another file that is neither a
    regular file nor a directory."""
    try:
        mode = path.stat().st_mode
    except OSError:  # not there, or not readable: reading it says so
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def file_stamp(path: Path) -> tuple | None:
    """What tells that a file changed: its device, inode, size and time of last change (``None``: it is gone)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


def split_lines(blocks: Iterator[str]) -> Iterator[str]:
    """The lines of ``blocks`` as ``"".join(blocks).splitlines()`` gives them, without joining them.

    Each block is split alone and a line begun in earlier blocks is joined once, when it ends, so that a long line is
    not joined and scanned again with every block; a \r\n cut between two blocks is one line end.
    """
    carry: list[str] = []  # the pieces of a line begun in earlier blocks
    after_cr = False  # the last block ended in \r: a \n that starts the next one ends the same line
    for block in blocks:
        if after_cr and block.startswith("\n"):
            block = block[1:]
        after_cr = False
        if not block:
            continue
        pieces = block.splitlines(keepends=True)
        rest = pieces.pop() if pieces[-1][-1] not in _LINE_ENDS else None
        for piece in pieces:
            if carry:
                piece = "".join(carry) + piece
                carry = []
            yield piece[:-2] if piece.endswith("\r\n") else piece[:-1]
        if rest is not None:
            carry.append(rest)
        else:
            after_cr = block.endswith("\r")
    if carry:
        yield "".join(carry)
