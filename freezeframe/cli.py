"""The ``freezeframe`` command: parse arguments, build a config, call one library function."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from freezeframe.config import (
    BASELINE_DEFAULTS,
    CHUNK_ROWS,
    COMPARE_CONFIG,
    DEFAULT_COMPARE,
    DEFAULT_FREEZE,
    DEFAULT_MAX_LENGTH,
    DEFAULT_MODEL,
    DEFAULT_POOLING,
    DEFAULT_PROBE,
    ENCODER_DEFAULTS,
    HEAD_DEFAULTS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from freezeframe.errors import FreezeframeError

app = typer.Typer(
    name="freezeframe", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Fine-tune a small pretrained transformer into a text classifier, training only what a freeze plan unfreezes.",
)

def _show_version(value: bool) -> None:
    if value:
        from freezeframe import __version__

        print(f"freezeframe {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Fine-tune a small pretrained transformer into a text classifier, training only what a freeze plan unfreezes."""


TextColumn = Annotated[str, typer.Option(help="Column holding the texts.")]
LabelColumn = Annotated[str, typer.Option(help="Column holding the label names.")]


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        return prefix + record.getMessage()


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("freezeframe")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


# train's options that compare carries over; any other given on the command line changes what compare would train
_COMPARE_CARRIES = {"train": "--train", "model": "--model", "text_column": "--text-column", "label_column": "--label-column",
                    "normalize_labels": "--normalize-labels", "epochs": "--epochs", "device": "--device",
                    "valid_fraction": "--valid-fraction"}
_NO_EFFECT = {"out", "overwrite", "resume", "keep_checkpoint", "quiet", "seed", "freeze", "cache", "cache_budget"}


def _compare_hint(run: RunConfig, context: typer.Context) -> str:
    """How to estimate the accuracy of what ``train`` just trained: the ``compare`` command that trains
    the same recipe, when compare can express it, else a validation split."""
    import shlex

    split = "train with --valid-fraction 0.15"
    name = "baseline" if run.model.is_baseline else run.model.freeze
    given = {p for p in context.params if getattr(context.get_parameter_source(p), "name", "") == "COMMANDLINE"}
    if not COMPARE_CONFIG.match(name) or given - set(_COMPARE_CARRIES) - _NO_EFFECT:
        return f"estimate accuracy with a validation split: {split}"
    words = ["freezeframe", "compare", "--train", str(run.data.train), "--configs", name]
    for param in sorted(given & set(_COMPARE_CARRIES) - {"train"}):
        value = context.params[param]
        if not isinstance(value, bool):
            words += [_COMPARE_CARRIES[param], str(value)]
        elif value:
            words.append(_COMPARE_CARRIES[param])
    words += ["--out", "runs/compare"]
    return f"estimate accuracy with:  {shlex.join(words)} (cross-validation), or {split}"


