"""Freeze plans: named rules over a model's parameters that decide which ones train.

A plan is one of
  * ``head``      the classifier only;
  * ``last-N``    the classifier, the pooler and the top N encoder layers (``last-1`` is the
                  seed notebook's plan);
  * ``encoder``   every encoder layer and the head; only the embeddings stay frozen (and cached):
                  ``last-N`` with N the model's depth, whatever that depth is;
  * ``full``      everything (but a [CLS] pooler that mean pooling never reads: no plan trains it);
  * ``gradual-N`` ULMFiT's gradual unfreezing: epoch 1 trains the head, each later epoch unfreezes
                  one more encoder layer from the top, down to N layers (``gradual``: all layers;
                  the embeddings stay frozen);
  * patterns      comma-separated globs over parameter names, e.g.
                  ``classifier.*,bert.encoder.layer.3.*``.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from freezeframe.errors import FreezeframeError, logger, report, spoken_list

_LAYER = re.compile(r"(?:^|\.)(?:layers?|albert_layer_groups)\.(\d+)\.")
"""An encoder layer's index in a parameter name: ``bert.encoder.layer.3.``, DistilBERT's ``transformer.layer.3.``,
ALBERT's group of shared layers ``albert_layer_groups.0.`` (one set of weights that every depth reuses)."""
_SHARED = re.compile(r"^[^.]+\.(?:encoder|final_norm)\.")
"""A parameter of the encoder outside its layers (a layer's name matches ``_LAYER`` first): what every layer shares,
DeBERTa's LayerNorm of its relative positions, MPNet's relative attention bias; ModernBERT's ``model.final_norm``, the
LayerNorm over the last layer's output. Not the head's: ``head`` leaves it frozen, ``last-N`` trains it with the top
layer."""
_PRESET_LAST = re.compile(r"^last-(\d+)$")
_PRESET_GRADUAL = re.compile(r"^gradual(?:-(\d+))?$")


def named_plan_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters a plan rules over, under the names users write patterns for."""
    source = model.plan_parameters() if hasattr(model, "plan_parameters") else model.named_parameters()
    return list(source)


def block_of(name: str) -> str:
    """The block a parameter belongs to: ``embeddings``, ``layer N``, ``pooler`` or its head module
    (the top-level module outside the encoder: ``classifier`` for BERT's ``classifier.weight`` and for
    RoBERTa's ``classifier.dense.weight`` alike, DistilBERT's ``pre_classifier``)."""
    match = _LAYER.search(name)
    if match:
        return f"layer {int(match.group(1))}"
    if "embedding" in name:
        return "embeddings"
    if ".pooler." in f".{name}":
        return "pooler"
    if _SHARED.search(name):
        return "encoder"
    return name.split(".")[0]


def layer_index(name: str) -> int | None:
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def count_layers(names: Iterable[str]) -> int:
    indices = [i for i in (layer_index(n) for n in names) if i is not None]
    return max(indices) + 1 if indices else 0


def shared_depth(model: nn.Module) -> int:
    """How many layers share the weights of ``model``'s layer groups: ALBERT's ``num_hidden_layers`` reuse its
    ``num_hidden_groups`` sets of weights, which are what plans count; 0 where each layer has weights of its own."""
    config = getattr(getattr(model, "hf", None), "config", None)
    return int(getattr(config, "num_hidden_layers", 0) or 0) if getattr(config, "model_type", None) == "albert" else 0


def unread_pooler(model: nn.Module) -> set[str]:
    """The pretrained [CLS] pooler's parameters where ``model`` pools by the mean, which never reads them: no plan
    trains them (``full`` and patterns such as ``*`` included), so that no count says they trained."""
    if getattr(model, "pooling", "cls") != "mean":
        return set()
    return {n for n, _ in named_plan_parameters(model) if block_of(n) == "pooler" and not _owned_by_head(n, model)}


def _owned_by_head(name: str, model: nn.Module) -> bool:
    """Whether a pooler parameter belongs to the classification head rather than to the pretrained encoder: DeBERTa's
    ``pooler.dense`` sits beside its base model and starts random, where BERT's ``bert.pooler`` is pretrained."""
    base = getattr(getattr(model, "hf", None), "base_model_prefix", None)
    return base is not None and not name.startswith(f"{base}.")


