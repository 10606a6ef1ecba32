"""End-of-epoch checkpoints in ``OUT/checkpoint/``, so an interrupted run can be resumed exactly.

The checkpoint is one file per ensemble member (``member-0.pt`` for a single model), replaced
atomically after every epoch of that member: the trainable weights, optimizer (with its schedule),
every random generator, the early-stopping state and the history; a member that finished keeps
its trained weights there instead. ``checkpoint.json`` beside them is a readable summary, rewritten after each
member file: a run stopped by Ctrl-C or SIGTERM finishes writing both, and only a hard kill (SIGKILL, power loss)
between the two leaves it one save behind (``--resume`` reads the member files). While training runs, ``OUT`` holds only
``checkpoint/``, so it never looks like a finished model (no freezeframe.json, config.json or
weights); the finished model replaces it in one rename (see :func:`storage.atomic_directory`).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from freezeframe.config import RunConfig
from freezeframe.errors import FreezeframeError, report
from freezeframe.fingerprint import fingerprint_differences, run_fingerprint
from freezeframe.interrupt import stopped_by
from freezeframe.layouts import CHECKPOINT_DIR, MODEL_LAYOUT, check_replaceable
from freezeframe.storage import atomic_write_bytes, check_output_dir, make_parent
from freezeframe.tables import format_names

STATE_FILE = "member-{}.pt"
"""Each ensemble member's (or the single model's, member 0) state, replaced at the end of its epochs."""
SUMMARY_FILE = "checkpoint.json"
FORMAT = 3


class TrainingInterrupted(FreezeframeError):
    """Ctrl-C (or SIGTERM) during training: the last complete epoch is saved and can be resumed. The command
    exits with 128 + the signal's number (see :func:`interrupt.exit_status`)."""

    exit_code = 130


class TrainingDiverged(FreezeframeError):
    """The weights stopped being finite numbers: no model is written, and the epochs saved before are of no use
    (resuming with the same settings diverges again)."""


