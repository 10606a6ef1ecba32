"""Side-by-side comparison: every configuration trained and tested on identical splits.

A configuration is a freeze plan of the encoder (``head``, ``last-N``, ``encoder``, ``full``) or ``baseline``.
For each seed the data is cut into the same stratified folds (or the same ``--test`` file) for
every configuration; inside a fold, a stratified share of the training part is held out for
early stopping, exactly as ``freezeframe train`` does, and the fold's test part is never seen in
training. The library function behind ``freezeframe compare`` is :func:`compare_configs`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from freezeframe.config import (
    BASELINE_MODEL,
    COMPARE_CONFIG,
    DEFAULT_COMPARE,
    DEFAULT_MODEL,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    check_fields,
)
from freezeframe.data import check_classes, check_known_labels, load_labelled, warn_absent_labels
from freezeframe.errors import FreezeframeError, logger, reports_held_back, spoken_list
from freezeframe.evaluate import compute_metrics
from freezeframe.frames import LabelledFrame, settings_repr
from freezeframe.results import RunRecord, summarize
from freezeframe.splits import Split, hold_out, make_splits, report_overlap, split_train_valid
from freezeframe.tables import format_names, percent

MAX_SEEDS = 100
"""More repetitions than anyone waits for (each is a training per fold and configuration); a typo's million would
hang while cutting the splits."""


@dataclass
class CompareConfig:
    """What to compare, on which data, and how the splits are made."""

    train: Path | LabelledFrame
    """Labelled file (or pandas DataFrame) every configuration trains on (and is cross-validated on without ``test``)."""
    test: Path | LabelledFrame | None = None
    """Held-out labelled file (or DataFrame); when absent, ``folds``-fold stratified cross-validation of ``train``."""
    folds: int | None = None
    """Number of cross-validation folds (default 5); not allowed together with ``test``."""
    seeds: int = 1
    """Repetitions 0..seeds-1; repetition r reshuffles the folds with seed r and trains seed r (a configuration of K
    members: seeds rK..rK+K-1, so that no two repetitions share a member)."""
    configs: list[str] = field(default_factory=lambda: list(DEFAULT_COMPARE))
    """Configurations: ``baseline`` or an encoder freeze plan (``head``, ``last-N``, ``encoder``, ``full``)."""
    model: str = DEFAULT_MODEL
    """Encoder the freeze plans apply to."""
    text_column: str = "review"
    """Column holding the text."""
    label_column: str = "aspect"
    """Column holding the label name."""
    normalize_labels: bool = False
    """Merge labels that differ only in letter case."""
    valid_fraction: float | None = None
    """Share of each training part held out for early stopping; ``None`` takes each configuration's
    default, exactly as ``freezeframe train`` would (0 for encoder plans, which train on all of it for
    their fixed schedule; 0.15 for ``head`` and the baseline)."""
    epochs: int | None = None
    """Maximum epochs for every configuration; ``None`` keeps each model kind's default."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""

    __repr__ = settings_repr

    def __post_init__(self) -> None:
        check_fields(self)
        problems = []
        if self.test is not None and self.folds is not None:
            problems.append("give either --test FILE or --folds K, not both")
        if self.test is None and self.folds is None:
            self.folds = 5
        if self.folds is not None and self.folds < 2:
            problems.append(f"--folds must be at least 2, got {self.folds}")
        if self.valid_fraction is not None and not 0.0 <= self.valid_fraction < 1.0:
            problems.append(f"--valid-fraction must be at least 0 and below 1, got {self.valid_fraction}")
        if not 1 <= self.seeds <= MAX_SEEDS:
            problems.append(f"--seeds must be between 1 and {MAX_SEEDS}, got {self.seeds}")
        if not self.configs:
            problems.append("--configs is empty; name at least one of baseline, head, last-N, encoder, full")
        unknown = [c for c in self.configs if not COMPARE_CONFIG.match(c)]
        if unknown:
            problems.append(f"--configs: unknown configuration {', '.join(map(repr, unknown))}; use baseline, head, last-N, encoder or full")
        plans = [c for c in self.configs if c != BASELINE_MODEL]
        if self.model == BASELINE_MODEL and plans:
            problems.append(f"--model baseline: freeze plans ({', '.join(plans)}) apply to a pretrained encoder; the "
                            "baseline is a configuration of its own (--configs baseline), so name an encoder as --model")
        if len(set(self.configs)) != len(self.configs):
            problems.append(f"configs repeat a name: {','.join(self.configs)}")
        if problems:  # a ValueError, as every other settings class raises
            raise ValueError("; ".join(problems))

    def run_config(self, name: str, repetition: int) -> RunConfig:
        """The training settings of configuration ``name`` in repetition ``repetition`` (``Split.seed``): seed
        ``repetition``, or for K members ``repetition * K`` (they train seeds ``rK`` to ``rK + K - 1``)."""
        model = ModelConfig(model=BASELINE_MODEL) if name == BASELINE_MODEL else ModelConfig(model=self.model, freeze=name)
        data = DataConfig(self.train, None, self.valid_fraction, self.text_column, self.label_column, self.normalize_labels)
        run = RunConfig(data, model, TrainConfig(epochs=self.epochs, seed=repetition, device=self.device, show_progress=False))
        # K members train with seeds seed..seed+K-1: repetition r takes r*K.. so that no two repetitions share a member
        # (on a --test file they would train it identically, and their spread would shrink)
        run.train.seed = repetition * run.train.ensemble
        return run


