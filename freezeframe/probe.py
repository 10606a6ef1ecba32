"""LP-FT's first step, the linear probe: fit the classifier alone on the frozen network's sentence vectors,
then fine-tune the plan from that head (``--probe``)."""

from __future__ import annotations

import threading
from dataclasses import replace

import torch

from freezeframe.batching import ExampleSet
from freezeframe.cache import CachedTop, CachePlan, sentence_vectors
from freezeframe.config import HEAD_DEFAULTS, RunConfig
from freezeframe.errors import logger
from freezeframe.freeze import FreezePlan
from freezeframe.train import resolve_precision, train_loop


class Probe:
    """LP-FT's first step: fit the classifier alone on the sentence vectors of the network as loaded.

    Fine-tuning from a random head lets its early, large gradients pull the pretrained features
    around; starting from a fitted linear probe does not (Kumar et al., 2022). The vectors are
    computed once (through the frozen-prefix cache when there is one) and shared by ensemble
    members, which differ only in the head's initialisation.
    """

    def __init__(self, run: RunConfig, module: torch.nn.Module, train_set: ExampleSet,
                 valid_set: ExampleSet | None, device: torch.device) -> None:
        self.enabled = run.train.probe  # where it cannot run, train_classifier refused it before any work
        self.run, self.module, self.device = run, module, device
        self.train_set, self.valid_set = train_set, valid_set
        self.vectors: tuple[ExampleSet, ExampleSet | None] | None = None
        self._computing = threading.Lock()
        """Members training at once share one computation of the vectors: a second one ran through the same
        network, whose mode the first switched back to training as it ended (dropout in the second's last batches)."""

    def fit(self, model: torch.nn.Module, seed: int) -> dict | None:
        """Train ``model``'s classifier on the vectors; its trainable set is as before on return."""
        if not self.enabled:
            return None
        with self._computing:
            if self.vectors is None:
                self.vectors = (sentence_vectors(self.module, self.train_set, self.device),
                                sentence_vectors(self.module, self.valid_set, self.device) if self.valid_set is not None else None)
        named = list(model.plan_parameters())
        trainable = {n for n, p in named if p.requires_grad}
        head = FreezePlan("head").trainable_names(model)
        for name, param in named:
            param.requires_grad_(name in head)
        config = replace(self.run.train, lr=HEAD_DEFAULTS["lr"], epochs=HEAD_DEFAULTS["epochs"], head_lr=None,
                         lr_decay=1.0, ensemble=1, seed=seed, show_progress=False,
                         precision=resolve_precision(self.run.train.precision, self.device, trains_encoder=False))
        try:
            loop = train_loop(CachedTop(model, CachePlan(None)), *self.vectors, config, self.device, quiet=True)
        finally:
            for name, param in named:
                param.requires_grad_(name in trainable)
        best = loop.history[loop.best_epoch - 1]
        scored = "no validation data" if best.valid_loss is None else f"valid loss {best.valid_loss:.4f} acc {best.valid_accuracy:.3f}"
        logger.info("linear probe: %s after %d epochs (%.1fs); fine-tuning from it", scored, loop.best_epoch, loop.seconds)
        return {"lr": config.lr, "best_epoch": loop.best_epoch, "epochs_run": len(loop.history),
                "valid_loss": best.valid_loss, "valid_accuracy": best.valid_accuracy, "seconds": loop.seconds}


def probe_unavailable(run: RunConfig, plan: FreezePlan, model: torch.nn.Module) -> str | None:
    """Why LP-FT cannot run for this model and plan (said, not skipped silently), or ``None``."""
    if run.model.is_baseline:
        return "the baseline has no pretrained encoder to probe"
    if plan.spec == "head":
        return "with --freeze head the classifier alone trains, which is the probe itself"
    if plan.is_gradual:
        return "gradual unfreezing trains the classifier alone first already (its epoch 1)"
    if not getattr(model, "staged", False):
        return f"it fits on sentence vectors computed through BERT's stages, which {type(model.hf).__name__} does not have"
    return None