class CheckpointStore:
    """The checkpoint of one training run toward ``out``: every ensemble member's loop state (one
    member for a single model), written together.

    Members may train at once, in threads: each saves through its own :class:`MemberCheckpoint`
    at the end of its epochs, and the file holds the latest state of each (or, for a finished
    member, its trained weights).

    Args:
        out: the run's ``--out`` directory; the checkpoint lives in ``out/checkpoint``.
        fingerprint: settings and data hashes of the run (see :func:`fingerprint.run_fingerprint`).
        saved: the checkpoint to resume from (as :func:`read_state` returns it), or ``None`` to start afresh.
        keep: the checkpoint outlives the run (``--keep-checkpoint``), so the last epoch is saved too;
            otherwise the run's final model is written instead of a last checkpoint.
        count: how many members the run trains.
    """

    def __init__(self, out: Path, fingerprint: dict, saved: dict | None = None, keep: bool = False,
                 count: int = 1, replaces: bool = False) -> None:
        self.out = Path(out)
        self.keep = keep
        self.count = count
        """How many members the run trains (1 for a single model)."""
        self.directory = self.out / CHECKPOINT_DIR
        self.fingerprint = fingerprint
        self._saved_fingerprint: dict | None = saved["fingerprint"] if saved else None
        self.members: dict[int, dict] = dict(saved["members"]) if saved else {}
        """Each member's latest state: a loop's (see ``train._snapshot``) or, once it finished, ``{"done": ...}``."""
        if saved:
            self.count = max(count, saved["count"])
        self.seconds_before = saved.get("seconds", 0.0) if saved else 0.0
        """The run's training time (wall clock) in its earlier sessions, up to their last save."""
        self._clock: float | None = None
        self._replaces = replaces
        """An earlier run's checkpoint is in ``directory``: removed at this run's first save, so that
        stopping before then leaves it as it was."""
        self._made_out = not self.out.exists()
        """``out`` did not exist before this run: :meth:`discard` may remove it again."""
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._failure: OSError | FreezeframeError | None = None

    def record_classes(self, labels: list[str]) -> None:
        """Record the run's classes in their order, which the head's rows follow, for the saves to come; a resumed
        run must have the checkpoint's order (the data's digest fixes the classes, not how a version orders them)."""
        if self._saved_fingerprint is not None:
            before = self._saved_fingerprint.get("classes") or sorted(labels)  # unrecorded: sorted()'s order
            if before != labels:
                # from the first class they place differently: the classes before it would hide the difference
                first = next((i for i, (old, new) in enumerate(zip(before, labels)) if old != new), 0)
                raise FreezeframeError(
                    f"cannot resume from {self.directory}: from class {first + 1} on, its head orders the classes "
                    f"{format_names(before[first:])}, this version {format_names(labels[first:])}; only the earlier "
                    "freezeframe that wrote it can resume it, or drop --resume and pass --overwrite to start over")
        self.fingerprint["classes"] = list(labels)

    def start_clock(self) -> None:
        """Training starts: every save from now on records the run's training time so far (earlier sessions'
        included), which a resumed run's ``train_seconds`` adds to its own."""
        self._clock = time.perf_counter()

    def member(self, index: int) -> MemberCheckpoint:
        """What member ``index`` saves through and resumes from."""
        return MemberCheckpoint(self, index)

    def saved_epochs(self) -> dict[int, int]:
        """Epochs saved per member (0 where none is; a finished member's count is its last epoch)."""
        def epochs(state: dict | None) -> int:
            if state is None:
                return 0
            return len(state["done"]["loop"]["history"] if "done" in state else state["result"]["history"])

        count = max([self.count, *(k + 1 for k in self.members)])
        return {k: epochs(self.members.get(k)) for k in range(count)}

    def finished(self, index: int) -> dict | None:
        """The record :meth:`finish` saved for a member that completed before an interruption."""
        return self.members.get(index, {}).get("done")

    def finish(self, index: int, record: dict) -> None:
        """Member ``index`` is trained: keep its weights and history instead of its loop state."""
        self._put(index, {"done": record})

    def _put(self, index: int, state: dict) -> None:
        """Replace member ``index``'s state and its file, atomically.

        The state is serialized at once (its tensors change as training goes on); writing, fsync and
        rename run in a background thread while training continues (the fsync of tens of MB would
        otherwise stall every epoch)."""
        buffer = io.BytesIO()
        seconds = self.seconds_before + (time.perf_counter() - self._clock if self._clock is not None else 0.0)
        torch.save({"format": FORMAT, "fingerprint": self.fingerprint, "member": index, "members": self.count,
                    "seconds": seconds, "state": state}, buffer)
        with self._lock:
            if self._replaces:
                shutil.rmtree(self.directory, ignore_errors=True)
                self._replaces = False
            self.members[index] = state
            summary = json.dumps({"epochs_saved": {str(k): v for k, v in self.saved_epochs().items()},
                                  "fingerprint": self.fingerprint}, indent=2)
            previous = self._writer
            path = self.directory / STATE_FILE.format(index)

            def write(payload: bytes = buffer.getvalue()) -> None:
                if previous is not None:
                    previous.join()  # files are replaced in the order the states arrived
                try:
                    make_parent(path)
                    atomic_write_bytes(path, payload)
                    atomic_write_bytes(self.directory / SUMMARY_FILE, summary.encode())
                except (OSError, FreezeframeError) as err:  # said by flush(), in the training thread
                    self._failure = err

            self._writer = threading.Thread(target=write, name="freezeframe-checkpoint")
            self._writer.start()

    def flush(self) -> None:
        """Wait until the checkpoints being written are on disk; report a write that failed."""
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.join()
        if self._failure is not None:
            err, self._failure = self._failure, None
            reason = err.strerror or err if isinstance(err, OSError) else err
            if not has_state(self.directory):  # the first save failed: leave no empty checkpoint (or --out) behind
                self.discard()
            raise FreezeframeError(f"cannot save the checkpoint in {self.directory}: {reason}")

    def discard(self) -> None:
        """Remove what this run saved, and ``out`` when this run created it (a diverged run leaves nothing behind);
        an earlier run's checkpoint that this run has not yet replaced stays."""
        with contextlib.suppress(FreezeframeError):  # a failed write leaves nothing worth naming now
            self.flush()
        if not self._replaces:
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._made_out:
            with contextlib.suppress(OSError):  # only when nothing else is in it
                self.out.rmdir()

    def move_into(self, directory: Path) -> None:
        """Move the checkpoint into ``directory`` (the staged final model) to keep it."""
        self.flush()
        if self._replaces:  # this run saved nothing: what is there is the earlier run's
            return
        if self.directory.is_dir():
            self.directory.rename(Path(directory) / CHECKPOINT_DIR)

    def interrupted(self, epochs: int) -> TrainingInterrupted:
        """The error to raise when Ctrl-C or SIGTERM stopped training (of ``epochs`` epochs per member)."""
        self.flush()
        saved, stopped = self.saved_epochs(), stopped_by()
        if not any(saved.values()):
            if self._replaces:
                return TrainingInterrupted(f"{stopped} before any epoch was saved; {self.directory} still holds the "
                                           "earlier run's checkpoint")
            return TrainingInterrupted(f"{stopped} before any epoch was saved; nothing to resume, run the command "
                                       "again to start over")
        if len(saved) == 1:
            done = f"epoch 1 of {epochs} is saved" if saved[0] == 1 else f"epochs 1-{saved[0]} of {epochs} are saved"
        else:
            done = "saved: " + ", ".join(f"member {k + 1}: {n} of {epochs} epochs" for k, n in saved.items())
        return TrainingInterrupted(f"{stopped}; {done} in {self.directory}; to continue, run the same command "
                                   "again with --resume")


