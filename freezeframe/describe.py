"""What a freeze plan trains in a model, block by block: the library function behind ``inspect``."""

from __future__ import annotations

from pathlib import Path

from freezeframe.config import DEFAULT_FREEZE, DEFAULT_MODEL, DEFAULT_POOLING, ModelConfig, TrainConfig, plan_defaults
from freezeframe.errors import FreezeframeError


def describe_plan(model: str = DEFAULT_MODEL, freeze: str | None = None, num_labels: int = 3,
                  pooling: str | None = None, lr: float | None = None, lr_decay: float = 1.0,
                  head_lr: float | None = None) -> str:
    """The per-block table of a freeze plan over an encoder, the baseline, or a trained model directory.

    Args:
        model: an encoder directory or cached hub id, ``baseline``, or a model directory ``train`` wrote.
        freeze: the plan to show; default: a trained directory's own plan, else the default plan.
        num_labels: classes of the head of an untrained encoder.
        pooling: ``cls`` or ``mean`` for an untrained encoder; a trained directory keeps its own.
        lr, lr_decay, head_lr: the rates ``train`` would give an untrained encoder's blocks (``lr`` defaults to the
            plan's own, as in ``train``); a trained directory shows the rates it trained its own plan at.

    Returns:
        The text ``freezeframe inspect`` prints: a title line, the table (with each trainable block's peak learning
        rate), and for gradual or LP-FT plans how the plan unfolds (or unfolded) in training.
    """
    from freezeframe.ensemble import plan_network
    from freezeframe.freeze import FreezePlan, count_layers, shared_depth
    from freezeframe.predict import META_FILE, load_classifier, read_meta, refuse_export_dir

    if isinstance(num_labels, bool) or not isinstance(num_labels, int):
        raise TypeError(f"num_labels must be an int, got {type(num_labels).__name__} {num_labels!r}")
    if num_labels < 2:
        raise FreezeframeError(f"--num-labels must be at least 2, got {num_labels}")
    rates = TrainConfig(lr=lr, lr_decay=lr_decay, head_lr=head_lr)  # checked as train checks them
    meta: dict = {}
    own_plan = None  # a trained directory's own plan
    described = model
    if model != "baseline":
        refuse_export_dir(Path(model), "inspect the model directory it was exported from ({source})")
    if model != "baseline" and (Path(model) / META_FILE).exists():
        meta = read_meta(Path(model))
        given = [option for option, value in (("--lr", lr), ("--lr-decay", lr_decay != 1.0), ("--head-lr", head_lr)) if value]
        own_plan = meta.get("freeze", {}).get("plan")
        if given and freeze in (None, own_plan):
            raise FreezeframeError(f"{', '.join(given)}: {model} is trained; inspect shows the rates it trained its plan "
                                   f"({own_plan}) at, so drop {'it' if len(given) == 1 else 'them'} (or name another "
                                   "--freeze to see that plan's rates)")
        trained_pooling = meta.get("settings", {}).get("model", {}).get("pooling")
        if pooling is not None and trained_pooling is not None and pooling != trained_pooling:
            raise FreezeframeError(f"--pooling {pooling}: {model} was trained with {trained_pooling} pooling, which its "
                                   "weights keep; drop --pooling")
        loaded = load_classifier(Path(model), device="cpu")
        meta = loaded.meta
        network = plan_network(loaded)
        if meta.get("members"):
            described = f"{model} (an ensemble of {len(meta.get('member_runs') or []) or meta['members']} members; one is shown)"
    else:
        from freezeframe.fit import build_model

        labels = [f"class_{i}" for i in range(num_labels)]
        config = ModelConfig(model=model, pooling=pooling or DEFAULT_POOLING, freeze=freeze or DEFAULT_FREEZE)
        # an untrained baseline's vocabulary is its training data's words: show it at its full size
        words = [" ".join(f"word{i}" for i in range(config.vocab_size))] if config.is_baseline else ["an example text"]
        network, _ = build_model(config, labels, words)
        freeze = freeze or config.plan
        if config.is_baseline:
            described = f"baseline (untrained; {config.vocab_size:,} training words + <PAD>, <UNK>)"
    freeze = freeze or own_plan or DEFAULT_FREEZE
    plan = FreezePlan(freeze)
    as_trained = own_plan is not None and freeze == own_plan  # a trained directory under its own plan: as it trained
    schedule = meta.get("freeze", {}).get("schedule") if as_trained else None
    # a trained gradual model shows the last stage it reached, not the plan's full depth
    report = (FreezePlan(schedule[-1]["plan"]) if schedule and plan.is_gradual else plan).apply(network)
    trained = meta.get("settings", {}).get("train", {})
    if as_trained:  # the rates it trained at
        if trained.get("lr") is not None:
            report.add_rates(network, trained["lr"], trained.get("lr_decay", 1.0), trained.get("head_lr"))
    else:  # an untrained model, or another plan: the rates train would give it
        kind = meta.get("settings", {}).get("model", {}).get("model", model)
        peak = rates.lr if rates.lr is not None else plan_defaults(kind, freeze)["lr"]
        report.add_rates(network, peak, rates.lr_decay, rates.head_lr)
    lines = [f"model {described}, freeze plan {freeze}", "", report.format_table()]
    shared_by, groups = shared_depth(network), count_layers(name for name, _ in network.named_parameters())
    if shared_by:  # ALBERT: a block "layer N" is a group of weights that several layers reuse
        named = "one layer group (the block 'layer 0'" if groups == 1 else f"{groups} layer groups (the blocks 'layer 0' to 'layer {groups - 1}'"
        lines += ["", (f"ALBERT: its {shared_by} layers share the weights of {named} above), so a plan that trains a group "
                       "trains every layer that reuses it")]
    if schedule and plan.is_gradual:
        stages = ", ".join(f"{stage['plan']} from epoch {stage['from_epoch']}" for stage in schedule)
        kept, epochs = meta.get("best_epoch"), len(meta.get("history") or [])
        at_kept = [stage["plan"] for stage in schedule if kept and stage["from_epoch"] <= kept]
        restored = f"; the kept epoch, {kept} of {epochs}, trained under {at_kept[-1]}" if at_kept and kept < epochs else ""
        lines += ["", f"gradual, as trained: {stages} (the last stage is shown above{restored})"]
    elif plan.is_gradual:
        depth = plan.gradual_depth(getattr(network, "num_layers", 0))
        lines += ["", ("gradual: epoch 1 trains the head, then one more layer per epoch unfreezes from the top, "
                      f"down to {depth} layers (the final state is shown above)")]
    if meta.get("probe"):
        probe = meta["probe"]
        scored = f", validation accuracy {probe['valid_accuracy']:.3f}" if probe.get("valid_accuracy") is not None else ""
        lines += ["", (f"LP-FT: the classifier was first fitted alone on frozen sentence vectors ({probe['best_epoch']} "
                      f"epochs{scored}), then fine-tuned with the plan above")]
    return "\n".join(lines)
