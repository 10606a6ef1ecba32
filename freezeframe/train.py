"""The one training loop: AdamW, warmup then linear decay, early stopping on validation loss (when
there is validation data; without it the whole schedule runs and the last epoch is kept).

Nothing here knows about transformers: any module whose ``forward(**inputs)`` returns logits
trains the same way (the encoder, its cached top, the from-scratch baseline).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from freezeframe import bert
from freezeframe.batching import ExampleSet
from freezeframe.checkpoint import (
    MemberCheckpoint,
    TrainingDiverged,
    random_states,
    restore_random_states,
)
from freezeframe.config import TrainConfig
from freezeframe.errors import FreezeframeError, logger
from freezeframe.freeze import optimizer_groups
from freezeframe.interrupt import ctrl_c_deferred
from freezeframe.optim import FusedAdamW


@dataclass
class EpochRecord:
    """Losses and accuracies after one epoch (the validation ones are ``None`` without validation data)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    valid_loss: float | None
    valid_accuracy: float | None
    seconds: float


@dataclass
class LoopResult:
    """What the loop did: per-epoch history and the epoch whose weights were kept."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_loss: float = math.inf
    stopped_early: bool = False
    seconds: float = 0.0

    @classmethod
    def from_dict(cls, values: dict) -> LoopResult:
        """The inverse of :meth:`to_dict`."""
        best_loss = values["best_valid_loss"] if values["best_valid_loss"] is not None else math.inf
        return cls([EpochRecord(**r) for r in values["history"]], values["best_epoch"], best_loss,
                   values["stopped_early"], values["train_seconds"])

    def to_dict(self) -> dict:
        return {
            "history": [asdict(r) for r in self.history], "best_epoch": self.best_epoch,
            "best_valid_loss": self.best_valid_loss if math.isfinite(self.best_valid_loss) else None, "stopped_early": self.stopped_early, "train_seconds": self.seconds,
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def choose_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if isinstance(name, torch.device):
        return name
    if name not in ("auto", "cpu", "cuda") and not str(name).startswith("cuda:"):
        raise FreezeframeError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise FreezeframeError("--device cuda was asked for, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@cache
def cpu_multiplies_bf16() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512-BF16 or AMX), where bf16 matrix products
    run faster than float32 ones; elsewhere they are emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def resolve_precision(name: str, device: torch.device, trains_encoder: bool = True) -> str:
    """The precision a training run computes in: ``fp32``, ``bf16`` or ``fp16`` (mixed, CUDA only).

    ``auto`` picks bf16 mixed precision on a CPU with AVX512-BF16 or AMX when the run trains encoder
    layers, and on any CUDA device whatever it trains (bf16, else fp16), else float32. Weights, optimizer state and the loss always stay float32; fp16 scales the loss (dynamic loss
    scaling) so that small gradients survive its narrow range.
    """
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and trains_encoder and cpu_multiplies_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise FreezeframeError("--precision fp16 needs a CUDA device; on the CPU use bf16 (where it is native) or fp32")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise FreezeframeError("--precision bf16: this CUDA device has no bf16 support; use --precision auto (fp16) or fp32")
    return name


def autocast_for(device: torch.device, precision: str | None = None) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (``None``: mixed precision on CUDA, float32 on the CPU)."""
    if precision is None:
        precision = resolve_precision("auto", device) if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def warmup_linear(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear rise over ``warmup_steps``, then linear decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


@torch.inference_mode()
def predict_logits(model: nn.Module, data: ExampleSet, batch_size: int, device: torch.device,
                   precision: str | None = None) -> torch.Tensor:
    """Logits for every example of ``data``, in its order (batches are sorted by length); ``precision``
    as for :func:`autocast_for`."""
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    with autocast_for(device, precision):
        for indices, batch in data.ordered_batches(batch_size):
            batch.pop("labels", None)
            logits = model(**_to(batch, device)).float().cpu()
            if out is None:
                out = torch.empty(len(data), logits.shape[-1])
            out[indices] = logits
    model.train(was_training)
    return out if out is not None else torch.empty(0, 0)


def train_loop(
    model: nn.Module,
    train_data: ExampleSet,
    valid_data: ExampleSet | None,
    config: TrainConfig,
    device: torch.device,
    checkpoint: MemberCheckpoint | None = None,
    schedule: Callable[[int], tuple[nn.Module, ExampleSet, ExampleSet] | None] | None = None,
    quiet: bool = False,
    stop: threading.Event | None = None,
    name: str = "",
    display=None,
) -> LoopResult:
    """Train the trainable parameters of ``model``; keep the weights of the best validation epoch, or
    of the last epoch when there is no validation data.

    Args:
        model: returns logits from ``forward(**batch_inputs)``; frozen parameters have
            ``requires_grad=False`` already.
        train_data: training examples with labels.
        valid_data: validation examples with labels (early stopping watches their loss), or ``None``
            to run every epoch of the schedule and keep the last.
        config: learning rate, epochs, patience, seed, ...
        device: where to train.
        checkpoint: where to save the state after every epoch; when it holds a saved state,
            training continues from there exactly as if it had never stopped.
        schedule: called at the start of every epoch (gradual unfreezing); it may change which
            parameters train and return a new (module, train data, valid data) to use from then on.
            ``model`` must arrive with every parameter that will ever train marked trainable, so
            that the optimizer knows them all from the start.
        quiet: log epochs at debug level only (a warm-up phase inside a larger run).
        stop: set by another thread to stop training after the current step, as Ctrl-C would.
        name: starts every logged line, e.g. ``member 2: `` where members train at once.
        display: a :func:`progress_display` already shown, which this loop adds its bar to (members
            training at once share one); ``None`` shows the loop's own when ``config.show_progress``.

    Returns:
        The history and best epoch; ``model`` holds the best epoch's weights on return.

    Raises:
        KeyboardInterrupt: on Ctrl-C or ``stop`` (the last complete epoch is saved when checkpointing).
    """
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    # the loop's own dropout generator, seeded as torch's global one is above: a loop draws the same masks
    # whether it runs alone or beside another member's in a thread
    generator = torch.Generator().manual_seed(config.seed)
    if config.precision == "auto":
        config = replace(config, precision=resolve_precision(config.precision, device))
    model.to(device)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    total = steps_per_epoch * config.epochs
    # the fused kernel updates every tensor in one pass: a third of the step time of the default on the CPU
    optimizer = FusedAdamW(optimizer_groups(model, config.lr, config.weight_decay, config.lr_decay, config.head_lr),
                           warmup_linear(total, int(config.warmup_ratio * total)))
    # float16's narrow range loses small gradients; scaling the loss keeps them (bf16 has float32's range)
    scaler = torch.amp.GradScaler(device.type) if config.precision == "fp16" else None
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    valid_labels = torch.tensor(valid_data.labels) if valid_data is not None else None
    result, best_state, waited = LoopResult(), None, 0
    if checkpoint is not None and checkpoint.saved is not None:
        result, best_state, waited = _restore(checkpoint.saved, model, trainable, optimizer, scaler, rng, generator)
    started = time.perf_counter() - result.seconds
    first_epoch = config.epochs + 1 if result.stopped_early else len(result.history) + 1
    training_module = model
    progress = display if display is not None else progress_display(config.show_progress)
    level = logging.DEBUG if quiet else logging.INFO
    try:
        with contextlib.nullcontext() if display is not None else progress, bert.dropout_generator(generator):
            task = progress.add_task(f"{name}training", total=total, completed=steps_per_epoch * (first_epoch - 1))
            for epoch in range(first_epoch, config.epochs + 1):
                epoch_start = time.perf_counter()
                staged = schedule(epoch) if schedule is not None else None
                if staged is not None:
                    training_module, train_data, valid_data = staged
                    training_module.to(device)
                train_loss, train_acc = _train_epoch(training_module, train_data, config, device, optimizer, scaler, rng, stop,
                                                     lambda loss, epoch=epoch: progress.update(task, advance=1, description=f"{name}epoch {epoch} loss {loss:.3f}"))
                if not all(torch.isfinite(param).all() for param in trainable.values()):
                    raise TrainingDiverged(f"{name}training diverged in epoch {epoch}: the weights are no longer finite "
                                           f"numbers (training loss {train_loss:.4g}); try a lower --lr")
                valid_loss = valid_acc = None
                if valid_data is not None:
                    logits = predict_logits(training_module, valid_data, config.batch_size * 2, device, config.precision)
                    valid_loss = nn.functional.cross_entropy(logits, valid_labels).item()
                    valid_acc = (logits.argmax(-1) == valid_labels).float().mean().item()
                with ctrl_c_deferred() as ctrl_c:  # an epoch logged as done is also saved
                    record = EpochRecord(epoch, train_loss, train_acc, valid_loss, valid_acc, time.perf_counter() - epoch_start)
                    result.history.append(record)
                    if valid_data is None:  # nothing to choose by: the last epoch is the one kept
                        result.best_epoch, best_state = epoch, None  # the model's own weights are kept
                        logger.log(level, "%sepoch %2d  train loss %.4f acc %.3f  (%.1fs)", name, epoch, train_loss, train_acc, record.seconds)
                    else:
                        improved = valid_loss < result.best_valid_loss - 1e-6
                        if improved:
                            result.best_epoch, result.best_valid_loss, waited = epoch, valid_loss, 0
                            best_state = {n: p.detach().clone() for n, p in trainable.items()}
                        else:
                            waited += 1
                        logger.log(
                            level, "%sepoch %2d  train loss %.4f acc %.3f | valid loss %.4f acc %.3f%s  (%.1fs)",
                            name, epoch, train_loss, train_acc, valid_loss, valid_acc, " *" if improved else "", record.seconds,
                        )
                    result.stopped_early = waited >= config.patience
                    finishing = epoch == config.epochs or result.stopped_early
                    # after the last epoch the model itself is written next: a checkpoint would only be deleted,
                    # unless Ctrl-C came and the run stops here
                    if checkpoint is not None and (not finishing or checkpoint.keep or ctrl_c):
                        result.seconds = time.perf_counter() - started
                        checkpoint.save(_snapshot(epoch, result, best_state, waited, model, trainable, optimizer, scaler, rng,
                                                  generator))
                if result.stopped_early:
                    logger.log(level, "%searly stop: no better validation loss for %d epochs; keeping epoch %d", name, waited, result.best_epoch)
                    break
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint.flush()
        raise
    if checkpoint is not None:
        checkpoint.flush()
    if best_state is not None:
        with torch.no_grad():
            for key, value in best_state.items():
                trainable[key].copy_(value)
    result.seconds = time.perf_counter() - started
    return result


def _train_epoch(
    model: nn.Module, data: ExampleSet, config: TrainConfig, device: torch.device,
    optimizer: FusedAdamW, scaler: torch.amp.GradScaler | None, rng: random.Random, stop: threading.Event | None,
    on_step: Callable[[float], None],
) -> tuple[float, float]:
    """One pass over shuffled training batches; returns the mean loss and the accuracy."""
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    for batch in data.training_batches(config.batch_size, rng):
        if stop is not None and stop.is_set():
            raise KeyboardInterrupt
        batch = _to(batch, device)
        labels = batch.pop("labels")
        with autocast_for(device, config.precision):
            logits = model(**batch)
        loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad()
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:  # a step whose scaled gradients overflowed is skipped, and the scale lowered
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(-1) == labels).sum().item()
        seen += len(labels)
        on_step(loss_sum / seen)
    return loss_sum / seen, correct / seen


