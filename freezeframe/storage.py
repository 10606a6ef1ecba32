"""Writing outputs so that a reader never sees them half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from freezeframe.errors import FreezeframeError


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


META_FILE = "freezeframe.json"
"""A trained model's metadata (labels, settings, history), beside its weights."""
CHECKPOINT_DIR = "checkpoint"
"""Where an unfinished (or ``--keep-checkpoint``) run keeps its checkpoint, inside ``--out``."""
MODEL_MARKERS = (META_FILE, CHECKPOINT_DIR)
"""What a directory ``train`` wrote holds at its top: the model's metadata, or an interrupted run's checkpoint."""
REPORT_MARKERS = ("results.json",)
"""What a directory ``compare`` wrote holds at its top."""


def check_output_dir(out: Path, overwrite: bool, markers: tuple[str, ...] = (), inputs: tuple[Path | None, ...] = ()) -> None:
    """Refuse to replace an existing, non-empty directory unless asked to, and never one freezeframe did not write.

    Args:
        out: the directory to write.
        overwrite: replacing an existing directory was asked for.
        markers: names one of which a directory this kind of output replaces holds at its top (a model's
            ``freezeframe.json``, a report's ``results.json``); a non-empty directory with none of them is
            the user's, and ``--overwrite`` does not delete it.
        inputs: files this run reads; none may lie inside ``out``.
    """
    if out.exists() and not out.is_dir():
        raise FreezeframeError(f"--out {out} is a file; choose a directory path")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise FreezeframeError(f"--out {out}: {blocker} is a file, not a directory; choose another path")
    check_writable(out.parent, f"--out {out}")
    resolved = out.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise FreezeframeError(f"--out {out} is the current directory or holds it; choose a new directory path")
    for source in inputs:
        if source is not None and resolved in Path(source).resolve().parents:
            raise FreezeframeError(f"--out {out} holds the input {source}; choose another path")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if not overwrite:
        raise FreezeframeError(f"--out {out} already exists and is not empty; pass --overwrite or choose another path")
    if markers and not any((out / name).exists() for name in markers):
        held = ", ".join(sorted(p.name for p in out.iterdir())[:3])
        raise FreezeframeError(f"--out {out} was not written by freezeframe (it holds {held}); --overwrite only replaces "
                               "freezeframe's own output, so choose another path or empty it yourself")


def check_writable(directory: Path, what: str) -> None:
    """Refuse, before any work, a ``directory`` that output cannot be written into: create and remove a
    hidden directory there, or in its nearest ancestor that exists (permissions alone do not tell: root
    passes them where /proc refuses everyone). ``what`` starts the message, e.g. ``--out runs/x``."""
    place = next((p for p in (directory, *directory.parents) if p.is_dir()), None)
    if place is None:
        return
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".freezeframe-probe-", dir=place))
    except OSError as err:
        raise FreezeframeError(f"{what}: cannot write in {place} ({err.strerror or err}); choose another path") from None


@contextlib.contextmanager
def atomic_directory(out: Path, overwrite: bool = False, markers: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``out`` in one rename.

    If the block raises (or the process dies), ``out`` is untouched and the temporary is removed
    (or, after a hard kill, left under a hidden ``.NAME.tmp-*`` name that never looks complete).
    """
    out = Path(out)
    check_output_dir(out, overwrite, markers)
    make_parent(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as err:
        raise FreezeframeError(f"cannot write in {out.parent}: {err.strerror or err}") from None
    try:
        yield staging
        mode = _umask_modes()
        for path in [staging, *staging.rglob("*")]:
            if path.is_file():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            if not path.is_symlink():  # mkdtemp makes 0700 and some writers 0600: use the user's umask instead
                path.chmod(mode["dir"] if path.is_dir() else mode["file"])
        if out.exists():
            retired = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _umask_modes() -> dict[str, int]:
    """The permissions a plain ``mkdir`` and ``open(..., "w")`` would give under the current umask."""
    umask = None
    # Linux says it without changing it (os.umask must set one, which another thread could see)
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        umask = next((int(line.split()[1], 8) for line in status if line.startswith("Umask:")), None)
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return {"dir": 0o777 & ~umask, "file": 0o666 & ~umask}


def make_parent(out: Path) -> None:
    """Create the parent directories of ``out``, or say in one line why they cannot be."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FreezeframeError(f"cannot create {out.parent}: {err.strerror or err}") from None


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file through a temporary name, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a mix; an interrupted write leaves no
    temporary behind (or, after a hard kill, a hidden ``.NAME.tmp-PID``).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