@dataclass(frozen=True)
class FreezePlan:
    """A rule deciding, for each named parameter, whether it trains.

    Args:
        spec: ``head``, ``last-N``, ``full`` or comma-separated glob patterns.
    """

    spec: str = "last-1"

    def __post_init__(self) -> None:
        if not self.spec or not self.spec.strip():
            raise FreezeframeError("--freeze is empty; use head, last-N, encoder, full or glob patterns")

    @property
    def patterns(self) -> list[str]:
        return [p.strip() for p in self.spec.split(",") if p.strip()]

    @property
    def is_patterns(self) -> bool:
        """Whether the plan is glob patterns rather than a preset."""
        return self.spec not in ("head", "encoder", "full") and not (_PRESET_LAST.match(self.spec) or self.is_gradual)

    @property
    def is_gradual(self) -> bool:
        return bool(_PRESET_GRADUAL.match(self.spec))

    def gradual_depth(self, n_layers: int) -> int:
        """How many encoder layers a gradual plan unfreezes in the end."""
        depth = _PRESET_GRADUAL.match(self.spec).group(1)
        return n_layers if depth is None else int(depth)

    def check_depth(self, n_layers: int, model: str = "the model", option: str = "--freeze", shared_by: int = 0) -> None:
        """Refuse a ``last-N`` or ``gradual-N`` plan deeper than the ``n_layers`` encoder layers of ``model``, and any
        gradual plan of a model without encoder layers (the baseline). ``shared_by``: how many layers share the
        ``n_layers`` sets of weights (ALBERT's, see :func:`shared_depth`), 0 where each layer has its own."""
        last = _PRESET_LAST.match(self.spec)
        depth = int(last.group(1)) if last else self.gradual_depth(n_layers) if self.is_gradual else 0
        # a plain ``gradual`` is as deep as the model: without layers it has nothing to unfreeze after epoch 1
        if depth > n_layers or (self.is_gradual and n_layers == 0):
            if n_layers == 0:
                raise FreezeframeError(f"{option} {self.spec}: {model} has no encoder layers; use full or head")
            if shared_by and n_layers == 1:
                raise FreezeframeError(f"{option} {self.spec}: {model}'s {shared_by} layers share one set of weights "
                                       "(ALBERT), so a plan cannot pick among them; last-1 trains them all, or use head")
            if shared_by:
                raise FreezeframeError(f"{option} {self.spec}: {model}'s {shared_by} layers share {n_layers} sets of weights "
                                       f"(ALBERT's num_hidden_groups), which plans count; last-{n_layers} trains them all")
            raise FreezeframeError(f"{option} {self.spec}: {model} has only {n_layers} encoder "
                                   f"layer{'s' if n_layers > 1 else ''}")

    def stage(self, epoch: int, n_layers: int) -> FreezePlan:
        """The plan in force during ``epoch`` (1-based): a gradual plan grows by one layer per epoch."""
        if not self.is_gradual:
            return self
        return FreezePlan(f"last-{min(epoch - 1, self.gradual_depth(n_layers))}")

    def trainable_names(self, model: nn.Module) -> set[str]:
        """Names of the parameters this plan trains on ``model``: never a pretrained [CLS] pooler that mean pooling
        does not read (it would get no gradient, yet count as trained)."""
        return self.chosen_names(model) - unread_pooler(model)

    def chosen_names(self, model: nn.Module) -> set[str]:
        """Names of the parameters the plan names on ``model``, read by the network or not."""
        names = [n for n, _ in named_plan_parameters(model)]
        if self.spec == "full":
            return set(names)
        if self.is_gradual:
            n_layers = count_layers(names)
            self.check_depth(n_layers, shared_by=shared_depth(model))
            return FreezePlan(f"last-{self.gradual_depth(n_layers)}").trainable_names(model)
        if self.spec == "encoder":
            return FreezePlan(f"last-{count_layers(names)}").trainable_names(model)
        blocks = {n: block_of(n) for n in names}
        head = {n for n, b in blocks.items() if b not in ("embeddings", "pooler", "encoder") and not b.startswith("layer ")}
        head |= {n for n, b in blocks.items() if b == "pooler" and _owned_by_head(n, model)}
        if self.spec == "head":
            return head
        last = _PRESET_LAST.match(self.spec)
        if last:
            n_layers = count_layers(names)
            self.check_depth(n_layers, shared_by=shared_depth(model))
            lowest = n_layers - int(last.group(1))
            # a mean-pooled head never reads the pooler, so it has nothing to learn there
            pooler = set() if getattr(model, "pooling", "cls") == "mean" else {n for n, b in blocks.items() if b == "pooler"}
            shared = {n for n, b in blocks.items() if b == "encoder"} if lowest < n_layers else set()
            return head | pooler | shared | {
                n for n in names if (layer_index(n) is not None and layer_index(n) >= lowest)
            }
        chosen: set[str] = set()
        for pattern in self.patterns:
            matched = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
            if not matched:
                examples = ", ".join(dict.fromkeys(names[:2] + names[-2:]))  # a model of 3 names lists each once
                raise FreezeframeError(
                    f"--freeze pattern {pattern!r} matches no parameter; names look like: {examples} "
                    "(or use a preset: head, last-N, encoder, full)"
                )
            chosen |= matched
        return chosen

    def apply(self, model: nn.Module, quiet: bool = False) -> FreezeReport:
        """Set ``requires_grad`` on every parameter of ``model`` and log the counts (at debug level when ``quiet``)."""
        trainable = self.trainable_names(model)
        # patterns that name the pooler of a mean-pooled head: it would get no gradient (``full`` says so in the README)
        unread = self.chosen_names(model) & unread_pooler(model) if self.spec != "full" else set()
        if not trainable:
            why = " (mean pooling never reads the [CLS] pooler it trains; add classifier.* or use --pooling cls)" if unread else ""
            raise FreezeframeError(f"--freeze {self.spec} leaves nothing to train{why}")
        if unread and not quiet:
            report(f"--freeze {self.spec}: mean pooling never reads the [CLS] pooler, so it stays frozen; use --pooling cls "
                   "to train it")
        if not quiet and self.is_patterns and count_layers(n for n, _ in named_plan_parameters(model)) \
                and trainable == FreezePlan("head").trainable_names(model):
            from freezeframe.config import HEAD_DEFAULTS

            report(f"--freeze {self.spec} trains the classifier alone, as --freeze head does, but only head takes the "
                   f"linear probe's defaults (lr {HEAD_DEFAULTS['lr']:g}, {HEAD_DEFAULTS['epochs']} epochs, early stopping on "
                   f"{HEAD_DEFAULTS['valid_fraction']:.0%} held out); use --freeze head, or set --lr and --epochs")
        for name, param in named_plan_parameters(model):
            param.requires_grad_(name in trainable)
        freeze_report = FreezeReport.of(model, self.spec)
        logger.log(
            logging.DEBUG if quiet else logging.INFO, "freeze plan %s: %s of %s parameters train (%.1f%%)%s",
            self.spec, f"{freeze_report.trainable:,}", f"{freeze_report.total:,}", 100 * freeze_report.share,
            " once every stage is unfrozen" if self.is_gradual else "",
        )
        return freeze_report

    def warn_untrained_frozen(self, model: nn.Module) -> None:
        """Say when the plan freezes weights that start random (the checkpoint lacked them) where the model reads them."""
        new = getattr(model, "new_weights", ())
        frozen = {block_of(name) for name, param in named_plan_parameters(model) if not param.requires_grad and name in new}
        if getattr(model, "pooling", "mean") != "cls":
            frozen.discard("pooler")  # mean pooling never reads it
        head = sorted(block for block in frozen if block != "pooler")  # the classifier, DistilBERT's pre_classifier
        if head:
            named, patterns = spoken_list([f"the {block}" for block in head]), ",".join(f"{block}.*" for block in head)
            its, it = ("its", "it") if len(head) == 1 else ("their", "them")
            report(f"--freeze {self.spec} leaves {named} frozen at {its} random initialisation; add {patterns} to the plan "
                   f"to train {it}")
        if "pooler" in frozen:
            fix = "use --pooling mean, or a plan that trains it (last-N)" if getattr(model, "staged", True) else "add pooler.* to the plan"
            report(f"--freeze {self.spec} leaves the [CLS] pooler frozen at its random initialisation (the checkpoint has "
                   f"no pooler weights, as masked-LM checkpoints do not); {fix}")

    def gradual_stages(self, model: nn.Module, epochs_run: int) -> list[dict]:
        """The stages of a gradual plan over the ``epochs_run`` epochs of the kept history, as freezeframe.json
        records them: from the plan itself, so that a resumed run (whose hook saw only the later epochs) and an
        ensemble (a hook per member) record the one schedule every member followed."""
        sizes = {name: param.numel() for name, param in named_plan_parameters(model)}
        stages: list[dict] = []
        for epoch in range(1, epochs_run + 1):
            stage = self.stage(epoch, model.num_layers)
            if not stages or stages[-1]["plan"] != stage.spec:
                trainable = sum(sizes[name] for name in stage.trainable_names(model))
                stages.append({"from_epoch": epoch, "plan": stage.spec, "trainable_parameters": trainable})
        return stages