@app.command()
def train(
    context: typer.Context,
    train: Annotated[Path, typer.Option("--train", help="Training file (.csv, .tsv, .jsonl).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    valid: Annotated[Path | None, typer.Option(help="Validation file; default: a split of --train.")] = None,
    valid_fraction: Annotated[float | None, typer.Option(help="Share of --train held out for validation and early stopping; 0 trains on every row for the whole schedule (default: 0 for encoder plans, 0.15 for head and baseline).")] = None,
    text_column: TextColumn = "review",
    label_column: LabelColumn = "aspect",
    normalize_labels: Annotated[bool, typer.Option(help="Merge labels differing only in case.")] = False,
    model: Annotated[str, typer.Option(help="Encoder: model directory, cached hub id, or 'baseline'.")] = DEFAULT_MODEL,
    freeze: Annotated[str, typer.Option(help="Freeze plan: head, last-N, encoder, full, gradual[-N], or globs over parameter names.")] = DEFAULT_FREEZE,
    pooling: Annotated[str, typer.Option(help="Sentence vector for the head: cls or mean.")] = DEFAULT_POOLING,
    max_length: Annotated[int, typer.Option(help="Longest tokenized text (longer ones are truncated).")] = DEFAULT_MAX_LENGTH,
    padding: Annotated[str, typer.Option(help="longest (per batch) or max_length (fixed [batch, max_length]).")] = "longest",
    vocab_size: Annotated[int | None, typer.Option(help="Baseline: vocabulary size (default 1000).")] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Baseline: embedding size (default 256).")] = None,
    dropout: Annotated[float | None, typer.Option(help=f"Dropout before the classifier (default: the encoder's hidden dropout; the baseline's {BASELINE_DEFAULTS['dropout']:g}).")] = None,
    encoder_dropout: Annotated[float | None, typer.Option(help="Dropout inside the encoder, on hidden states and attention (default: the checkpoint's).")] = None,
    lr: Annotated[float | None, typer.Option(help=f"Peak learning rate (default {ENCODER_DEFAULTS['lr']:g}; --freeze head: {HEAD_DEFAULTS['lr']:g}; the baseline: {BASELINE_DEFAULTS['lr']:g}).")] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Length of the schedule (default {ENCODER_DEFAULTS['epochs']}; --freeze head: {HEAD_DEFAULTS['epochs']}; the baseline: {BASELINE_DEFAULTS['epochs']}; validation data can stop it early).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per step.")] = 16,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs (with validation data).")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps for learning-rate warmup.")] = 0.1,
    lr_decay: Annotated[float, typer.Option(help="Per-layer learning-rate factor going down.")] = 1.0,
    head_lr: Annotated[float | None, typer.Option(help="Learning rate of classifier and pooler (default: --lr).")] = None,
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Fit the classifier on the frozen network's sentence vectors before fine-tuning (LP-FT).")] = DEFAULT_PROBE,
    ensemble: Annotated[int | None, typer.Option(help="Train K members (seeds seed..seed+K-1) and average them (default: 2 for the encoder plan when it trains in bf16 or fp16, else 1).")] = None,
    label_smoothing: Annotated[float, typer.Option(help="Share of each training target spread over all classes.")] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on a CUDA GPU, fp16 on older ones; on a CPU that multiplies bf16 natively when encoder layers train; else fp32), fp32, bf16 or fp16 (CUDA only, with loss scaling).")] = "auto",
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Cache the frozen prefix's outputs.")] = True,
    cache_dtype: Annotated[str, typer.Option(help="Cache storage: float32, bfloat16, float16.")] = "float32",
    cache_budget: Annotated[float | None, typer.Option(help="Cache memory budget in MiB (default: RAM/4).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from --out/checkpoint (same settings and data).")] = False,
    keep_checkpoint: Annotated[bool, typer.Option(help="Keep --out/checkpoint after training succeeds.")] = False,
    quiet: Annotated[bool, typer.Option(help="Only warnings and the final metrics.")] = False,
) -> None:
    """Train a classifier and save it to --out, then print its validation metrics (when it held data out)."""
    from freezeframe.evaluate import format_metrics
    from freezeframe.fit import train_classifier

    _setup_logging(quiet)
    run = RunConfig(
        DataConfig(train, valid, valid_fraction, text_column, label_column, normalize_labels),
        ModelConfig(model, freeze, pooling, max_length, padding, vocab_size, embedding_dim, dropout, encoder_dropout),
        TrainConfig(lr, epochs, batch_size, patience, seed, weight_decay, warmup_ratio, lr_decay, device, cache,
                    cache_dtype, cache_budget, show_progress=not quiet, head_lr=head_lr, probe=probe, ensemble=ensemble,
                    label_smoothing=label_smoothing, precision=precision),
    )
    outcome = train_classifier(run, out, overwrite, resume=resume, keep_checkpoint=keep_checkpoint)
    runs = outcome.meta.get("member_runs") or [{"best_epoch": outcome.loop.best_epoch, "history": outcome.loop.history}]
    seconds = outcome.meta.get("train_seconds", outcome.loop.seconds)
    counts = sorted({len(r["history"]) for r in runs})
    epochs = (f"{counts[0]} epoch{'s' if counts[0] != 1 else ''}" + (" each" if len(runs) > 1 else "") if len(counts) == 1
              else f"{', '.join(map(str, counts))} epochs")
    best = ", ".join(f"{r['best_epoch']} of {len(r['history'])}" for r in runs)
    members = f"{len(runs)} members, " if len(runs) > 1 else ""
    if outcome.metrics is None:
        print(f"\ntrained on all {outcome.meta['data']['train_rows']} rows for {epochs} "
              f"({members}{seconds:.1f}s training); nothing was held out, so there are no validation metrics.\n"
              f"{_compare_hint(run, context)}")
    else:
        kept = "best epochs" if len(runs) > 1 else "best epoch"
        print(f"\nvalidation metrics ({members}{kept} {best}, {seconds:.1f}s training):")
        print(format_metrics(outcome.metrics))
    print(f"\nmodel saved to {out}")
    print(f'predict with:  freezeframe predict --model {out} "the camera work is stunning"')


