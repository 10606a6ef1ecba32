"""Cross-validated sweep of training recipes on train.csv: the evidence behind freezeframe's defaults.

Each configuration is trained on identical stratified folds and seeds. Inside a fold, training
holds out a stratified 15% validation split for early stopping (``valid=0``: none, the whole
schedule runs on all of the fold's training part); the fold's test part is never seen in training. Per-run test probabilities are kept so
that seed ensembles can be scored afterwards without retraining.

    python benchmarks/cv_sweep.py --folds 5 --seeds 0 1 2 --grid default --out sweep.jsonl
    python benchmarks/cv_sweep.py --summarize sweep.jsonl
    python benchmarks/cv_sweep.py --summarize a.jsonl.gz b.jsonl.gz --baseline CONFIG --blend

``--baseline`` adds each configuration's paired difference from CONFIG (same folds and seeds, in
accuracy points, mean ± standard error), and the standard error and p-value of the Nadeau-Bengio corrected
resampled t-test that ``freezeframe compare`` uses (the runs share most of their training texts, so the plain
standard error understates the spread: by about 2.9 times for 30 runs of 5 folds); ``--blend`` adds what averaging its probabilities with
CONFIG's run on the same fold and seed (a two-model ensemble) gains over CONFIG alone.

Configurations are written ``key=value`` joined by commas, e.g. ``freeze=last-2,pooling=mean,lr=3e-4``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NoReturn

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
    "round5": [  # what makes the Trainer's full fine-tune win: data held out, plan, pooling, schedule
        "peer=trainer",
        "freeze=full,pooling=cls,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0,valid=0,cache=false",
        "freeze=full,pooling=cls,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0,cache=false",
        "freeze=full,pooling=mean,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0,valid=0,cache=false",
        "freeze=encoder,pooling=cls,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0,valid=0",
        "freeze=encoder,pooling=mean,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0,valid=0",
        "freeze=encoder,pooling=mean,lr=1e-4,epochs=3,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=3e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=cls,lr=1.5e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=cls,lr=2e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2,batch_size=8,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,warmup_ratio=0,weight_decay=0,valid=0",
        "freeze=full,pooling=cls,lr=1.5e-4,epochs=2,warmup_ratio=0,weight_decay=0,valid=0,cache=false",
        "freeze=full,pooling=mean,lr=1.5e-4,epochs=2,valid=0,cache=false",
        "freeze=last-3,pooling=mean,lr=2e-4,epochs=3,valid=0",
        "freeze=last-3,pooling=mean,lr=3e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=1e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=3,valid=0",
        "freeze=encoder,pooling=cls,lr=1e-4,epochs=3,warmup_ratio=0,weight_decay=0",
        "freeze=encoder,pooling=mean,lr=5e-5,epochs=3,warmup_ratio=0,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=1,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2,valid=0,head_lr=1e-3",
    ],
    "round6": [  # around round 5's best (encoder, mean, all data, 2 epochs), seeds 0-5
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=2.5e-4,epochs=2,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,batch_size=8,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2,batch_size=8,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,head_lr=1e-3,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,lr_decay=0.9,valid=0",
        "freeze=last-4,pooling=mean,lr=2e-4,epochs=2,valid=0",
        "freeze=full,pooling=mean,lr=2e-4,epochs=2,valid=0,cache=false",
        "peer=trainer",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,weight_decay=0.1,valid=0",
        "freeze=encoder,pooling=mean,lr=2e-4,epochs=2,warmup_ratio=0.2,valid=0",
    ],
    "round7": [  # cheap members for an ensemble at the cost of one model: fewer trainable layers, all data
        "freeze=last-2,pooling=mean,lr=3e-4,epochs=2,valid=0",
        "freeze=last-2,pooling=mean,lr=5e-4,epochs=2,valid=0",
        "freeze=last-2,pooling=mean,lr=2e-4,epochs=3,valid=0",
        "freeze=last-2,pooling=mean,lr=3e-4,epochs=3,valid=0",
        "freeze=last-3,pooling=mean,lr=2e-4,epochs=2,valid=0",
        "freeze=last-3,pooling=mean,lr=3e-4,epochs=2,valid=0",
        "freeze=last-1,pooling=mean,lr=5e-4,epochs=3,valid=0",
        "freeze=encoder,pooling=mean,lr=3e-4,epochs=1,valid=0",
        "freeze=encoder,pooling=mean,lr=1.5e-4,epochs=2,valid=0",
    ],
    "smoke": ["freeze=head,pooling=mean,lr=3e-3,epochs=3", "freeze=last-1,pooling=cls,lr=3e-4,epochs=2"],
}

MODEL_KEYS = {"freeze", "pooling", "dropout", "encoder_dropout", "max_length", "model"}
SPLIT_KEYS = {"valid": float, "peer": str}
"""``valid=F``: the share of the fold's training part held out for early stopping (default 0.15, as
``freezeframe train``); ``valid=0`` trains on all of it for exactly ``epochs`` epochs and keeps the last.
``peer=trainer``: the Hugging Face Trainer's full fine-tune of benchmarks/vs_peers.py instead of freezeframe."""


