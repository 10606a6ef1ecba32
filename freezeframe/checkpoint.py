"""End-of-epoch checkpoints in ``OUT/checkpoint/``, so an interrupted run can be resumed exactly.

The checkpoint is one file, ``state.pt``, replaced atomically after every epoch: the trainable
weights, optimizer (with its schedule), every random generator, the early-stopping state and the history.
``checkpoint.json`` beside it is a readable summary. While training runs, ``OUT`` holds only
``checkpoint/``, so it never looks like a finished model (no freezeframe.json, config.json or
weights); the finished model replaces it in one rename (see :func:`storage.atomic_directory`).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import torch

from freezeframe.config import RunConfig
from freezeframe.errors import FreezeframeError, report
from freezeframe.storage import (
    CHECKPOINT_DIR,
    MODEL_MARKERS,
    atomic_write_bytes,
    check_output_dir,
    file_sha256,
    make_parent,
)

STATE_FILE = "state.pt"
SUMMARY_FILE = "checkpoint.json"
FORMAT = 3

_FLAG_NAMES = {"cache_budget_mb": "--cache-budget", "cache": "--cache/--no-cache"}
_IGNORED_SETTINGS = {"data.train", "data.valid", "train.show_progress"}
"""Settings that may change on resume: file paths (their contents are compared) and the progress bar."""
_BASELINE_ONLY = {"model.vocab_size", "model.embedding_dim"}
"""Settings a pretrained encoder ignores."""


class TrainingInterrupted(FreezeframeError):
    """Ctrl-C during training: the last complete epoch is saved and can be resumed."""

    exit_code = 130


def run_fingerprint(run: RunConfig) -> dict:
    """What must not change between an interrupted run and its resumption: settings and data contents."""
    ignored = _IGNORED_SETTINGS | (set() if run.model.is_baseline else _BASELINE_ONLY)
    flat: dict[str, object] = {}
    for section, values in run.to_dict().items():
        for name, value in values.items():
            if f"{section}.{name}" not in ignored:
                flat[f"{section}.{name}"] = value
    data = {"train": file_sha256(run.data.train) if run.data.train.is_file() else None}
    if run.data.valid is not None:
        data["valid"] = file_sha256(run.data.valid) if run.data.valid.is_file() else None
    return {"settings": flat, "data": data}


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between two fingerprints, e.g. ``--lr 0.001 (checkpoint: 0.0003)``."""
    problems = []
    for key in sorted(set(saved["settings"]) & set(current["settings"])):  # settings new to a version are not compared
        old, new = saved["settings"][key], current["settings"][key]
        if old != new:
            problems.append(f"{_flag(key)} {new} (checkpoint: {old})")
    for role in sorted(set(saved["data"]) | set(current["data"])):
        old, new = saved["data"].get(role), current["data"].get(role)
        if old != new:
            what = "is new" if old is None else "is missing" if new is None else "has different contents"
            problems.append(f"the {_flag(role)} file {what}")
    return problems


def _flag(key: str) -> str:
    name = key.split(".")[-1]
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


