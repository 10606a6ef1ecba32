"""What each kind of directory freezeframe writes holds, and how to tell one from another (or from the user's).

A :class:`Layout` names the files and subdirectories of a model directory, an export directory, a checkpoint and a
comparison report; :func:`recognize` tells which one a directory is, and :func:`check_replaceable` refuses to
replace one that holds anything freezeframe did not write. :mod:`freezeframe.storage` writes them atomically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from freezeframe.errors import FreezeframeError

META_FILE = "freezeframe.json"
"""A trained model's metadata (labels, settings, history), beside its weights."""
CHECKPOINT_DIR = "checkpoint"
"""Where an unfinished (or ``--keep-checkpoint``) run keeps its checkpoint, inside ``--out``."""
EXPORT_META = "export.json"
"""An export directory's metadata (labels, shapes, parity, source digest), beside its graphs."""
ONNX_DIR = "onnx"
"""The export directory ``freezeframe export`` writes inside a model directory by default."""
CONTENTS_KEY = "contents"
"""The key under which ``freezeframe.json`` and ``export.json`` list the names written beside them."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "added_tokens.json")
"""A Hugging Face tokenizer's files (a baseline's vocabulary is ``vocab.txt`` too)."""


@dataclass(frozen=True)
class Layout:
    """What one kind of directory freezeframe writes may hold, so that ``--overwrite`` can tell its files from the user's.

    Args:
        kind: how messages name it, e.g. ``a model directory (freezeframe train)``.
        markers: names one of which it holds at its top (how it is recognized).
        files: regular expressions over the names of the files it writes at its top.
        dirs: ``(regular expression, layout)`` of the directories it writes at its top and what they hold.
        recorded: a JSON file at its top whose ``contents`` list names more files written there (the tokenizer's
            files vary with the tokenizer).
    """

    kind: str
    markers: tuple[str, ...]
    files: tuple[str, ...]
    dirs: tuple[tuple[str, Layout], ...] = ()
    recorded: str | None = None

    def foreign(self, directory: Path, prefix: str = "") -> list[str]:
        """Paths under ``directory`` (relative, ``/``-separated) that freezeframe did not write there."""
        files = set(self.files) | {re.escape(name) for name in _recorded_names(directory, self.recorded)}
        found = []
        for path in sorted(directory.iterdir()):
            name = _unhidden(path.name)
            if path.is_dir() and not path.is_symlink():
                inner = next((layout for pattern, layout in self.dirs if re.fullmatch(pattern, name)), None)
                if inner is None:
                    found.append(f"{prefix}{path.name}/")
                elif name == path.name:  # a hidden leftover (.onnx.tmp-*) is freezeframe's, whatever it holds
                    found += inner.foreign(path, f"{prefix}{path.name}/")
            elif path.is_symlink() or not any(re.fullmatch(pattern, name) for pattern in files):
                found.append(f"{prefix}{path.name}")
        return found


def _unhidden(name: str) -> str:
    """``NAME`` for the hidden leftovers of freezeframe's atomic writes (``.NAME.tmp-*``, ``.NAME.old-*``) after a hard kill."""
    leftover = re.fullmatch(r"\.(.+)\.(?:tmp|old)-[^.]+", name)
    return leftover.group(1) if leftover else name


