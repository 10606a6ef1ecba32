"""Cross-validated search for the baseline's defaults: the evidence behind ``BASELINE_DEFAULTS``.

Every setting is trained on identical stratified folds and seeds (the splits of
``freezeframe compare``); inside a fold a stratified 15% of the training part is held out for
early stopping and the fold's test part is never seen in training. Prints mean ± std test
accuracy per setting, best first.

    python benchmarks/baseline_cv.py --folds 5 --seeds 3 \
        "dim=64,dropout=0.3,lr=5e-3" "dim=128,dropout=0.5,lr=1e-2,wd=0.01"

Setting keys: dim (embedding size), dropout, lr, wd (weight decay), epochs, vocab, patience.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "imdb-aspects" / "train.csv"

from freezeframe.compare import run_split
from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from freezeframe.data import load_labelled
from freezeframe.errors import FreezeframeError, logger
from freezeframe.splits import make_splits

KEYS = {"dim": int, "dropout": float, "lr": float, "wd": float, "epochs": int, "vocab": int, "patience": int}


def _fail(message: str) -> NoReturn:
    """The user's mistake: one line on stderr, exit code 2 (as the freezeframe command does)."""
    print(f"baseline_cv.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse(setting: str) -> dict:
    values = {}
    for part in setting.split(","):
        key, _, value = part.partition("=")
        if key not in KEYS:
            _fail(f"unknown key {key!r} in {setting!r}; use {', '.join(KEYS)}")
        try:
            values[key] = KEYS[key](value)
        except ValueError:
            _fail(f"{key}={value!r} in {setting!r} is not a valid value")
    return values


def run_for(values: dict, seed: int) -> RunConfig:
    """A key the setting leaves out keeps the baseline's default."""
    model = ModelConfig(model="baseline", vocab_size=values.get("vocab"),
                        embedding_dim=values.get("dim"), dropout=values.get("dropout"))
    train = TrainConfig(lr=values.get("lr"), epochs=values.get("epochs"), weight_decay=values.get("wd", 0.01),
                        patience=values.get("patience", 5), seed=seed, show_progress=False)
    return RunConfig(DataConfig(DATA, valid_fraction=0.15), model, train)  # 15% of each fold's training part for early stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the baseline is too small to gain from more)")
    parser.add_argument("--jsonl", type=Path, help="append one line per setting here")
    args = parser.parse_args()
    for name, least in (("folds", 2), ("seeds", 1), ("threads", 1)):
        if getattr(args, name) < least:
            parser.error(f"--{name} must be at least {least}, not {getattr(args, name)}")
    settings = [(setting, parse(setting)) for setting in args.settings]  # every mistake before the first run
    for setting, values in settings:  # the settings' own values, checked as `freezeframe train` checks them
        try:
            run_for(values, 0)
        except (FreezeframeError, TypeError, ValueError) as err:
            _fail(f"{setting!r}: {' '.join(str(err).split())}")
    torch.set_num_threads(args.threads)
    logger.setLevel("ERROR")
    data = load_labelled(DATA)
    splits = make_splits(data, None, args.folds, args.seeds)
    rows = []
    for setting, values in settings:
        started = time.perf_counter()
        accuracies, epochs = [], []
        for split in splits:
            record = run_split(run_for(values, split.seed), split, data.label_names)
            accuracies.append(record.metrics["accuracy"])
            epochs.append(record.best_epoch)
        row = {"setting": setting, "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies, ddof=1)),
               "best_epoch": float(np.mean(epochs)), "runs": len(accuracies), "seconds": time.perf_counter() - started}
        rows.append(row)
        print(f"{setting:<45} {row['mean']:.3f} ± {row['std']:.3f}  best epoch {row['best_epoch']:5.1f}  "
              f"({row['seconds']:.0f}s)", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
    print("\nbest first:")
    for row in sorted(rows, key=lambda r: -r["mean"]):
        print(f"{row['setting']:<45} {row['mean']:.3f} ± {row['std']:.3f}")


if __name__ == "__main__":
    try:
        main()
    except FreezeframeError as err:  # e.g. more folds than the smallest class has texts
        _fail(" ".join(str(err).split()))