def describe_saved(epochs: dict[int, int]) -> str:
    """What a checkpoint holds, e.g. ``epoch 2`` or ``member 1 epoch 2, member 2 epoch 1``."""
    if len(epochs) == 1:
        return f"epoch {next(iter(epochs.values()))}"
    return ", ".join(f"member {k + 1} epoch {e}" for k, e in epochs.items())


class MemberCheckpoint:
    """One member's view of a :class:`CheckpointStore`: what ``train.train_loop`` saves through."""

    def __init__(self, store: CheckpointStore, index: int) -> None:
        self.store, self.index = store, index
        state = store.members.get(index)
        self.saved: dict | None = state if state is not None and "done" not in state else None
        """The loop state to resume from, or ``None`` to start at epoch 1."""
        self.keep = store.keep
        self.extra: dict = {}
        """Values saved with every epoch's state (the LP-FT probe's record), back in ``saved`` on resume."""

    def save(self, state: dict) -> None:
        """Replace this member's state with ``state`` (a dict of tensors and plain values)."""
        self.store._put(self.index, {**self.extra, **state})

    def flush(self) -> None:
        self.store.flush()

def has_state(directory: Path) -> bool:
    """Whether ``directory`` holds a checkpoint's state."""
    return any(directory.glob(STATE_FILE.format("*")))


def read_state(directory: Path) -> dict:
    """Load a checkpoint directory's states onto the CPU (``{"fingerprint", "members": {k: state}, "count",
    "seconds"}``, the last the run's training time at its latest save), or say in one line why they cannot be used."""
    members, fingerprint, count, seconds = {}, None, 1, 0.0
    for path in sorted(directory.glob(STATE_FILE.format("*"))):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise FreezeframeError(f"the checkpoint {path} is damaged ({type(err).__name__}); "
                                   "drop --resume and pass --overwrite to start over") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise FreezeframeError(f"the checkpoint {path} was written by another freezeframe version; "
                                   "drop --resume and pass --overwrite to start over")
        members[int(state["member"])] = state["state"]
        fingerprint, count = state["fingerprint"], max(count, int(state["members"]))
        seconds = max(seconds, float(state.get("seconds", 0.0)))  # absent from checkpoints of earlier versions
    return {"fingerprint": fingerprint, "members": members, "count": count, "seconds": seconds}