def run_split(run: RunConfig, split: Split, labels: list[str]) -> RunRecord:
    """Train ``run`` on the split's training part (early stopping on a held-out share of it when the
    run holds one out, as ``freezeframe train`` would), test it."""
    from freezeframe.fit import train_classifier

    fit_part, valid_part = hold_out(run, split.train)
    started = time.perf_counter()  # the whole cost of a model: loading, the frozen-prefix pass, the epochs
    with _single_thread(run.model.is_baseline):
        outcome = train_classifier(run, None, train_data=fit_part, valid_data=valid_part)
    seconds = time.perf_counter() - started
    if outcome.labels != labels:
        raise FreezeframeError(f"fold {split.fold} lacks a class in training ({outcome.labels} vs {labels}); use fewer folds")
    index = {label: i for i, label in enumerate(labels)}
    probabilities = outcome.classifier().predict_proba(split.test.texts)
    predictions = probabilities.argmax(1).tolist()
    truth = [index[y] for y in split.test.labels]
    metrics = compute_metrics(truth, predictions, labels)
    spec = run.model.model if run.model.is_baseline else run.model.freeze
    return RunRecord(
        spec, split.seed, split.fold, metrics, predictions, split.test_items,
        [asdict(r) for r in outcome.loop.history], outcome.loop.best_epoch, run.train.epochs,
        seconds, outcome.freeze.trainable, outcome.freeze.total, max(1, len(outcome.members)), truth,
    )


@contextlib.contextmanager
def _single_thread(enabled: bool) -> Iterator[None]:
    """Run on one CPU thread: the baseline's tensors are so small that more threads only add
    synchronisation (measured 7x slower with 2 threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    if enabled:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _OncePerShape(logging.Filter):
    """Let a warning through once per wording (numbers aside): each fold repeats the same ones."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        shape = re.sub(r"\d+", "#", record.getMessage())
        if shape in self.seen:
            return False
        self.seen.add(shape)
        return True


@contextlib.contextmanager
def _training_quietly(once: _OncePerShape) -> Iterator[None]:
    """Hide the per-epoch lines of the inner training runs; keep their first warnings."""
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    logger.addFilter(once)
    try:
        yield
    finally:
        logger.removeFilter(once)
        logger.setLevel(level)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def check_before_training(settings: CompareConfig) -> None:
    """Refuse what would fail part-way (an option value, a missing model, a plan deeper than the model) before any run."""
    for name in settings.configs:
        settings.run_config(name, 0)
    plans = [name for name in settings.configs if name != BASELINE_MODEL]
    if not plans:
        return
    from freezeframe.encoder import encoder_depth
    from freezeframe.freeze import FreezePlan

    depth, shared_by = encoder_depth(settings.model), encoder_depth(settings.model, shared=True)
    for name in plans:
        FreezePlan(name).check_depth(depth, settings.model, "--configs", shared_by)


