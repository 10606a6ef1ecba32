"""Cross-validated sweep of training recipes on train.csv: the evidence behind freezeframe's defaults.

Each configuration is trained on identical stratified folds and seeds. Inside a fold, training
holds out a stratified 15% validation split for early stopping, exactly as ``freezeframe train``
does; the fold's test part is never seen in training. Per-run test probabilities are kept so
that seed ensembles can be scored afterwards without retraining.

    python benchmarks/cv_sweep.py --folds 5 --seeds 0 1 2 --grid default --out sweep.jsonl
    python benchmarks/cv_sweep.py --summarize sweep.jsonl

Configurations are written ``key=value`` joined by commas, e.g. ``freeze=last-2,pooling=mean,lr=3e-4``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "imdb-aspects" / "train.csv"

GRIDS = {
    "default": (
        [f"freeze=head,pooling={p},lr={lr},epochs=60" for p in ("cls", "mean") for lr in ("1e-3", "3e-3", "1e-2")]
        + [f"freeze={plan},pooling={p},lr={lr}" for plan in ("last-1", "last-2", "last-3")
           for p in ("cls", "mean") for lr in ("1e-4", "3e-4", "1e-3")]
        + [f"freeze=full,pooling={p},lr={lr}" for p in ("cls", "mean") for lr in ("3e-5", "1e-4", "3e-4")]
        + [f"freeze=full,pooling=mean,lr={lr},lr_decay=0.8" for lr in ("1e-4", "3e-4")]
        + [f"freeze=last-2,pooling=mean,lr={lr},dropout=0.3" for lr in ("3e-4", "1e-3")]
        + [f"freeze={plan},pooling={p},lr=3e-4,cache=false" for plan, p in
           (("last-1", "cls"), ("last-1", "mean"), ("last-2", "mean"))]
    ),
    "round2": [
        "freeze=last-1,pooling=mean,lr=1e-4,head_lr=1e-2",
        "freeze=last-2,pooling=mean,lr=1e-4,head_lr=1e-2",
        "freeze=last-1,pooling=cls,lr=1e-4,head_lr=1e-2",
        "freeze=last-2,pooling=mean,lr=3e-5,head_lr=1e-2",
        "freeze=last-3,pooling=mean,lr=1e-4,head_lr=1e-2",
        "freeze=last-3,pooling=mean,lr=3e-5,head_lr=3e-3",
        "freeze=full,pooling=mean,lr=3e-5,head_lr=1e-2",
        "freeze=full,pooling=mean,lr=1e-4,head_lr=3e-3",
        "freeze=full,pooling=cls,lr=3e-5,head_lr=3e-3",
        "freeze=last-2,pooling=mean,lr=1e-4,head_lr=3e-3",
        "freeze=last-1,pooling=mean,lr=3e-4,head_lr=1e-2",
        "freeze=last-2,pooling=mean,lr=1e-4,head_lr=1e-2,patience=3",
        "freeze=last-2,pooling=mean,lr=1e-4,head_lr=1e-2,weight_decay=0.1",
    ],
    "smoke": ["freeze=head,pooling=mean,lr=3e-3,epochs=3", "freeze=last-1,pooling=cls,lr=3e-4,epochs=2"],
}

MODEL_KEYS = {"freeze", "pooling", "dropout", "max_length", "model"}


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


TRAIN_KEYS = {"lr": float, "head_lr": float, "epochs": int, "lr_decay": float, "weight_decay": float, "batch_size": int,
              "patience": int, "warmup_ratio": float, "cache": _flag, "probe": _flag}


def parse_config(text: str) -> tuple[dict, dict]:
    model, train = {}, {}
    for item in text.split(","):
        key, value = item.split("=", 1)
        if key in MODEL_KEYS:
            model[key] = float(value) if key == "dropout" else int(value) if key == "max_length" else value
        elif key in TRAIN_KEYS:
            train[key] = TRAIN_KEYS[key](value)
        else:
            raise SystemExit(f"unknown setting {key!r} in {text!r}")
    return model, train


def run_one(config: str, fold: int, seed: int, folds: int, data_path: str, model_name: str, device: str) -> dict:
    """Train one configuration on one fold with one seed; score it on the fold's test part."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("SWEEP_THREADS", "1"))))
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        import freezeframe.train as loop

        loop.autocast_for = lambda _device: contextlib.nullcontext()  # fp32, as on the CPU
    from sklearn.model_selection import StratifiedKFold

    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.data import load_labelled, split_train_valid
    from freezeframe.evaluate import compute_metrics
    from freezeframe.fit import train_classifier

    data = load_labelled(Path(data_path))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=1234)
    train_idx, test_idx = list(splitter.split(data.texts, data.labels))[fold]
    train_part, test_part = data.subset(list(train_idx)), data.subset(list(test_idx))
    fit_part, valid_part = split_train_valid(train_part, 0.15, seed)
    model_settings, train_settings = parse_config(config)
    model_settings.setdefault("model", model_name)
    run = RunConfig(DataConfig(Path(data_path)), ModelConfig(**model_settings),
                    TrainConfig(seed=seed, device=device, show_progress=False, **train_settings))
    started = time.perf_counter()
    outcome = train_classifier(run, train_data=fit_part, valid_data=valid_part)
    seconds = time.perf_counter() - started
    probabilities = outcome.classifier().predict_proba(test_part.texts)
    index = {label: i for i, label in enumerate(outcome.labels)}
    truth = [index[y] for y in test_part.labels]
    metrics = compute_metrics(truth, probabilities.argmax(1).tolist(), outcome.labels)
    return {
        "config": config, "fold": fold, "seed": seed, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "best_epoch": outcome.loop.best_epoch, "epochs_run": len(outcome.loop.history), "seconds": seconds,
        "trainable": outcome.freeze.trainable, "test_rows": [int(i) for i in test_idx], "truth": truth,
        "probabilities": np.round(probabilities, 5).tolist(),
    }