def open_checkpoint(out: Path, run: RunConfig, overwrite: bool = False, resume: bool = False,
                    keep: bool = False, count: int = 1) -> CheckpointStore:
    """Check ``--out`` for a run that writes checkpoints there; load the checkpoint when resuming.

    Args:
        out: the model directory the run will write.
        run: the run's settings (compared with the checkpoint's when resuming).
        overwrite: an existing model (or stale checkpoint) in ``out`` may be replaced.
        resume: continue from ``out/checkpoint`` when it exists.
        keep: the checkpoint is kept after success (see :class:`CheckpointStore`).
        count: how many members the run trains.

    Returns:
        The store the training loop saves into (and resumes from).
    """
    out = Path(out)
    check_output_dir(out, overwrite=True, inputs=(run.data.train, run.data.valid))  # not the contents: below
    directory = out / CHECKPOINT_DIR
    fingerprint = run_fingerprint(run)
    others = [p.name for p in out.iterdir() if p.name != CHECKPOINT_DIR] if out.is_dir() else []
    unfinished = has_state(directory)
    if resume and unfinished:
        check_replaceable(out, MODEL_LAYOUT)  # the finished model replaces the whole directory
        saved = read_state(directory)
        differences = fingerprint_differences(saved["fingerprint"], fingerprint)
        if differences:
            raise FreezeframeError(
                f"cannot resume from {directory}: this run differs from the interrupted one: {'; '.join(differences)}; "
                "use the original settings, or drop --resume and pass --overwrite to start over"
            )
        store = CheckpointStore(out, fingerprint, saved, keep, count)
        for stale in out.parent.glob(f".{out.name}.tmp-*"):  # a final write cut short by the kill
            shutil.rmtree(stale, ignore_errors=True)
        report(f"resuming from the checkpoint of {describe_saved(store.saved_epochs())} in {directory}")
        return store
    if unfinished and not overwrite:
        held = describe_saved(CheckpointStore(out, fingerprint, read_state(directory)).saved_epochs())
        raise FreezeframeError(
            f"--out {out} holds the checkpoint of an unfinished run ({held} done); pass --resume to "
            "continue it or --overwrite to start over"
        )
    if others and resume and not overwrite:
        held = ", ".join(sorted(others)[:3])
        raise FreezeframeError(f"--resume: {out} has no checkpoint to resume (it holds {held}); "
                               "drop --resume and pass --overwrite to replace it, or choose another --out")
    if others:
        check_output_dir(out, overwrite, MODEL_LAYOUT)
    elif directory.exists():
        check_replaceable(out, MODEL_LAYOUT)  # a checkpoint removed below: never with the user's files in it
    if resume:
        report(f"--resume: no checkpoint in {directory}; starting from epoch 1")
    if directory.exists() and not unfinished:  # an unfinished run's checkpoint stays until this run's first save
        shutil.rmtree(directory)
    return CheckpointStore(out, fingerprint, keep=keep, count=count, replaces=unfinished)


def random_states(batch_rng: random.Random) -> dict:
    """Every random generator the loop draws from: Python's, NumPy's, torch's and the batch order."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(), "numpy": (kind, keys.tolist(), position, has_gauss, gauss),
        "torch": torch.get_rng_state(), "batch_order": batch_rng.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict, batch_rng: random.Random) -> None:
    """Put every generator back where :func:`random_states` found it."""
    random.setstate(states["python"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    batch_rng.setstate(states["batch_order"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