@app.command()
def evaluate(
    model: Annotated[list[Path], typer.Option(
        metavar="<path>", help="Model directory written by train (or by export, with --backend onnx); "
                               "give it more than once to score several models side by side.")],
    data: Annotated[Path, typer.Option(help="Labelled file to score (.csv, .tsv, .jsonl).")],
    text_column: TextColumn = "review",
    label_column: LabelColumn = "aspect",
    normalize_labels: Annotated[bool, typer.Option(help="Merge labels differing only in case.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Write confusion_matrix.png and learning_curve.png here "
                                                    "(several models: confusion_matrices.png).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace plot files already in --plots.")] = False,
    backend: Annotated[str, typer.Option(help="torch, or onnx (onnxruntime; exports MODEL/onnx on first use).")] = "torch",
    quantize: Annotated[str, typer.Option(help="none, or int8 for the quantized ONNX graph (with --backend onnx).")] = "none",
) -> None:
    """Score saved models on labelled data: accuracy, macro and per-class scores, confusion matrices, McNemar's test."""
    from freezeframe.evaluate import evaluate_model, format_metrics
    from freezeframe.side_by_side import evaluate_models, format_comparison

    _setup_logging(quiet=as_json)
    options = {"plots": plots, "overwrite": overwrite, "backend": backend, "quantize": quantize}
    if len(model) == 1:
        result = evaluate_model(model[0], data, text_column, label_column, normalize_labels, **options)
    else:
        result = evaluate_models(model, data, text_column, label_column, normalize_labels, **options)
    if as_json:
        print(json.dumps(result))
    else:
        print(format_metrics(result) if len(model) == 1 else format_comparison(result))
        if plots is not None:
            print(f"\nplots written to {plots}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Model directory written by train (or by export, with --backend onnx).")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to classify.")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="File of texts (.csv/.tsv/.jsonl/.txt); '-' reads stdin.")] = None,
    text_column: TextColumn = "review",
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.")] = 64,
    backend: Annotated[str, typer.Option(help="torch, or onnx (onnxruntime; exports MODEL/onnx on first use).")] = "torch",
    quantize: Annotated[str, typer.Option(help="none, or int8 for the quantized ONNX graph (with --backend onnx).")] = "none",
    output: Annotated[Path | None, typer.Option(help="Write a .csv, .tsv or .jsonl file instead: each input row's columns, "
                                                        "predicted_label and score_<label> per class.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace an existing --output file.")] = False,
    chunk_rows: Annotated[int, typer.Option(help="Rows of --input read, classified and written at a time (memory grows with it, not with the file).")] = CHUNK_ROWS,
) -> None:
    """Classify texts; print one JSON line per text: {"text", "label", "scores"} (or write --output)."""
    from freezeframe.chunks import open_texts
    from freezeframe.predict import check_output_columns, check_output_file, load_predictor, stream_predictions
    from freezeframe.tables import counted

    _setup_logging(quiet=True)
    if not texts and input is None:
        raise FreezeframeError("nothing to classify: give texts as arguments or --input FILE ('-' for stdin)")
    if batch_size < 1:
        raise FreezeframeError(f"--batch-size must be at least 1, got {batch_size}")
    if chunk_rows < 1:
        raise FreezeframeError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    if output is not None:
        check_output_file(output, overwrite, input)
    chunks = open_texts(texts or [], input, text_column, chunk_rows)  # a file is checked whole here, read in chunks later
    classifier = load_predictor(model, backend, quantize)
    if output is not None:
        check_output_columns([dict.fromkeys(chunks.columns or ["text"])], classifier.labels)  # before classifying
    try:
        count = stream_predictions(classifier, chunks, output, batch_size)
    except BrokenPipeError:  # the reader stopped early (`| head`): end as a tool killed by SIGPIPE does, silently
        _silence_stdout()
        raise typer.Exit(141) from None
    if output is not None:
        print(f"wrote {counted(count, 'prediction')} to {output}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that flushing it at exit raises no second broken pipe."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


@app.command()
def explore(
    data: Annotated[Path, typer.Option(help="Labelled file to describe (.csv, .tsv, .jsonl).")],
    text_column: TextColumn = "review",
    label_column: LabelColumn = "aspect",
    normalize_labels: Annotated[bool, typer.Option(help="Merge labels differing only in case.")] = False,
    model: Annotated[str, typer.Option(help="Whose tokens to count: encoder, cached hub id, model directory, or 'baseline' (words).")] = DEFAULT_MODEL,
    max_length: Annotated[int | None, typer.Option(help=f"Count the texts longer than this many tokens (default: a trained model's own, else {DEFAULT_MAX_LENGTH}).")] = None,
    top_words: Annotated[int, typer.Option(help="Typical words to name per class (0: none).")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Describe a labelled file: class balance, text lengths in words and tokens, repeats, typical words."""
    from freezeframe.explore import ExploreConfig, explore_data, format_exploration

    _setup_logging(quiet=as_json)
    summary = explore_data(ExploreConfig(data, text_column, label_column, normalize_labels, model, max_length, top_words))
    print(json.dumps(summary, ensure_ascii=False) if as_json else format_exploration(summary))


@app.command()
def inspect(
    model: Annotated[str, typer.Option(help="Encoder or trained model directory.")] = DEFAULT_MODEL,
    freeze: Annotated[str | None, typer.Option(help=f"Freeze plan to show (default: a trained directory's own plan, else {DEFAULT_FREEZE}).")] = None,
    num_labels: Annotated[int, typer.Option(help="Classes of the head (for an untrained encoder).")] = 3,
    pooling: Annotated[str | None, typer.Option(help=f"cls or mean, for an untrained encoder (default {DEFAULT_POOLING}; "
                                                     "a trained directory keeps its own).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate to show, as train would use it (default: the plan's).")] = None,
    lr_decay: Annotated[float, typer.Option(help="Per-layer learning-rate factor going down, as in train.")] = 1.0,
    head_lr: Annotated[float | None, typer.Option(help="Learning rate of classifier and pooler (default: --lr).")] = None,
) -> None:
    """Show, block by block, which parameters a freeze plan trains, and at what learning rate."""
    from freezeframe.describe import describe_plan

    _setup_logging(quiet=True)
    print(describe_plan(model, freeze, num_labels, pooling, lr, lr_decay, head_lr))


@app.command()
def compare(
    train: Annotated[Path, typer.Option("--train", help="Labelled file to train on (and cross-validate without --test).")],
    out: Annotated[Path, typer.Option(help="Report directory to write.")],
    test: Annotated[Path | None, typer.Option(help="Held-out labelled file; default: cross-validation of --train.")] = None,
    folds: Annotated[int | None, typer.Option(help="Cross-validation folds (default 5 without --test).")] = None,
    seeds: Annotated[int, typer.Option(help="Repetitions 0..N-1: repetition r shuffles the folds with seed r and trains seed r (K members: rK..rK+K-1).")] = 1,
    configs: Annotated[str, typer.Option(help="Comma-separated: baseline and/or freeze plans head, last-N, encoder, full.")] = ",".join(DEFAULT_COMPARE),
    model: Annotated[str, typer.Option(help="Encoder the freeze plans apply to.")] = DEFAULT_MODEL,
    text_column: TextColumn = "review",
    label_column: LabelColumn = "aspect",
    normalize_labels: Annotated[bool, typer.Option(help="Merge labels differing only in case.")] = False,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs for every configuration (default per model kind).")] = None,
    valid_fraction: Annotated[float | None, typer.Option(help="Share of each training part held out for early stopping (default: as train does, per configuration).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress lines.")] = False,
) -> None:
    """Train every configuration on identical splits, test each on the same items, write a report."""
    from freezeframe.compare import CompareConfig, compare_configs

    _setup_logging(quiet)
    settings = CompareConfig(train, test, folds, seeds, [c.strip() for c in configs.split(",") if c.strip()], model,
                             text_column, label_column, normalize_labels, valid_fraction, epochs, device)
    results = compare_configs(settings, out, overwrite)
    for name, result in results["configs"].items():
        print(f"{name:<10} accuracy {result['accuracy']['mean']:.3f} ± {result['accuracy']['std']:.3f}   "
              f"macro-F1 {result['macro_f1']['mean']:.3f} ± {result['macro_f1']['std']:.3f}")
    paired = results["paired"]
    for name, result in paired["configs"].items():
        if result["p_value"] is not None:
            low, high = result["ci95"]
            print(f"{paired['best']} - {name}: {result['mean_difference']:+.3f} over {result['n']} paired runs "
                  f"(95% interval {low:+.3f} to {high:+.3f}), p = {result['p_value']:.2g}, Holm-adjusted {result['p_holm']:.2g}")
    if results["significance"].get("p_value") is not None:
        test_result = results["significance"]
        print(f"McNemar exact test, {' vs '.join(test_result['compared'])}: p = {test_result['p_value']:.3g}")
    print(f"report: {out / 'report.html'}")


@app.command()
def export(
    model: Annotated[Path, typer.Option(help="Model directory written by train.")],
    format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    quantize: Annotated[str, typer.Option(help="none, or int8 to also write model.int8.onnx.")] = "none",
    out: Annotated[Path | None, typer.Option(help="Export directory (default MODEL/onnx), or a .onnx file for the graph alone.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 18,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing .onnx --out file, or an --out export directory holding another model's export.")] = False,
) -> None:
    """Export to ONNX for onnxruntime; predict and serve use it with --backend onnx [--quantize int8]."""
    from freezeframe.export import ExportConfig, export_model

    _setup_logging(quiet=False)
    result = export_model(ExportConfig(model, out, format, quantize, opset, overwrite))
    if result.int8_max_abs_diff is None or len(result.files) > 1:  # a single .onnx file holds the int8 graph alone
        print(f"wrote {result.files[0]} (max |logit difference| from torch: {result.max_abs_diff:.1e})")
    if result.int8_max_abs_diff is not None:
        print(f"wrote {result.files[-1]} (int8; max |logit difference| from torch: {result.int8_max_abs_diff:.1e})")
    if out is None or out.suffix.lower() != ".onnx":
        where = model if out is None else out
        print(f"run it with:  freezeframe predict --model {where} --backend onnx"
              f"{' --quantize int8' if quantize == 'int8' else ''} --input FILE")


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="Model directory written by train (or by export, with --backend onnx).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    quantize: Annotated[str, typer.Option(help="none, or int8 (with --backend onnx).")] = "none",
    max_texts: Annotated[int, typer.Option(help="Most texts per request (more: 413).")] = 256,
    max_chars: Annotated[int, typer.Option(help="Most characters per text (more: 413).")] = 10_000,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB (more: 413).")] = 8.0,
    batch_wait_ms: Annotated[float, typer.Option(help="How long a request waits for others to share its forward pass.")] = 5.0,
    max_batch_texts: Annotated[int, typer.Option(help="Most texts merged into one forward pass.")] = 512,
    max_concurrency: Annotated[int, typer.Option(help="Most requests in progress at once; above it, requests get 503 (a JSON error).")] = 1024,
    shutdown_timeout: Annotated[float, typer.Option(help="Seconds that requests in progress get to finish after SIGTERM or Ctrl-C; then they are cut.")] = 10.0,
) -> None:
    """Serve the model over HTTP: POST /predict, GET /health, GET /info, docs at /docs."""
    from freezeframe.serve import ServeConfig, serve_model

    _setup_logging(quiet=False)
    if not math.isfinite(max_body_mb):
        raise FreezeframeError(f"--max-body-mb must be a finite number, got {max_body_mb}")
    config = ServeConfig(host, port, backend, quantize, max_texts, max_chars, int(max_body_mb * 2**20), batch_wait_ms,
                         max_batch_texts, max_concurrency=max_concurrency, shutdown_timeout_s=shutdown_timeout)
    serve_model(model, config)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user errors become one line on stderr and exit code 2, never a traceback. Ctrl-C and
    SIGTERM stop it at a safe point, with one line and exit code 130 or 143."""
    from freezeframe.console import run_command

    run_command(typer.main.get_command(app), argv)