def summarize(rows: list[dict]) -> str:
    """Mean ± std of accuracy over folds × seeds per config, plus the accuracy of a seed ensemble."""
    by_config: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_config[row["config"]].append(row)
    lines = ["| config | runs | accuracy (mean ± std) | macro-F1 | 3-seed ensemble acc | mean best epoch | mean epochs |",
             "|---|---|---|---|---|---|---|"]
    scored = []
    for config, runs in by_config.items():
        acc = np.array([r["accuracy"] for r in runs])
        f1 = np.array([r["macro_f1"] for r in runs])
        ensemble = _ensemble_accuracy(runs)
        scored.append((acc.mean(), config, len(runs), acc, f1, ensemble, runs))
    for mean, config, n, acc, f1, ensemble, runs in sorted(scored, reverse=True):
        ens = f"{ensemble:.4f}" if ensemble is not None else "-"
        lines.append(f"| {config} | {n} | {acc.mean():.4f} ± {acc.std(ddof=1) if n > 1 else 0:.4f} | "
                     f"{f1.mean():.4f} | {ens} | {np.mean([r['best_epoch'] for r in runs]):.1f} | "
                     f"{np.mean([r['epochs_run'] for r in runs]):.1f} |")
    return "\n".join(lines)


def _ensemble_accuracy(runs: list[dict]) -> float | None:
    """Average the probabilities of all seeds within a fold, then score; pooled over folds."""
    by_fold: dict[int, list[dict]] = defaultdict(list)
    for run in runs:
        by_fold[run["fold"]].append(run)
    if any(len(v) < 2 for v in by_fold.values()):
        return None
    correct = total = 0
    for fold_runs in by_fold.values():
        mean = np.mean([np.asarray(r["probabilities"]) for r in fold_runs], axis=0)
        correct += int((mean.argmax(1) == np.asarray(fold_runs[0]["truth"])).sum())
        total += len(fold_runs[0]["truth"])
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--grid", default="default", help=f"one of {sorted(GRIDS)}")
    parser.add_argument("--config", action="append", help="a configuration (repeatable); overrides --grid")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--summarize", help="only print the table of an existing results file")
    args = parser.parse_args()
    if args.summarize:
        print(summarize([json.loads(line) for line in open(args.summarize)]))
        return
    configs = args.config or GRIDS[args.grid]
    # seed-major order: a run cut short still covers every configuration evenly
    jobs = [(c, f, s) for s in args.seeds for f in range(args.folds) for c in configs]
    print(f"{len(configs)} configs x {args.folds} folds x {len(args.seeds)} seeds = {len(jobs)} runs", flush=True)
    started, rows = time.perf_counter(), []
    with open(args.out, "a") as sink, ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, c, f, s, args.folds, args.data, args.model, args.device) for c, f, s in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            try:
                row = future.result()
            except Exception as err:  # noqa: BLE001 - one failed run must not end the sweep
                print(f"run failed: {type(err).__name__}: {err}", flush=True)
                continue
            rows.append(row)
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            if done % 10 == 0 or done == len(jobs):
                print(f"{done}/{len(jobs)} runs, {time.perf_counter() - started:.0f}s", flush=True)
    print(summarize(rows))


if __name__ == "__main__":
    main()
