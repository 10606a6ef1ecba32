"""Frozen-prefix activation cache: run the frozen bottom of the encoder once, train the top.

With the seed's plan (``last-1``) the embeddings and all encoder layers but the last never
change, yet a plain loop recomputes them for every batch of every epoch. Here they run once per
example (eval mode, no gradients) and their outputs are kept at each text's real length; every
epoch then trains only the layers above. With ``head`` even the pooled sentence vector is cached.

The one difference from the plain loop: dropout inside the frozen layers is off, because their
outputs are computed once (see the README for its measured effect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from freezeframe.batching import ExampleSet
from freezeframe.encoder import EncoderClassifier
from freezeframe.errors import logger
from freezeframe.freeze import block_of, layer_index

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class CachePlan:
    """Where the trainable top of the network starts.

    ``start`` is the first encoder layer that runs every epoch (its input is cached), or
    ``None`` when nothing below the classifier trains and the pooled vector itself is cached.
    """

    start: int | None

    @property
    def level(self) -> str:
        return "pooled" if self.start is None else f"input of layer {self.start}"


def plan_cache(model: nn.Module) -> CachePlan | None:
    """The cache a model's current freeze state allows, or ``None`` when nothing below trains frozen."""
    if not isinstance(model, EncoderClassifier) or not model.staged:
        return None
    trainable = [n for n, p in model.plan_parameters() if p.requires_grad]
    if any(block_of(n) == "embeddings" for n in trainable):
        return None
    layers = [layer_index(n) for n in trainable if layer_index(n) is not None]
    if layers:
        return CachePlan(min(layers))
    if model.pooling == "cls" and any(block_of(n) == "pooler" for n in trainable):
        return CachePlan(model.num_layers)
    return CachePlan(None)


def estimate_bytes(data: ExampleSet, model: EncoderClassifier, plan: CachePlan, dtype: torch.dtype) -> int:
    hidden = model.hf.config.hidden_size
    tokens = len(data) if plan.start is None else sum(data.length(i) for i in range(len(data)))
    return tokens * hidden * torch.finfo(dtype).bits // 8


def default_budget_bytes() -> int:
    """A quarter of the machine's physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


@torch.no_grad()  # not inference_mode: cached tensors feed autograd-tracked layers later
def build_cache(
    model: EncoderClassifier, data: ExampleSet, plan: CachePlan, device: torch.device,
    dtype: torch.dtype = torch.float32, batch_size: int = 32,
) -> ExampleSet:
    """Run the frozen prefix over ``data`` once; return examples holding its outputs."""
    if plan.start is None:
        return sentence_vectors(model, data, device, dtype, batch_size)
    was_training = model.training
    model.eval().to(device)
    examples: list[dict[str, torch.Tensor] | None] = [None] * len(data)
    for indices, batch in data.ordered_batches(batch_size):
        mask = batch["attention_mask"].to(device)
        hidden = model.embed(batch["input_ids"].to(device), batch.get("token_type_ids"))
        hidden = model.encode(hidden, mask, 0, plan.start).to("cpu", dtype)
        for row, index in enumerate(indices):
            length = data.length(index)
            examples[index] = {"hidden": hidden[row, :length].clone(), "attention_mask": torch.ones(length, dtype=torch.long)}
    model.train(was_training)
    return ExampleSet(examples, data.labels, data.pad_id, data.pad_to)


class CachedTop(nn.Module):
    """The trainable top of an :class:`EncoderClassifier`, fed from the cache.

    It shares its layers with the full model, so training it trains the full model.
    """

    def __init__(self, model: EncoderClassifier, plan: CachePlan) -> None:
        super().__init__()
        self.model = model
        self.start = plan.start

    def plan_parameters(self):
        return self.model.plan_parameters()

    def sentence_vector(
        self, hidden: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """What the classifier reads, computed from the cached activations."""
        dtype = self.model.hf.classifier.weight.dtype
        if pooled is not None:
            return pooled.to(dtype)
        hidden = self.model.encode(hidden.to(dtype), attention_mask, self.start)
        return self.model.pool(hidden, attention_mask)

    def forward(
        self, hidden: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model.classify(self.sentence_vector(hidden, attention_mask, pooled))


@torch.no_grad()
def sentence_vectors(module: nn.Module, data: ExampleSet, device: torch.device, dtype: torch.dtype = torch.float32,
                     batch_size: int = 32) -> ExampleSet:
    """Examples holding the pooled vector ``module`` (an EncoderClassifier or a CachedTop) gives each
    example of ``data`` now, in eval mode: the ``head`` plan's cache and a linear probe's input."""
    was_training = module.training
    module.eval().to(device)
    examples: list[dict[str, torch.Tensor] | None] = [None] * len(data)
    for indices, batch in data.ordered_batches(batch_size):
        batch.pop("labels", None)
        pooled = module.sentence_vector(**{k: v.to(device) for k, v in batch.items()}).to("cpu", dtype)
        for row, index in enumerate(indices):
            examples[index] = {"pooled": pooled[row].clone()}
    module.train(was_training)
    # a vector has no length of its own: keep the text's, so that training batches group as without the cache
    lengths = [data.length(i) for i in range(len(data))]
    return ExampleSet(examples, data.labels, data.pad_id, data.pad_to, lengths=lengths)


def cached_training_data(
    model: nn.Module, train_data: ExampleSet, valid_data: ExampleSet | None, device: torch.device,
    dtype_name: str = "float32", budget_bytes: int | None = None,
) -> tuple[nn.Module, ExampleSet, ExampleSet | None, dict]:
    """The module and data the loop should train on, using the cache when the plan allows it.

    Returns:
        (module, train data, valid data (``None`` when it is), a description of the cache for freezeframe.json).
    """
    plan = plan_cache(model)
    if plan is None:
        return model, train_data, valid_data, {"used": False, "reason": "nothing below the trainable layers is frozen"}
    dtype = DTYPES[dtype_name]
    parts = [train_data] + ([valid_data] if valid_data is not None else [])
    needed = sum(estimate_bytes(part, model, plan, dtype) for part in parts)
    budget = budget_bytes if budget_bytes is not None else default_budget_bytes()
    if needed > budget:
        logger.warning(
            "frozen-prefix cache would need %s MiB, over the %s MiB budget (--cache-budget); "
            "training without the cache", _mib(needed), _mib(budget),
        )
        return model, train_data, valid_data, {"used": False, "reason": "over budget", "bytes_needed": needed}
    cached_train = build_cache(model, train_data, plan, device, dtype)
    cached_valid = build_cache(model, valid_data, plan, device, dtype) if valid_data is not None else None
    logger.info("frozen-prefix cache: %s, %.1f MiB (%s)", plan.level, needed / 2**20, dtype_name)
    info = {"used": True, "level": plan.level, "start_layer": plan.start, "bytes": needed, "dtype": dtype_name}
    return CachedTop(model, plan), cached_train, cached_valid, info


def _mib(nbytes: float) -> str:
    """Bytes as MiB for a message: one decimal, or two significant digits below 1 MiB (never a budget of 0.0)."""
    mib = nbytes / 2**20
    return f"{mib:.1f}" if mib >= 1 else f"{mib:.2g}"