class CheckpointStore:
    """The checkpoint of one training run toward ``out``.

    Args:
        out: the run's ``--out`` directory; the checkpoint lives in ``out/checkpoint``.
        fingerprint: settings and data hashes of the run (see :func:`run_fingerprint`).
        saved: the state to resume from, or ``None`` to start at epoch 1.
        keep: the checkpoint outlives the run (``--keep-checkpoint``), so the last epoch is saved too;
            otherwise the run's final model is written instead of a last checkpoint.
    """

    def __init__(self, out: Path, fingerprint: dict, saved: dict | None = None, keep: bool = False) -> None:
        self.out = Path(out)
        self.keep = keep
        self.extra: dict = {}
        """Values saved with every epoch's state (the LP-FT probe's record, an ensemble's finished members),
        back in ``saved`` on resume."""
        self.stage = ""
        """Where in a longer run the current loop is, for messages, e.g. `` (member 2 of 3)``."""
        self.directory = self.out / CHECKPOINT_DIR
        self.fingerprint = fingerprint
        self.saved = saved
        self.saved_epoch = len(saved["result"]["history"]) if saved else 0
        self._writer: threading.Thread | None = None
        self._failure: OSError | FreezeframeError | None = None

    def save(self, state: dict) -> None:
        """Replace the checkpoint with ``state`` (a dict of tensors and plain values), atomically.

        The state is serialized at once; writing, fsync and rename run in a background thread while
        the next epoch trains (the fsync of tens of MB would otherwise stall every epoch).
        """
        self.flush()
        state = {"format": FORMAT, "fingerprint": self.fingerprint, **self.extra, **state}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        summary = json.dumps({"epoch": state["epoch"], **state["result"], "fingerprint": self.fingerprint}, indent=2)

        def write(payload: bytes = buffer.getvalue(), epoch: int = state["epoch"]) -> None:
            try:
                make_parent(self.directory / STATE_FILE)
                atomic_write_bytes(self.directory / STATE_FILE, payload)
                atomic_write_bytes(self.directory / SUMMARY_FILE, summary.encode())
                self.saved_epoch = epoch
            except (OSError, FreezeframeError) as err:  # said by flush(), in the training thread
                self._failure = err

        self._writer = threading.Thread(target=write, name="freezeframe-checkpoint")
        self._writer.start()

    def flush(self) -> None:
        """Wait until the checkpoint being written is on disk; report a write that failed."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._failure is not None:
            err, self._failure = self._failure, None
            reason = err.strerror or err if isinstance(err, OSError) else err
            raise FreezeframeError(f"cannot save the checkpoint in {self.directory}: {reason}")

    def start_member(self, index: int) -> None:
        """The next ensemble member trains from its first epoch: nothing of it is saved yet."""
        self.flush()
        self.saved, self.saved_epoch = None, 0
        self.extra["member"] = index

    def move_into(self, directory: Path) -> None:
        """Move the checkpoint into ``directory`` (the staged final model) to keep it."""
        self.flush()
        if self.directory.is_dir():
            self.directory.rename(Path(directory) / CHECKPOINT_DIR)

    def interrupted(self, epoch: int, epochs: int) -> TrainingInterrupted:
        """The error to raise when Ctrl-C arrives during ``epoch``."""
        self.flush()
        if self.saved_epoch == 0:
            if self.extra.get("member"):
                return TrainingInterrupted(f"interrupted in epoch {epoch} of {epochs}{self.stage}; the earlier members' progress is "
                                           f"saved in {self.directory}; to continue, run the same command again with --resume")
            return TrainingInterrupted(f"interrupted in epoch {epoch} of {epochs}, before any epoch was saved; "
                                       "nothing to resume, run the command again to start over")
        when = f"after epoch {epoch}" if self.saved_epoch >= epoch else f"in epoch {epoch}"
        return TrainingInterrupted(
            f"interrupted {when} of {epochs}{self.stage}; epochs 1-{self.saved_epoch} are saved in {self.directory}; "
            "to continue, run the same command again with --resume"
        )


def read_state(path: Path) -> dict:
    """Load a ``state.pt`` onto the CPU, or say in one line why it cannot be used."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise FreezeframeError(f"the checkpoint {path} is damaged ({type(err).__name__}); "
                               "drop --resume and pass --overwrite to start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FreezeframeError(f"the checkpoint {path} was written by another freezeframe version; "
                               "drop --resume and pass --overwrite to start over")
    return state


def open_checkpoint(out: Path, run: RunConfig, overwrite: bool = False, resume: bool = False,
                    keep: bool = False) -> CheckpointStore:
    """Check ``--out`` for a run that writes checkpoints there; load the checkpoint when resuming.

    Args:
        out: the model directory the run will write.
        run: the run's settings (compared with the checkpoint's when resuming).
        overwrite: an existing model (or stale checkpoint) in ``out`` may be replaced.
        resume: continue from ``out/checkpoint`` when it exists.
        keep: the checkpoint is kept after success (see :class:`CheckpointStore`).

    Returns:
        The store the training loop saves into (and resumes from).
    """
    out = Path(out)
    check_output_dir(out, overwrite=True, inputs=(run.data.train, run.data.valid))  # not the contents: below
    directory = out / CHECKPOINT_DIR
    state_path = directory / STATE_FILE
    fingerprint = run_fingerprint(run)
    others = [p.name for p in out.iterdir() if p.name != CHECKPOINT_DIR] if out.is_dir() else []
    if resume and state_path.is_file():
        saved = read_state(state_path)
        differences = fingerprint_differences(saved["fingerprint"], fingerprint)
        if differences:
            raise FreezeframeError(
                f"cannot resume from {directory}: this run differs from the interrupted one: {'; '.join(differences)}; "
                "use the original settings, or drop --resume and pass --overwrite to start over"
            )
        store = CheckpointStore(out, fingerprint, saved, keep)
        for stale in out.parent.glob(f".{out.name}.tmp-*"):  # a final write cut short by the kill
            shutil.rmtree(stale, ignore_errors=True)
        report(f"resuming from the checkpoint of epoch {store.saved_epoch} in {directory}")
        return store
    if state_path.is_file() and not overwrite:
        epochs = len(read_state(state_path)["result"]["history"])
        raise FreezeframeError(
            f"--out {out} holds the checkpoint of an unfinished run ({epochs} epochs done); pass --resume to "
            "continue it or --overwrite to start over"
        )
    if others and resume and not overwrite:
        held = ", ".join(sorted(others)[:3])
        raise FreezeframeError(f"--resume: {out} has no checkpoint to resume (it holds {held}); "
                               "drop --resume and pass --overwrite to replace it, or choose another --out")
    if others:
        check_output_dir(out, overwrite, MODEL_MARKERS)
    if resume:
        report(f"--resume: no checkpoint in {directory}; starting from epoch 1")
    if directory.exists():
        shutil.rmtree(directory)
    return CheckpointStore(out, fingerprint, keep=keep)


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