def _flag(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")


TRAIN_KEYS = {"lr": float, "head_lr": float, "epochs": int, "lr_decay": float, "weight_decay": float, "batch_size": int,
              "patience": int, "warmup_ratio": float, "cache": _flag, "probe": _flag, "label_smoothing": float,
              "ensemble": int, "precision": str}


def _fail(message: str) -> NoReturn:
    """The user's mistake: one line on stderr, exit code 2 (as the freezeframe command does)."""
    print(f"cv_sweep.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_config(text: str) -> tuple[dict, dict, dict]:
    model, train, split = {}, {}, {}
    for item in text.split(","):
        key, equals, value = item.partition("=")
        if not equals:
            _fail(f"{item!r} in {text!r} is not key=value")
        try:
            if key in SPLIT_KEYS:
                split[key] = SPLIT_KEYS[key](value)
            elif key in MODEL_KEYS:
                model[key] = float(value) if key.endswith("dropout") else int(value) if key == "max_length" else value
            elif key in TRAIN_KEYS:
                train[key] = TRAIN_KEYS[key](value)
            else:
                _fail(f"unknown setting {key!r} in {text!r}")
        except ValueError:
            _fail(f"{key}={value!r} in {text!r} is not a valid value")
    return model, train, split


def run_one(config: str, fold: int, seed: int, folds: int, data_path: str, model_name: str, device: str) -> dict:
    """Train one configuration on one fold with one seed; score it on the fold's test part."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("SWEEP_THREADS", "1"))))
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    from sklearn.model_selection import StratifiedKFold

    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.data import load_labelled
    from freezeframe.evaluate import compute_metrics
    from freezeframe.fit import train_classifier
    from freezeframe.splits import hold_out

    data = load_labelled(Path(data_path))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=1234)
    train_idx, test_idx = list(splitter.split(data.texts, data.labels))[fold]
    train_part, test_part = data.subset(list(train_idx)), data.subset(list(test_idx))
    model_settings, train_settings, split = parse_config(config)
    # a configuration means what it meant when its round ran: one model in float32 (on CUDA with TF32 off)
    train_settings.setdefault("precision", "fp32")
    train_settings.setdefault("ensemble", 1)
    model_settings.setdefault("model", model_name)
    started = time.perf_counter()
    if split.get("peer") == "trainer":
        labels, probabilities, best_epoch, epochs_run, trainable = _trainer_full(
            train_part, test_part, model_settings["model"], seed, device)
    else:
        run = RunConfig(DataConfig(Path(data_path), valid_fraction=split.get("valid", 0.15)), ModelConfig(**model_settings),
                        TrainConfig(seed=seed, device=device, show_progress=False, **train_settings))
        fit_part, valid_part = hold_out(run, train_part)
        outcome = train_classifier(run, train_data=fit_part, valid_data=valid_part)
        probabilities = outcome.classifier().predict_proba(test_part.texts)
        labels, best_epoch, epochs_run = outcome.labels, outcome.loop.best_epoch, len(outcome.loop.history)
        trainable = outcome.freeze.trainable
    seconds = time.perf_counter() - started
    index = {label: i for i, label in enumerate(labels)}
    truth = [index[y] for y in test_part.labels]
    metrics = compute_metrics(truth, probabilities.argmax(1).tolist(), labels)
    return {
        "config": config, "fold": fold, "seed": seed, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "best_epoch": best_epoch, "epochs_run": epochs_run, "seconds": seconds,
        "trainable": trainable, "test_rows": [int(i) for i in test_idx], "truth": truth,
        "probabilities": np.round(probabilities, 5).tolist(),
    }


def _trainer_full(train_part, test_part, model_name: str, seed: int, device: str):
    """benchmarks/vs_peers.py's peer: the Trainer fine-tunes every layer (cls pooler, lr 1e-4, 3 epochs, batch 16)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from freezeframe.source import packaged_model_dir

    source = str(packaged_model_dir()) if model_name == "all-MiniLM-L6-v2" else model_name
    labels = sorted(set(train_part.labels))
    index = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels), dtype=torch.float32)
    encoded = tokenizer(train_part.texts, truncation=True, max_length=128)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": index[y]}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], train_part.labels)]
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(output_dir=scratch, per_device_train_batch_size=16, num_train_epochs=3, learning_rate=1e-4,
                                 save_strategy="no", logging_strategy="no", report_to=[], seed=seed,
                                 use_cpu=device == "cpu", disable_tqdm=True)
        Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)).train()
    model.eval()
    with torch.inference_mode():
        batch = tokenizer(test_part.texts, truncation=True, max_length=128, padding=True, return_tensors="pt").to(model.device)
        probabilities = model(**batch).logits.float().softmax(-1).cpu().numpy()
    return labels, probabilities, 3, 3, "all"