def _model_state(model: nn.Module, trainable: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """What training changes in ``model``: its trainable parameters and its buffers (tiny next to the rest)."""
    state = {n: p.detach() for n, p in trainable.items()}
    return state | {f"buffer:{n}": b for n, b in model.named_buffers()}


def _snapshot(epoch: int, result: LoopResult, best_state: dict | None, waited: int, model: nn.Module,
              trainable: dict[str, nn.Parameter], optimizer: FusedAdamW, scaler: torch.amp.GradScaler | None,
              rng: random.Random, generator: torch.Generator) -> dict:
    """The loop's whole state at the end of ``epoch``, for :class:`CheckpointStore`."""
    # when this epoch is the best one its weights are the model's: do not store them twice
    best_is_current = result.best_epoch == epoch
    return {
        "epoch": epoch, "result": result.to_dict(), "waited": waited, "best_is_current": best_is_current,
        "best_state": None if best_is_current else best_state,
        "model": _model_state(model, trainable), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "random": {**random_states(rng), "dropout": generator.get_state()},
    }


def _restore(saved: dict, model: nn.Module, trainable: dict[str, nn.Parameter], optimizer: FusedAdamW,
             scaler: torch.amp.GradScaler | None, rng: random.Random, generator: torch.Generator) -> tuple[LoopResult, dict | None, int]:
    """Put the loop back into the state :func:`_snapshot` recorded; returns (result, best_state, waited)."""
    current = _model_state(model, trainable)
    if set(saved["model"]) != set(current):
        raise FreezeframeError("the checkpoint does not fit this model (its trainable parameters differ); "
                               "drop --resume and pass --overwrite to start over")
    with torch.no_grad():
        for name, value in saved["model"].items():
            current[name].copy_(value)
    optimizer.load_state_dict(saved["optimizer"])
    if scaler is not None and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    restore_random_states(saved["random"], rng)
    generator.set_state(saved["random"]["dropout"])
    result = LoopResult.from_dict(saved["result"])
    logger.info("resumed after epoch %d (best so far: epoch %d)", len(result.history), result.best_epoch)
    best_state = {n: p.detach().clone() for n, p in trainable.items()} if saved["best_is_current"] else saved["best_state"]
    return result, best_state, saved["waited"]


def progress_display(enabled: bool):
    """A transient progress display on stderr (disabled: shows nothing); training loops add their bars to it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True, disable=not enabled,
    )
