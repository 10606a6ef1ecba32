"""A training run's fingerprint: what must not change between an interrupted run and its resumption.

:func:`run_fingerprint` records the run's settings (those that may change on resume left out) and a digest of its
data; :func:`fingerprint_differences` says, flag by flag, how a resumed run differs from the interrupted one.
:mod:`freezeframe.checkpoint` saves the fingerprint with every checkpoint and compares it on ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

from freezeframe.config import RunConfig
from freezeframe.frames import FRAME_DIGEST, LabelledFrame, frame_digest, is_frame
from freezeframe.storage import file_sha256

_FLAG_NAMES = {"cache_budget_mb": "--cache-budget"}
_IGNORED_SETTINGS = {"data.train", "data.valid", "train.show_progress"}
"""Settings that may change on resume: file paths or DataFrames (their contents are compared) and the progress bar."""
_BASELINE_ONLY = {"model.vocab_size", "model.embedding_dim"}
"""Settings a pretrained encoder ignores."""

WORDS_KEY = "model.word_tokenizer"
"""The baseline's word tokenizer version in a run's fingerprint."""


def run_fingerprint(run: RunConfig) -> dict:
    """What must not change between an interrupted run and its resumption: settings and data contents."""
    ignored = _IGNORED_SETTINGS | (set() if run.model.is_baseline else _BASELINE_ONLY)
    flat: dict[str, object] = {}
    for section, values in run.to_dict().items():
        for name, value in values.items():
            if f"{section}.{name}" not in ignored:
                flat[f"{section}.{name}"] = value
    if run.model.is_baseline:  # how its vocabulary is cut: the embedding rows of a checkpoint follow it
        from freezeframe.baseline import TOKENIZER_VERSION

        flat[WORDS_KEY] = TOKENIZER_VERSION
    model = Path(run.model.model).expanduser()
    if model.is_dir():  # the same directory however it is named: m, ./m/, /abs/m, from another working directory
        flat["model.model"] = str(model.resolve())
    data = {"train": _data_digest(run.data.train)}
    if run.data.valid is not None:
        data["valid"] = _data_digest(run.data.valid)
    return {"settings": flat, "data": data}


def _data_digest(path: Path | LabelledFrame) -> str | None:
    """The digest of a data file or DataFrame; ``None`` for a pipe, or a file that cannot be read (reading it says
    why, next)."""
    if is_frame(path):
        return frame_digest(path)
    try:
        return file_sha256(path) if path.is_file() else None
    except OSError:
        return None


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable differences between two fingerprints, e.g. ``--lr 0.001 (checkpoint: 0.0003)``."""
    problems = []
    if WORDS_KEY in current["settings"]:  # a baseline checkpoint written before the version was recorded cut ASCII words
        old, new = saved["settings"].get(WORDS_KEY, 1), current["settings"][WORDS_KEY]
        if old != new:
            problems.append(f"the baseline cuts words with tokenizer version {new} (checkpoint: version {old}, whose "
                            "vocabulary this version cannot rebuild: only the earlier freezeframe that wrote it can resume it)")
    for key in sorted(set(saved["settings"]) & set(current["settings"]) - {WORDS_KEY}):  # settings new to a version are not compared
        old, new = saved["settings"][key], current["settings"][key]
        if key == "model.model" and Path(str(old)).is_dir() and Path(str(old)).resolve() == Path(str(new)).resolve():
            continue  # a relative path recorded by an earlier version
        if old != new:
            if isinstance(new, bool) and isinstance(old, bool):  # a switch: --no-cache (checkpoint: --cache)
                problems.append(f"{_switch(key, new)} (checkpoint: {_switch(key, old)})")
            else:
                shown = ["its default" if value is None else value for value in (new, old)]
                problems.append(f"{_flag(key)} {shown[0]} (checkpoint: {shown[1]})")
    for role in sorted(set(saved["data"]) | set(current["data"])):
        old, new = saved["data"].get(role), current["data"].get(role)
        if old != new:
            what = "is new" if old is None else "is missing" if new is None else "has different contents"
            kind = "DataFrame" if str(new or old).startswith(FRAME_DIGEST) else "file"
            problems.append(f"the {_flag(role)} {kind} {what}")
    return problems


def _switch(key: str, on: bool) -> str:
    name = key.split(".")[-1].replace("_", "-")
    return f"--{name}" if on else f"--no-{name}"


def _flag(key: str) -> str:
    name = key.split(".")[-1]
    return _FLAG_NAMES.get(name, "--" + name.replace("_", "-"))