def read_results(paths: list[str]) -> list[dict]:
    """Rows of one or more results files (.jsonl or .jsonl.gz), in order."""
    rows = []
    for path in paths:
        try:
            with (gzip.open if path.endswith(".gz") else open)(path, "rt") as results:
                rows.extend(json.loads(line) for line in results if line.strip())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            _fail(f"{path} is not a readable results file ({err})")
    return rows


def paired(rows: list[dict], baseline: str, blend: bool = False) -> str:
    """Each configuration against ``baseline`` on the (fold, seed) runs both have: accuracy points, mean ± s.e.

    With ``blend``, also the gain of averaging the two runs' probabilities over the baseline's run alone.
    """
    runs: dict[str, dict[tuple[int, int], dict]] = defaultdict(dict)
    for row in rows:
        runs[row["config"]][(row["fold"], row["seed"])] = row
    if baseline not in runs:
        _fail(f"no runs of the baseline {baseline!r} in these files")
    base = runs[baseline]
    ratio = 1.0 / (len({row["fold"] for row in rows}) - 1)  # a fold's test texts over its training texts
    lines = ["| config | paired runs | difference from the baseline | corrected s.e., p"
             + (" | blend with the baseline |" if blend else " |"),
             "|---|---|---|---" + ("|---|" if blend else "|")]
    for config, own in runs.items():
        keys = sorted(set(own) & set(base))
        if config == baseline or not keys:
            continue
        differences = [own[k]["accuracy"] - base[k]["accuracy"] for k in keys]
        cells = [_mean_se(differences), _corrected(differences, ratio)]
        if blend:
            gains = []
            for k in keys:
                if own[k]["test_rows"] != base[k]["test_rows"]:
                    _fail(f"{config!r} and the baseline scored different rows on fold {k[0]}")
                mean = (np.asarray(own[k]["probabilities"]) + np.asarray(base[k]["probabilities"])) / 2
                gains.append(float((mean.argmax(1) == np.asarray(base[k]["truth"])).mean()) - base[k]["accuracy"])
            cells.append(_mean_se(gains))
        lines.append(f"| {config} | {len(keys)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_se(differences: list[float]) -> str:
    points = 100 * np.asarray(differences)
    se = points.std(ddof=1) / np.sqrt(len(points)) if len(points) > 1 else float("nan")
    return f"{points.mean():+.2f} ± {se:.2f}"


def _corrected(differences: list[float], ratio: float) -> str:
    from freezeframe.evaluate import corrected_resampled_ttest

    test = corrected_resampled_ttest(differences, ratio)
    if test["p_value"] is None:
        return "no test"
    return f"{100 * test['std_error_corrected']:.2f}, p = {test['p_value']:.2g}"


def summarize(rows: list[dict]) -> str:
    """Mean ± std of accuracy over folds × seeds per config, plus the accuracy of an ensemble of every seed's model."""
    by_config: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_config[row["config"]].append(row)
    lines = ["| config | runs | accuracy (mean ± std) | macro-F1 | all-seed ensemble acc | mean best epoch | mean epochs |",
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


def _check_folds(data_path: Path, folds: int) -> None:
    """Stop before any run when the data cannot be read or split into ``folds`` stratified folds."""
    from freezeframe.data import load_labelled
    from freezeframe.errors import FreezeframeError

    try:
        data = load_labelled(data_path)
    except FreezeframeError as err:
        _fail(f"{' '.join(str(err).split())}")
    smallest = min(data.labels.count(label) for label in set(data.labels))
    if folds > smallest:
        _fail(f"--folds {folds} is more than the {smallest} texts of the smallest class")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--grid", default="default", choices=sorted(GRIDS))
    parser.add_argument("--config", action="append", help="a configuration (repeatable); overrides --grid")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--summarize", nargs="+", help="only print the table of existing results files (.jsonl, .jsonl.gz)")
    parser.add_argument("--baseline", help="with --summarize: paired differences from this configuration")
    parser.add_argument("--blend", action="store_true", help="with --baseline: the gain of averaging each configuration with it")
    args = parser.parse_args()
    if args.baseline and not args.summarize:
        parser.error("--baseline works with --summarize only")
    if args.blend and not args.baseline:
        parser.error("--blend needs --baseline")
    if args.summarize:
        rows = read_results(args.summarize)
        print(summarize(rows))
        if args.baseline:
            print()
            print(paired(rows, args.baseline, args.blend))
        return
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, not {args.folds}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, not {args.workers}")
    configs = args.config or GRIDS[args.grid]
    for config in configs:  # a mistyped configuration stops here, not in every run
        parse_config(config)
    _check_folds(Path(args.data), args.folds)
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