def _recorded_names(directory: Path, recorded: str | None) -> list[str]:
    if recorded is None:
        return []
    try:
        names = json.loads((directory / recorded).read_text(encoding="utf-8")).get(CONTENTS_KEY, [])
    except (OSError, ValueError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def export_source(directory: Path) -> dict:
    """The ``source`` record of an export directory's ``export.json`` (the model directory and the digest of its
    weights), or ``{}`` when there is none to read: callers only compare or name it."""
    try:
        source = json.loads((Path(directory) / EXPORT_META).read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return source if isinstance(source, dict) else {}


def _names(*names: str) -> tuple[str, ...]:
    return tuple(re.escape(name) for name in names)


WORD_TOKENIZER_FILE = "word_tokenizer.json"
"""The baseline's tokenizer version, beside its ``vocab.txt`` in a model directory and in its export."""
_MODEL_FILES = _names(META_FILE, "config.json", "model.safetensors", "baseline_config.json", "modeling_freezeframe.py",
                      WORD_TOKENIZER_FILE, *TOKENIZER_FILES)
EXPORT_LAYOUT = Layout("an export directory (freezeframe export)", (EXPORT_META,),
                       _names(EXPORT_META, "model.onnx", "model.int8.onnx", META_FILE, "config.json", WORD_TOKENIZER_FILE,
                              *TOKENIZER_FILES),
                       recorded=EXPORT_META)
CHECKPOINT_LAYOUT = Layout("a checkpoint directory", ("checkpoint.json",),
                           (r"member-\d+\.pt", r"checkpoint\.json", r"state\.pt"))  # state.pt: before member files
MODEL_LAYOUT = Layout(
    "a model directory (freezeframe train)", (META_FILE, CHECKPOINT_DIR), _MODEL_FILES,
    dirs=((re.escape(CHECKPOINT_DIR), CHECKPOINT_LAYOUT), (re.escape(ONNX_DIR), EXPORT_LAYOUT),
          (r"member-\d+", Layout("an ensemble member's directory", (META_FILE,), _MODEL_FILES,
                                  dirs=((re.escape(ONNX_DIR), EXPORT_LAYOUT),)))),
    recorded=META_FILE,
)
REPORT_LAYOUT = Layout("a report directory (freezeframe compare)", ("results.json",),
                       _names("results.json", "predictions.csv", "report.md", "report.html", "confusion_matrices.png",
                              "learning_curves.png", "accuracy_per_run.png"))
LAYOUTS = (EXPORT_LAYOUT, REPORT_LAYOUT, MODEL_LAYOUT)
"""The directories freezeframe writes, the most specific first (an export directory holds a ``freezeframe.json`` too)."""


def recognize(directory: Path) -> Layout | None:
    """Which kind of freezeframe output ``directory`` is, by the markers at its top (``None``: none)."""
    return next((layout for layout in LAYOUTS if any((directory / name).exists() for name in layout.markers)), None)


def check_replaceable(out: Path, layout: Layout, option: str = "--out") -> None:
    """Refuse to replace a non-empty ``out`` that is not ``layout``'s kind, or that holds anything freezeframe did not write.

    Args:
        out: an existing directory that is about to be replaced.
        layout: the kind of output that will replace it.
        option: how messages name ``out``.
    """
    found = recognize(out)
    if found is None:
        held = _some(sorted(p.name for p in out.iterdir()))
        raise FreezeframeError(f"{option} {out} was not written by freezeframe (it holds {held}); --overwrite only replaces "
                               "freezeframe's own output, so choose another path or empty it yourself")
    if found is not layout:
        raise FreezeframeError(f"{option} {out} is {found.kind}, not {layout.kind}; choose another path")
    foreign = layout.foreign(out)
    if foreign:
        raise FreezeframeError(f"{option} {out} holds files freezeframe did not write ({_some(foreign)}); it replaces only "
                               "its own output and never deletes yours: move them out or choose another path")


def _some(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def not_a_model(directory: Path, missing: str) -> str:
    """Why ``directory``, given as ``--model``, is not a model to load (``missing`` names the file it lacks): an
    interrupted run's checkpoint and a baseline's directory are named as what they are."""
    if not (directory / "config.json").exists() and (directory / CHECKPOINT_DIR).is_dir():
        return (f"{directory} holds only an interrupted training run's {CHECKPOINT_DIR}/, not a model; finish it with "
                f"`freezeframe train ... --out {directory} --resume`")
    try:
        trained = json.loads((directory / META_FILE).read_text(encoding="utf-8"))["settings"]["model"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        trained = None
    if (directory / "baseline_config.json").exists() or trained == "baseline":
        return (f"{directory} is a from-scratch baseline (word vectors, no pretrained encoder) and cannot be trained "
                "from; use --model baseline to train another")
    return f"{directory} is not {missing}"
