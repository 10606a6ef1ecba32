"""A comparison's results: what each run did (:class:`RunRecord`) and the JSON-ready summary of results.json.

:func:`summarize` turns the records of every configuration on every split into scores over runs (mean and sample
standard deviation), pooled confusion matrices, the paired differences of the most accurate configuration with every
other one over runs that shared a split (:mod:`freezeframe.paired`) and McNemar's test of the best encoder configuration
against the baseline on the items; :mod:`freezeframe.report` writes them out, :mod:`freezeframe.compare` runs the configurations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from freezeframe.config import BASELINE_MODEL
from freezeframe.data import LabelledTexts
from freezeframe.evaluate import SIGNIFICANCE_TEST, mcnemar_exact
from freezeframe.frames import data_name, is_frame
from freezeframe.paired import paired_comparison

if TYPE_CHECKING:
    from freezeframe.compare import CompareConfig

SPREAD = "mean and sample standard deviation (n - 1) over the runs; a run is one fold of one seed"
"""What each ``mean`` and ``std`` of results.json is (under ``--test`` a fold is the whole test file)."""


@dataclass
class RunRecord:
    """What one configuration did on one split."""

    config: str
    seed: int
    fold: int
    metrics: dict
    predictions: list[int]
    test_items: list[int]
    history: list[dict]
    best_epoch: int
    epoch_limit: int
    train_seconds: float
    """Wall time of training: loading the model, the frozen-prefix pass and the epochs (not the scoring)."""
    trainable_parameters: int
    total_parameters: int
    members: int = 1
    """Ensemble members; ``history`` and ``best_epoch`` are the first member's."""
    true_labels: list[int] = field(default_factory=list)
    """The true class of each test item, in the order of ``test_items``."""


def _spread(values: list[float]) -> dict:
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "runs": [float(v) for v in array]}


def item_correctness(records: list[RunRecord], labels: list[str], truth: list[str], n_items: int) -> np.ndarray:
    """Per evaluated item, whether a configuration got it right in more than half of the seeds that tested it.

    A strict majority: with an even number of seeds a tie is not right, else 2 seeds would credit an item right
    in either of them, and a configuration that is right by luck on changing items would seem right on most.
    With an odd number of seeds it is the same as "at least half"."""
    index = {label: i for i, label in enumerate(labels)}
    right, seen = np.zeros(n_items), np.zeros(n_items)
    for record in records:
        for item, predicted in zip(record.test_items, record.predictions):
            right[item] += predicted == index[truth[item]]
            seen[item] += 1
    return (seen > 0) & (right > seen / 2)


def summarize(settings: CompareConfig, records: list[RunRecord], labels: list[str], evaluated: LabelledTexts) -> dict:
    """The JSON-ready results: per configuration scores over runs, the paired differences over runs, and the paired
    test on the items."""
    configs: dict[str, dict] = {}
    for name in settings.configs:
        runs = [r for r in records if r.config == name]
        matrix = np.sum([r.metrics["confusion_matrix"] for r in runs], axis=0)
        support = matrix.sum(axis=1)
        # a class absent from the test items has no recall (None), not a recall of 0
        recall = [float(hits / n) if n else None for hits, n in zip(matrix.diagonal(), support)]
        configs[name] = {
            "kind": "baseline" if name == BASELINE_MODEL else "encoder",
            "accuracy": _spread([r.metrics["accuracy"] for r in runs]),
            "macro_f1": _spread([r.metrics["macro_f1"] for r in runs]),
            "per_class_recall": dict(zip(labels, recall)),
            "confusion_matrix": matrix.tolist(),
            "train_seconds": _spread([r.train_seconds for r in runs]),
            "best_epoch": _spread([r.best_epoch for r in runs]),
            "epoch_limit": runs[0].epoch_limit,
            "valid_fraction": settings.run_config(name, 0).data.valid_fraction,
            "runs_best_at_epoch_limit": sum(r.best_epoch == r.epoch_limit for r in runs),
            "trainable_parameters": runs[0].trainable_parameters,
            "total_parameters": runs[0].total_parameters,
        }
    return {
        "settings": {
            "train": data_name(settings.train), "test": data_name(settings.test),
            "folds": settings.folds, "seeds": list(range(settings.seeds)), "configs": list(settings.configs),
            "model": settings.model, "valid_fraction": settings.valid_fraction, "epochs": settings.epochs,
            "evaluation": (f"held-out {'DataFrame' if is_frame(settings.test) else 'file'} {data_name(settings.test)}" if settings.test is not None else
                           f"stratified {settings.folds}-fold cross-validation of {data_name(settings.train)}"),
        },
        "labels": labels,
        "n_items": len(evaluated),
        "test_class_counts": {label: evaluated.labels.count(label) for label in labels},
        "n_runs": len(records) // max(1, len(settings.configs)),
        "spread": SPREAD,
        "configs": configs,
        "significance": _significance(settings, records, labels, evaluated, configs),
        "paired": paired_comparison({name: {(r.seed, r.fold): r.metrics["accuracy"] for r in records if r.config == name}
                                     for name in settings.configs}, settings.folds),
    }


def _significance(settings: CompareConfig, records: list[RunRecord], labels: list[str], evaluated: LabelledTexts,
                  configs: dict[str, dict]) -> dict:
    encoders = [name for name in settings.configs if name != BASELINE_MODEL]
    if BASELINE_MODEL not in configs or not encoders:
        return {"test": SIGNIFICANCE_TEST, "p_value": None,
                "reason": "needs the baseline and at least one encoder configuration"}
    best = max(encoders, key=lambda name: (configs[name]["accuracy"]["mean"], configs[name]["macro_f1"]["mean"]))
    right = {name: item_correctness([r for r in records if r.config == name], labels, evaluated.labels, len(evaluated))
             for name in (best, BASELINE_MODEL)}
    result = mcnemar_exact(right[best], right[BASELINE_MODEL])
    return {
        "test": SIGNIFICANCE_TEST,
        "compared": [best, BASELINE_MODEL],
        "items": len(evaluated),
        "item_correct_rule": ("an item counts as right for a configuration when it was right in more than half of the seeds "
                             "and a tie between seeds is not right"),
        "best_encoder_config": best,
        "chosen_from": encoders,
        "best_only_right": result["first_only"],
        "baseline_only_right": result["second_only"],
        "p_value": result["p_value"],
        "significant_at_0.01": bool(result["p_value"] < 0.01),
    }
