"""freezeframe's default recipe vs SetFit and the Trainer's full fine-tune, on folds of train.csv.

Every method gets the same training texts (a fold's training part) and is scored on the same
held-out fold; each run is a fresh process, and its time is process start to saved model.

    (a) freezeframe   `freezeframe train --train FOLD.csv --out DIR --seed S` with every other option
                      at its default (it trains on every row it gets, 2 epochs)
    (b) setfit        SetFit 1.2 on the same local all-MiniLM-L6-v2 body, logistic-regression
                      head, max_steps 30, batch 16 (the issue's peer setting)
    (c) trainer-full  transformers.Trainer fine-tuning every layer, lr 1e-4, 3 epochs, batch 16,
                      dynamic padding

    pip install setfit==1.2.0 accelerate==1.15.0      # peers only; not needed by freezeframe
    python benchmarks/vs_peers.py --folds 5 --fold-limit 1 --seeds 0 1 2

``--all-rows`` times the acceptance check instead: every method trains on all of ``--data``
(nothing to score), once per seed, alternating methods, and each pair's time is printed as
freezeframe's share of the peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imdb-aspects" / "train.csv"
METHODS = ["freezeframe", "setfit", "trainer-full"]


def _write(path: Path, texts: list[str], labels: list[str]) -> None:
    import pandas as pd

    pd.DataFrame({"review": texts, "aspect": labels}).to_csv(path, index=False)


def child_setfit(train: Path, out: Path, seed: int) -> None:
    import pandas as pd
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from freezeframe.source import packaged_model_dir

    frame = pd.read_csv(train)
    dataset = Dataset.from_dict({"text": frame["review"].tolist(), "label": frame["aspect"].tolist()})
    model = SetFitModel.from_pretrained(str(packaged_model_dir()), labels=sorted(set(frame["aspect"])))
    args = TrainingArguments(output_dir=str(out.with_name(out.name + "-checkpoints")), batch_size=16, max_steps=30,
                             seed=seed, report_to="none")
    Trainer(model=model, args=args, train_dataset=dataset).train()
    model.save_pretrained(str(out))


def child_trainer_full(train: Path, out: Path, seed: int) -> None:
    import pandas as pd
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from freezeframe.source import packaged_model_dir

    frame = pd.read_csv(train)
    labels = sorted(set(frame["aspect"]))
    index = {label: i for i, label in enumerate(labels)}
    source = str(packaged_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index)
    encoded = tokenizer(frame["review"].tolist(), truncation=True, max_length=128)
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": index[y]}
            for ids, mask, y in zip(encoded["input_ids"], encoded["attention_mask"], frame["aspect"])]
    args = TrainingArguments(output_dir=str(out / "trainer"), per_device_train_batch_size=16, num_train_epochs=3,
                             learning_rate=1e-4, save_strategy="no", logging_strategy="no", report_to=[], seed=seed,
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer)).train()
    model.save_pretrained(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))


def train_timed(method: str, train_file: Path, out: Path, seed: int) -> float | None:
    """Train ``method`` in a fresh process; seconds from process start to saved model (``None`` if it failed)."""
    if method == "freezeframe":  # exactly what a user types
        command = [sys.executable, "-m", "freezeframe", "train", "--train", str(train_file), "--out", str(out),
                   "--seed", str(seed), "--quiet"]
    else:
        command = [sys.executable, __file__, "--child", method, str(train_file), str(out), str(seed)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"{method} on {train_file.name} seed {seed} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return seconds


def time_all_rows(data: Path, seeds: list[int], methods: list[str]) -> None:
    """The acceptance timing: each method on every row of ``data``, alternating, one pair per seed."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            row = {"seed": seed}
            for method in methods:
                row[method] = train_timed(method, data, Path(scratch) / f"{method}-{seed}", seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    peers = [m for m in methods if m != "freezeframe"]
    print(f"\nall {data.name}, seeds {seeds}, {os.cpu_count()} CPU cores; seconds from process start to saved model\n")
    print("| seed | " + " | ".join(methods) + "".join(f" | freezeframe / {p}" for p in peers) + " |")
    print("|---" * (1 + len(methods) + len(peers)) + "|")
    for row in rows:
        times = " | ".join(f"{row[m]:.1f}" if row[m] else "failed" for m in methods)
        shares = "".join(f" | {row['freezeframe'] / row[p]:.1%}" if row.get("freezeframe") and row[p] else " | -" for p in peers)
        print(f"| {row['seed']} | {times}{shares} |")


def score(method: str, out: Path, texts: list[str], labels: list[str]) -> float:
    """Accuracy of a saved model on the fold's test texts (not timed)."""
    if method == "freezeframe":
        from freezeframe.predict import load_classifier

        predicted = [r["label"] for r in load_classifier(out).predict(texts)]
    elif method == "setfit":
        from setfit import SetFitModel

        predicted = list(SetFitModel.from_pretrained(str(out)).predict(texts))
    else:
        from transformers import pipeline

        predicted = [r["label"] for r in pipeline("text-classification", model=str(out / "model"))(texts, batch_size=32)]
    return float(np.mean([p == y for p, y in zip(predicted, labels)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-limit", type=int, default=1, help="run only the first N folds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--all-rows", action="store_true", help="time training on all of --data (no scoring)")
    parser.add_argument("--child", nargs=4, metavar=("METHOD", "TRAIN", "OUT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        method, train, out, seed = args.child
        {"setfit": child_setfit, "trainer-full": child_trainer_full}[method](
            Path(train), Path(out), int(seed))
        return
    if not args.all_rows:
        if args.folds < 2:
            parser.error(f"--folds must be at least 2, not {args.folds}")
        if not 1 <= args.fold_limit <= args.folds:
            parser.error(f"--fold-limit must be from 1 to --folds ({args.folds}), not {args.fold_limit}")
    from freezeframe.data import load_labelled
    from freezeframe.errors import FreezeframeError

    try:  # a mistyped --data stops here, before any training
        data = load_labelled(args.data)
    except FreezeframeError as err:
        print(f"vs_peers.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.all_rows:
        time_all_rows(args.data, args.seeds, args.methods)
        return
    from sklearn.model_selection import StratifiedKFold

    smallest = min(data.labels.count(label) for label in set(data.labels))
    if args.folds > smallest:
        parser.error(f"--folds {args.folds} is more than the {smallest} texts of the smallest class")
    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=1234).split(data.texts, data.labels))
    results: dict[str, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as scratch:
        for fold, (train_idx, test_idx) in enumerate(folds[: args.fold_limit]):
            train, test = data.subset(list(train_idx)), data.subset(list(test_idx))
            train_file = Path(scratch) / f"fold{fold}.csv"
            _write(train_file, train.texts, train.labels)
            for seed in args.seeds:
                for method in args.methods:
                    out = Path(scratch) / f"{method}-{fold}-{seed}"
                    seconds = train_timed(method, train_file, out, seed)
                    if seconds is None:
                        continue
                    accuracy = score(method, out, test.texts, test.labels)
                    results[method].append({"fold": fold, "seed": seed, "accuracy": accuracy, "seconds": seconds})
                    print(json.dumps({"method": method, **results[method][-1]}), flush=True)
    reference = np.mean([r["seconds"] for r in results.get("freezeframe", [])]) if results.get("freezeframe") else None
    print(f"\n{args.fold_limit} of {args.folds} stratified folds of {args.data.name}, seeds {args.seeds}, "
          f"{os.cpu_count()} CPU cores\n")
    print("| method | accuracy (mean ± std) | train seconds (process start to saved model) | time vs freezeframe |")
    print("|---|---|---|---|")
    for method, runs in results.items():
        acc = np.array([r["accuracy"] for r in runs])
        seconds = np.mean([r["seconds"] for r in runs])
        ratio = f"{seconds / reference:.2f}x" if reference else "-"
        print(f"| {method} | {acc.mean():.3f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} | {seconds:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
