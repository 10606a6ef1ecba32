"""Held-out data: the validation split ``train`` holds out, the folds ``compare`` cross-validates on,
and what they share: stratified by label, seeded, and the copies of a repeated text on one side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from freezeframe.config import RunConfig
from freezeframe.data import (
    LabelledTexts,
    check_classes,
    check_known_labels,
    class_order,
    load_labelled,
    warn_absent_labels,
)
from freezeframe.errors import FreezeframeError, logger, report
from freezeframe.tables import format_names, percent


def same_text(text: str) -> str:
    """What counts as one text when splits keep copies together and overlaps are counted: letter case and
    runs of spaces aside (an uncased encoder sees no difference)."""
    return " ".join(text.split()).casefold()


def report_overlap(data: LabelledTexts, training: LabelledTexts, role: str) -> None:
    """Warn when texts of a held-out file (``role``: its option, e.g. ``--test``) also appear in the training data:
    scores on them measure memory, not how the model does on new texts."""
    seen = {same_text(text) for text in training.texts}
    shared = sum(1 for text in data.texts if same_text(text) in seen)
    if shared:
        logger.warning(f"{data.source}: {shared} of {len(data)} {role} texts also appear in the training data "
                       f"{training.source}; their scores measure memory, not new texts")


def split_train_valid(data: LabelledTexts, fraction: float, seed: int,
                      remedy: str = "add examples or pass --valid FILE") -> tuple[LabelledTexts, LabelledTexts]:
    """Hold out a stratified, seeded share of ``data`` for validation (``remedy`` ends the error when it cannot)."""
    counts = Counter(data.labels)
    small = sorted((label for label, n in counts.items() if n < 2), key=class_order)
    if small:
        raise FreezeframeError(
            f"{data.source}: class {format_names(small)} has fewer than 2 examples, too few to "
            f"split into training and validation; {remedy}"
        )
    n_valid = max(len(counts), round(len(data) * fraction))
    if len(data) - n_valid < len(counts):
        raise FreezeframeError(
            f"{data.source}: {len(data)} rows are too few for a {percent(fraction)} validation split of "
            f"{len(counts)} classes; {remedy}"
        )
    rng = np.random.default_rng(seed)
    valid_idx: list[int] = []
    for label, quota in _stratified_quotas(counts, n_valid).items():
        members = [i for i, y in enumerate(data.labels) if y == label]
        valid_idx += rng.permutation(members)[:quota].tolist()
    chosen = set(valid_idx)
    # a text repeated in the file stays on one side: validation copies of a text also trained on move to training
    trained = {same_text(data.texts[i]) for i in range(len(data)) if i not in chosen}
    kept = {i for i in chosen if same_text(data.texts[i]) not in trained}
    if len(kept) < len(chosen):
        report(f"{data.source}: {len(chosen) - len(kept)} rows drawn for validation repeat a training text and train "
               f"instead; {len(kept)} rows validate")
    return (data.subset([i for i in range(len(data)) if i not in kept], "training part"),
            data.subset(sorted(kept), "validation part"))


def _stratified_quotas(counts: Counter, n_valid: int) -> dict[str, int]:
    """How many examples of each class go to validation: the nearest whole numbers to proportional
    shares that sum to ``n_valid``, at least one per class and never a class's last training example."""
    total = sum(counts.values())
    exact = {label: n_valid * n / total for label, n in counts.items()}
    quotas = {label: min(max(1, int(share)), counts[label] - 1) for label, share in exact.items()}
    while sum(quotas.values()) > n_valid:
        label = max((l for l in sorted(quotas) if quotas[l] > 1), key=lambda l: quotas[l] - exact[l])
        quotas[label] -= 1
    while sum(quotas.values()) < n_valid:
        label = max((l for l in sorted(quotas) if quotas[l] < counts[l] - 1), key=lambda l: exact[l] - quotas[l])
        quotas[label] += 1
    return quotas


@dataclass
class Split:
    """One train/test partition: which seed made it, which fold it is, and the item ids tested."""

    seed: int
    fold: int
    train: LabelledTexts
    test: LabelledTexts
    test_items: list[int]
    """Positions of the test texts in the evaluation set (the test file, or ``train`` under CV)."""


def make_splits(train: LabelledTexts, test: LabelledTexts | None, folds: int | None, seeds: int) -> list[Split]:
    """The partitions every configuration is trained and tested on, seed by seed.

    With ``test`` each seed trains on all of ``train``; otherwise each seed cuts ``train`` into
    ``folds`` stratified folds (shuffled with that seed) and tests on each fold in turn.
    """
    if test is not None:
        return [Split(seed, 1, train, test, list(range(len(test)))) for seed in range(seeds)]
    smallest = min(train.labels.count(label) for label in train.label_names)
    if smallest < 2:  # --folds is already at its least
        rare = [label for label in train.label_names if train.labels.count(label) < 2]
        raise FreezeframeError(
            f"{train.source}: class {format_names(rare)} has a single example, too few to cross-validate (a class "
            "needs an example in at least 2 folds); add examples or pass a --test FILE"
        )
    if smallest < folds:
        raise FreezeframeError(
            f"{train.source}: the rarest class has {smallest} examples, too few for {folds} folds; "
            f"pass a smaller --folds or a --test FILE"
        )
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # not on train's lean path

    # the copies of a repeated text share a fold: a text trained on is never also tested on
    groups = [same_text(text) for text in train.texts]
    splits = []
    for seed in range(seeds):
        if len(set(groups)) < len(groups):
            cutter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            parts = cutter.split(train.texts, train.labels, groups=groups)
        else:
            parts = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(train.texts, train.labels)
        for fold, (train_idx, test_idx) in enumerate(parts, start=1):
            splits.append(Split(seed, fold, train.subset(list(train_idx), f"fold {fold}'s training part"),
                                train.subset(list(test_idx), f"fold {fold}'s test part"), list(test_idx)))
    return splits


def split_data(run: RunConfig) -> tuple[LabelledTexts, LabelledTexts | None]:
    """Training and validation texts as the run's data settings ask (no validation texts with
    ``valid_fraction`` 0 and no validation file)."""
    data = run.data
    train = load_labelled(data.train, data.text_column, data.label_column, data.normalize_labels)
    check_classes(train)
    if data.valid is not None:
        valid = load_labelled(data.valid, data.text_column, data.label_column, data.normalize_labels, train.label_names)
        check_known_labels(valid, train.label_names)
        warn_absent_labels(valid, train.label_names, "validation macro averages")
        report_overlap(valid, train, "--valid")
        return train, valid
    return hold_out(run, train)


def hold_out(run: RunConfig, train: LabelledTexts) -> tuple[LabelledTexts, LabelledTexts | None]:
    """Split off the stratified share of ``train`` that ``run.data.valid_fraction`` holds out for
    validation (seeded with the run's seed); with a share of 0 every row trains and there is none."""
    if run.data.valid_fraction == 0:
        return train, None
    return split_train_valid(train, run.data.valid_fraction, run.train.seed)