def check_splits(settings: CompareConfig, splits: list[Split], labels: list[str]) -> None:
    """Refuse, before the first run, a training part that lacks a class (the copies of a repeated text share a
    fold) or that a configuration's early-stopping share cannot be split from: either would fail part-way."""
    for split in splits:
        present = set(split.train.labels)
        missing = [label for label in labels if label not in present]
        if missing:
            fix = "pass a smaller --folds" if (settings.folds or 0) > 2 else "add examples of it"
            raise FreezeframeError(f"{split.train.source}: no example of {format_names(missing)} (the copies of a "
                                   f"repeated text share a fold); {fix} or pass a --test FILE")
        # only the ways out this command line has: --folds is at least 2, and --test takes no --folds
        fixes = ["--valid-fraction 0", *(["a smaller --folds"] if (settings.folds or 0) > 2 else []),
                 *(["a --test FILE"] if settings.test is None else [])]
        ways = spoken_list(fixes, "or")
        for name in settings.configs:
            run = settings.run_config(name, split.seed)
            fraction = run.data.valid_fraction
            if fraction:
                with reports_held_back():  # the run itself reports what the split does (hold_out, with the run's seed)
                    split_train_valid(split.train, fraction, run.train.seed,
                                      f"--configs {name} holds out {percent(fraction)} of it for early stopping: pass {ways}")


def compare_configs(settings: CompareConfig, out: Path | None = None, overwrite: bool = False) -> dict:
    """Train every configuration on identical splits, test each on the same items, and report.

    Args:
        settings: data, configurations, folds/test file and seeds.
        out: report directory to write (results.json, report.md, report.html, PNGs); ``None``
            only computes the results.
        overwrite: replace an existing ``out``.

    Returns:
        The results, as written to results.json.
    """
    from freezeframe.layouts import REPORT_LAYOUT
    from freezeframe.storage import check_output_dir

    if not isinstance(settings, CompareConfig):
        raise TypeError(f"compare_configs takes a CompareConfig, e.g. CompareConfig('train.csv'), got "
                        f"{type(settings).__name__}")

    if out is not None:
        check_output_dir(Path(out), overwrite, REPORT_LAYOUT, (settings.train, settings.test))
    check_before_training(settings)
    train = load_labelled(settings.train, settings.text_column, settings.label_column, settings.normalize_labels)
    check_classes(train)
    test = None
    if settings.test is not None:
        test = load_labelled(settings.test, settings.text_column, settings.label_column, settings.normalize_labels,
                             train.label_names)
        check_known_labels(test, train.label_names)
        report_overlap(test, train, "--test")
        warn_absent_labels(test, train.label_names, "macro-F1")
    labels = train.label_names
    splits = make_splits(train, test, settings.folds, settings.seeds)
    check_splits(settings, splits, labels)
    evaluated = test if test is not None else train
    records = _run_all(settings, splits, labels)
    results = summarize(settings, records, labels, evaluated)
    if out is not None:
        from freezeframe.report import write_report

        write_report(results, records, Path(out), overwrite, evaluated.rows)
        logger.info("report written to %s", out)
    return results


def _run_all(settings: CompareConfig, splits: list[Split], labels: list[str]) -> list[RunRecord]:
    jobs = [(split, name) for split in splits for name in settings.configs]
    seconds: dict[str, list[float]] = {}
    records, started, once = [], time.perf_counter(), _OncePerShape()
    n_folds = max(s.fold for s in splits)
    for number, (split, name) in enumerate(jobs, start=1):
        where = f"fold {split.fold}/{n_folds}" if settings.test is None else "test file"
        logger.info("[%d/%d] %-8s %s  seed %d  (elapsed %s, %s)", number, len(jobs), name, where, split.seed,
                    _duration(time.perf_counter() - started), _eta(jobs[number - 1:], seconds))
        run_started = time.perf_counter()
        with _training_quietly(once):
            record = run_split(settings.run_config(name, split.seed), split, labels)
        seconds.setdefault(name, []).append(time.perf_counter() - run_started)  # all of it, for the time left
        # the training seconds are the ones report.md averages; the rest is mostly scoring the test part
        logger.info("        %-8s accuracy %.3f  macro-F1 %.3f  (best epoch %d, trained in %.1fs, tested in %.1fs)", name,
                    record.metrics["accuracy"], record.metrics["macro_f1"], record.best_epoch, record.train_seconds,
                    seconds[name][-1] - record.train_seconds)
        records.append(record)
    logger.info("all %d runs done in %s", len(jobs), _duration(time.perf_counter() - started))
    return records


def _eta(remaining: list[tuple[Split, str]], seconds: dict[str, list[float]]) -> str:
    """Time left, from the mean duration of each configuration so far (unknown until each ran once)."""
    if any(name not in seconds for _, name in remaining):
        return "time left: estimated after every configuration has run once"
    left = sum(float(np.mean(seconds[name])) for _, name in remaining)
    return f"about {_duration(left)} left"


