"""Writing outputs so that a reader never sees them half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from freezeframe.errors import FreezeframeError
from freezeframe.frames import is_frame
from freezeframe.interrupt import ctrl_c_deferred
from freezeframe.layouts import Layout, check_replaceable


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_dir(out: Path, overwrite: bool, layout: Layout | None = None, inputs: tuple[Path | None, ...] = (),
                     option: str = "--out") -> None:
    """Refuse to replace an existing, non-empty directory unless asked to, and never one freezeframe did not write.

    Args:
        out: the directory to write.
        overwrite: replacing an existing directory was asked for.
        layout: the kind of output this is; a non-empty ``out`` of another kind, or holding anything freezeframe
            did not write (see :func:`check_replaceable`), is refused even with ``overwrite``.
        inputs: files this run reads (a DataFrame among them lies nowhere); none may lie inside ``out``.
        option: how messages name ``out``.
    """
    check_output_path(out, option)
    resolved = out.resolve()
    if resolved == Path.cwd() or resolved in Path.cwd().parents:
        raise FreezeframeError(f"{option} {out} is the current directory or holds it; choose a new directory path")
    for source in inputs:
        if source is not None and not is_frame(source) and resolved in Path(source).resolve().parents:
            raise FreezeframeError(f"{option} {out} holds the input {source}; choose another path")
    if not (out.is_dir() and any(out.iterdir())):
        return
    if layout is not None:
        check_replaceable(out, layout, option)
    if not overwrite:
        raise FreezeframeError(f"{option} {out} already exists and is not empty; pass --overwrite or choose another path")


def check_output_path(out: Path, option: str, directory: bool = True) -> None:
    """Refuse, before any work, an output path of the wrong type or whose place cannot be written.

    Args:
        out: a directory (``directory``) or file to write.
        option: how messages name it, e.g. ``--out``.
        directory: ``out`` is a directory to write, not a file.
    """
    if directory and out.exists() and not out.is_dir():
        raise FreezeframeError(f"{option} {out} is a file; choose a directory path")
    if not directory and out.is_dir():
        raise FreezeframeError(f"{option} {out} is a directory; choose a file path")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise FreezeframeError(f"{option} {out}: {blocker} is a file, not a directory; choose another path")
    check_writable(out.parent, f"{option} {out}")


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
def atomic_directory(out: Path, overwrite: bool = False, layout: Layout | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``out`` in one rename.

    If the block raises (or the process dies), ``out`` is untouched and the temporary is removed
    (or, after a hard kill, left under a hidden ``.NAME.tmp-*`` name that never looks complete).
    """
    out = Path(out)
    if out.is_symlink():  # write where the link points and keep the link: renaming onto the link itself replaced it
        out = out.resolve()  # with a directory (leaving it under a hidden name) or failed when it pointed nowhere
    check_output_dir(out, overwrite, layout)
    make_parent(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as err:
        raise FreezeframeError(f"cannot write in {out.parent}: {err.strerror or err}") from None
    existed = out.exists()
    try:
        with _write_failures_named(out, "it is as it was" if existed else "nothing was left there"):
            yield staging
            mode = _umask_modes()
            for path in [staging, *staging.rglob("*")]:
                if path.is_file():
                    with open(path, "rb") as handle:
                        os.fsync(handle.fileno())
                if not path.is_symlink():  # mkdtemp makes 0700 and some writers 0600: use the user's umask instead
                    path.chmod(mode["dir"] if path.is_dir() else mode["file"])
            # Ctrl-C or SIGTERM between the two renames would leave neither directory at ``out``: they wait
            with ctrl_c_deferred():
                if out.exists():
                    retired = out.with_name(f".{out.name}.old-{os.getpid()}")
                    out.rename(retired)
                    try:
                        staging.rename(out)
                    except OSError:
                        retired.rename(out)  # the user's output stays where it was
                        raise
                    shutil.rmtree(retired, ignore_errors=True)
                else:
                    staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def write_failure(err: BaseException) -> OSError | None:
    """The system's reason a write failed: ``err`` itself, or the one safetensors gives only in its text
    (``I/O error: File too large (os error 27)``); ``None`` when ``err`` is no failed write."""
    from safetensors import SafetensorError

    if isinstance(err, OSError):
        return err
    found = _OS_ERROR.search(str(err)) if isinstance(err, SafetensorError) else None
    return OSError(int(found.group(1)), os.strerror(int(found.group(1)))) if found else None


@contextlib.contextmanager
def _write_failures_named(out: Path, outcome: str) -> Iterator[None]:
    """Turn a write that failed (a full disk, a file-size limit, an I/O error) into one line naming ``out``."""
    try:
        yield
    except Exception as err:
        failure = write_failure(err)
        if failure is None:
            raise
        raise FreezeframeError(f"cannot write {out}: {failure.strerror or failure}; {outcome}") from None


@contextlib.contextmanager
def output_claimed(out: Path, option: str = "--out") -> Iterator[None]:
    """Hold ``out`` for this process while a run writes it; another process that tries the same is refused in one
    line (two trainings into one --out interleaved their checkpoints, and the later silently replaced the earlier's
    model, both saying it was saved).

    The claim is a kernel lock (``flock``) on a hidden ``.NAME.lock`` beside ``out``, removed on release: a killed
    process leaves the file, never the lock. Where ``fcntl`` does not exist (Windows) nothing is held.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    shown, out = out, Path(out).resolve()
    check_output_dir(Path(shown), overwrite=True, option=option)  # its type and place (the current directory, /)
    made = [p for p in out.parents if not p.exists()]  # removed again if the run leaves them empty
    make_parent(out)
    path = out.with_name(f".{out.name}.lock")
    while True:
        try:
            handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held open until the block ends
        except OSError as err:
            raise FreezeframeError(f"cannot write in {out.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise FreezeframeError(f"{option} {shown} is being written by another freezeframe process (pid {holder}); "
                                   f"wait for it to end, or choose another {option}") from None
        try:  # the holder before us may have removed the file after we opened it: claim the one at ``path``
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            break
        handle.close()
    try:
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking: a process waiting for this file then opens a new one
        handle.close()
        for directory in made:
            with contextlib.suppress(OSError):  # only when nothing is in it
                directory.rmdir()


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


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through, piece by piece: a temporary beside it, fsynced and renamed over ``path``
    when the block ends without an error. Anything else (an error, Ctrl-C) removes the temporary and leaves ``path``
    as it was; after a hard kill, a hidden ``.NAME.tmp-PID`` remains. A symbolic link is written through, as in
    :func:`atomic_write_bytes`."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))  # unlike Path.resolve, no error on a loop of links
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a file through a temporary name, fsync, then rename over ``path``.

    A reader sees the old file or the new one, never a mix; an interrupted write leaves no
    temporary behind (or, after a hard kill, a hidden ``.NAME.tmp-PID``). A symbolic link is written through,
    as a shell's ``>`` writes: the rename would replace the link itself and leave the file it points to as it was.
    """
    with atomic_writer(path) as handle:
        handle.write(payload)