@dataclass
class BlockRow:
    """Parameter counts of one block."""

    block: str
    parameters: int
    trainable: int

    @property
    def state(self) -> str:
        if self.trainable == self.parameters:
            return "trainable"
        return "frozen" if self.trainable == 0 else "partly trainable"


@dataclass
class FreezeReport:
    """What a plan left trainable, block by block."""

    plan: str
    rows: list[BlockRow]
    rates: dict[str, float] = field(default_factory=dict)
    """The peak learning rate of each trainable block (see :meth:`add_rates`); empty until known."""

    def add_rates(self, model: nn.Module, lr: float, lr_decay: float = 1.0, head_lr: float | None = None) -> FreezeReport:
        """Record the rate each trainable block of ``model`` (the plan applied) trains at, as the optimizer gets it:
        ``--lr-decay`` lowers it layer by layer from the top, ``--head-lr`` sets the classifier's and pooler's."""
        self.rates = {block_of(name): group["lr"] for group in optimizer_groups(model, lr, 0.0, lr_decay, head_lr)
                      for name in group["names"]}
        return self

    @classmethod
    def of(cls, model: nn.Module, plan: str) -> FreezeReport:
        rows: dict[str, BlockRow] = {}
        for name, param in named_plan_parameters(model):
            row = rows.setdefault(block_of(name), BlockRow(block_of(name), 0, 0))
            row.parameters += param.numel()
            row.trainable += param.numel() if param.requires_grad else 0
        return cls(plan, list(rows.values()))

    @property
    def total(self) -> int:
        return sum(r.parameters for r in self.rows)

    @property
    def trainable(self) -> int:
        return sum(r.trainable for r in self.rows)

    @property
    def share(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {
            "plan": self.plan, "trainable_parameters": self.trainable, "total_parameters": self.total,
            "blocks": [{"block": r.block, "parameters": r.parameters, "trainable": r.trainable,
                        **({"lr": self.rates[r.block]} if r.block in self.rates else {})} for r in self.rows],
        }

    def format_table(self) -> str:
        width = max(len(r.block) for r in self.rows + [BlockRow("block", 0, 0)])
        rate = {r.block: f"{self.rates[r.block]:.3g}" if r.block in self.rates else "" for r in self.rows}
        lines = [f"{'block':<{width}}  {'parameters':>12}  " + (f"{'state':<16}  learning rate" if self.rates else "state")]
        lines += [f"{r.block:<{width}}  {r.parameters:>12,}  {r.state:<16}  {rate[r.block]}".rstrip() if self.rates
                  else f"{r.block:<{width}}  {r.parameters:>12,}  {r.state}" for r in self.rows]
        lines.append(f"{'total':<{width}}  {self.total:>12,}")
        lines.append(f"{'trainable':<{width}}  {self.trainable:>12,}  {100 * self.share:.2f}% of all parameters")
        return "\n".join(lines)


def optimizer_groups(
    model: nn.Module, lr: float, weight_decay: float, lr_decay: float = 1.0, head_lr: float | None = None
) -> list[dict]:
    """AdamW parameter groups over trainable parameters only.

    Biases and LayerNorm weights get no weight decay. The top encoder layer trains at ``lr`` and
    each lower one at ``lr_decay`` times the rate of the layer above (discriminative learning
    rates); what the layers share (block ``encoder``) trains at ``lr``; the classifier and pooler at ``head_lr``
    (default ``lr``).
    """
    named = [(n, p) for n, p in named_plan_parameters(model) if p.requires_grad]
    n_layers = count_layers(n for n, _ in named_plan_parameters(model))
    groups: dict[tuple[bool, float], dict] = {}
    for name, param in named:
        decay = param.ndim >= 2 and "LayerNorm" not in name and "norm" not in name.lower()
        index = layer_index(name)
        if index is not None:
            rate = lr * lr_decay ** (n_layers - 1 - index)
        elif block_of(name) == "embeddings":
            rate = lr * lr_decay**n_layers
        elif block_of(name) == "encoder":  # shared by every layer, trained with the top one
            rate = lr
        else:
            rate = head_lr if head_lr is not None else lr
        group = groups.setdefault((decay, rate), {
            "params": [], "names": [], "lr": rate, "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(param)
        group["names"].append(name)
    placed = [id(p) for g in groups.values() for p in g["params"]]
    if len(placed) != len(set(placed)) or len(placed) != len(named):
        raise RuntimeError("every trainable parameter must land in exactly one optimizer group")
    return list(groups.values())
