"""Training speed: the Hugging Face Trainer with the seed's settings vs freezeframe, back to back.

All variants use the same encoder (packaged all-MiniLM-L6-v2), the same stratified 85/15 split of
train.csv (seed 0), batch size 16, the same learning rate and a fixed number of epochs with early
stopping off. Each variant runs in its own fresh process, so "total" is process start to saved
model (imports, model load, tokenization and the cache pass included) and peak memory is that
process's maximum resident set.

    (a) hf-trainer   transformers.Trainer as its documentation shows, seed settings:
                     padding='max_length', max_length=128, plan last-1 (classifier + pooler + last layer)
    (b) ff-last-1    freezeframe train --freeze last-1 (frozen-prefix cache, length-grouped batches)
    (c) ff-head      freezeframe train --freeze head (pooled vectors cached)
    (d) ff-full      freezeframe train --freeze full (nothing to cache)

    python benchmarks/train_speed.py --epochs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imdb-aspects" / "train.csv"
VARIANTS = ["hf-trainer", "ff-last-1", "ff-head", "ff-full"]


def _split(data_path: Path, seed: int):
    from freezeframe.data import load_labelled
    from freezeframe.splits import split_train_valid

    return split_train_valid(load_labelled(data_path), 0.15, seed)


def run_hf_trainer(args: argparse.Namespace, out: Path) -> dict:
    """The Trainer recipe of the transformers documentation, with the seed notebook's freezing and padding."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from freezeframe.source import packaged_model_dir

    train, valid = _split(args.data, args.seed)
    labels = train.label_names
    label2id = {label: i for i, label in enumerate(labels)}
    model_dir = str(packaged_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)
    for param in model.parameters():
        param.requires_grad = False
    last = model.config.num_hidden_layers - 1
    for name, param in model.named_parameters():
        if name.startswith(("classifier.", "bert.pooler.", f"bert.encoder.layer.{last}.")):
            param.requires_grad = True

    class Encoded(torch.utils.data.Dataset):
        def __init__(self, texts, names):
            self.encodings = tokenizer(texts, padding="max_length", truncation=True, max_length=128)
            self.labels = [label2id[n] for n in names]

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            item = {k: torch.tensor(v[i]) for k, v in self.encodings.items()}
            item["labels"] = torch.tensor(self.labels[i])
            return item

    epoch_seconds: list[float] = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_epoch_end(self, *_, **__):
            epoch_seconds.append(time.perf_counter() - self.start)

    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), per_device_train_batch_size=16, per_device_eval_batch_size=16,
        num_train_epochs=args.epochs, learning_rate=args.lr, weight_decay=0.01,
        warmup_steps=int(0.1 * args.epochs * -(-len(train) // 16)),
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to=[], seed=args.seed,
        use_cpu=True, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=Encoded(train.texts, train.labels),
                      callbacks=[EpochTimer()])
    trainer.train()
    trainer.save_model(str(out / "model"))
    predictions = trainer.predict(Encoded(valid.texts, valid.labels))
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    return {"epoch_seconds": epoch_seconds, "valid_accuracy": accuracy}


def run_freezeframe(args: argparse.Namespace, out: Path, plan: str) -> dict:
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    run = RunConfig(
        DataConfig(args.data, valid_fraction=0.15),  # the same 85/15 split as the Trainer
        ModelConfig(freeze=plan, pooling=args.pooling),
        TrainConfig(lr=args.lr, epochs=args.epochs, patience=args.epochs + 1, seed=args.seed, show_progress=False),
    )
    outcome = train_classifier(run, out / "model")
    return {
        "epoch_seconds": [r.seconds for r in outcome.loop.history],
        "valid_accuracy": outcome.metrics["accuracy"],
        "cache": outcome.cache.get("level", "none") if outcome.cache.get("used") else "none",
    }


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        if args.variant == "hf-trainer":
            result = run_hf_trainer(args, out)
        else:
            result = run_freezeframe(args, out, args.variant.removeprefix("ff-"))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def parent(args: argparse.Namespace) -> None:
    rows = {}
    for variant in args.variants:
        command = [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs), "--lr", str(args.lr),
                   "--seed", str(args.seed), "--data", str(args.data), "--pooling", args.pooling]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        total = time.perf_counter() - started
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"{variant} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(lines[-1][7:])
        row["total_seconds"] = total
        row["per_epoch"] = sum(row["epoch_seconds"]) / len(row["epoch_seconds"])
        rows[variant] = row
        print(f"{variant:<11} {row['per_epoch']:7.2f} s/epoch  {total:7.1f} s total  "
              f"{row['peak_rss_mb']:7.0f} MB peak  valid acc {row['valid_accuracy']:.3f}", flush=True)
    reference = rows.get("hf-trainer")
    print(f"\n{args.epochs} epochs, batch 16, lr {args.lr}, seed {args.seed}; {os.cpu_count()} CPU cores, "
          f"torch threads {__import__('torch').get_num_threads()}, {platform.processor() or platform.machine()}\n")
    print("| variant | s/epoch | total s (process start to saved model) | peak RSS MB | valid acc | "
          "epoch speed-up vs Trainer | total speed-up vs Trainer |")
    print("|---|---|---|---|---|---|---|")
    for variant, row in rows.items():
        speed = (f"{reference['per_epoch'] / row['per_epoch']:.1f}x | {reference['total_seconds'] / row['total_seconds']:.1f}x"
                 if reference else "- | -")
        print(f"| {variant} | {row['per_epoch']:.2f} | {row['total_seconds']:.1f} | {row['peak_rss_mb']:.0f} | "
              f"{row['valid_accuracy']:.3f} | {speed} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pooling", default="cls", choices=["cls", "mean"],
                        help="pooling for the freezeframe variants (the Trainer uses cls)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, dest="variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.variant:
        child(args)
        return
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, not {args.epochs}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, not {args.lr}")
    from freezeframe.errors import FreezeframeError

    try:  # a mistyped --data stops here, not in every variant's process
        _split(args.data, args.seed)
    except FreezeframeError as err:
        print(f"train_speed.py: error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    parent(args)


if __name__ == "__main__":
    main()
