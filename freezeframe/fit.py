"""One training run from files to a saved model directory: the library function behind ``train``."""

from __future__ import annotations

import datetime
import json
import platform
import threading
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from freezeframe import __version__
from freezeframe.batching import ExampleSet, token_examples
from freezeframe.cache import CachedTop, CachePlan, cached_training_data
from freezeframe.checkpoint import TrainingDiverged, TrainingInterrupted, open_checkpoint
from freezeframe.config import ModelConfig, RunConfig
from freezeframe.data import LabelledTexts, check_known_labels
from freezeframe.ensemble import save_ensemble
from freezeframe.errors import FreezeframeError, logger, report, reports_held_back, spoken_list
from freezeframe.evaluate import compute_metrics
from freezeframe.frames import data_name, frame_digest, frame_name, is_frame
from freezeframe.freeze import FreezePlan, FreezeReport
from freezeframe.interrupt import ctrl_c_deferred, stopped_by
from freezeframe.layouts import CONTENTS_KEY
from freezeframe.members import own_dropout, restore_member, same_frozen, train_together
from freezeframe.predict import META_FILE
from freezeframe.probe import Probe, probe_unavailable
from freezeframe.splits import split_data
from freezeframe.storage import atomic_directory, file_sha256, output_claimed
from freezeframe.tables import one_or_many, percent
from freezeframe.train import (
    LoopResult,
    choose_device,
    predict_logits,
    progress_display,
    resolve_precision,
    seed_everything,
    train_loop,
)


@dataclass
class TrainOutcome:
    """What ``train_classifier`` produced."""

    directory: Path | None
    """The saved model directory; ``None`` when ``out`` was not given."""
    labels: list[str]
    """Class names in the model's index order."""
    metrics: dict | None
    """Validation metrics of the kept epoch; ``None`` when nothing was held out."""
    # the rest is left out of the repr, which a notebook shows: the network alone prints thousands of characters
    loop: LoopResult = field(repr=False)
    """The epochs run: ``history``, ``best_epoch``, ``stopped_early`` (the first member's, for an ensemble)."""
    freeze: FreezeReport = field(repr=False)
    """Trainable and frozen parameters per block, as ``inspect`` shows them."""
    cache: dict = field(repr=False)
    """What the frozen-prefix cache did (size, layers cached, or why it was not used)."""
    meta: dict = field(repr=False)
    """Everything written to ``freezeframe.json``."""
    model: torch.nn.Module = field(repr=False)
    """The trained network (an ensemble's first member)."""
    tokenizer: object = field(repr=False)
    members: list[torch.nn.Module] = field(default_factory=list, repr=False)
    """All ensemble members (``model`` is the first); empty for a single model."""

    def classifier(self):
        """The trained model as a :class:`freezeframe.predict.Classifier` (no reload from disk)."""
        from freezeframe.ensemble import ensemble_classifier
        from freezeframe.predict import Classifier

        settings = self.meta["settings"]
        if self.members:
            return ensemble_classifier(self.members, self.tokenizer, self.labels, self.meta)
        return Classifier(self.model, self.tokenizer, self.labels, settings["model"]["max_length"], self.meta,
                          settings["train"]["device"])


def build_model(config: ModelConfig, labels: list[str], train_texts: list[str]):
    """A fresh classifier for ``labels`` and its tokenizer: the pretrained encoder or the baseline."""
    if config.is_baseline:
        from freezeframe.baseline import build_baseline

        return build_baseline(config, labels, train_texts)
    from freezeframe.encoder import load_pretrained

    return load_pretrained(config.model, labels, config.pooling, config.dropout, config.encoder_dropout)


def encode_examples(tokenizer, data: LabelledTexts, labels: list[str], config: ModelConfig) -> ExampleSet:
    ids, truncated = tokenizer.encode(data.texts, config.max_length)
    if truncated:
        report(f"{data.source}: {truncated} of {len(data)} texts {one_or_many(truncated, 'is', 'are')} longer than "
               f"{config.max_length} tokens and {one_or_many(truncated, 'was', 'were')} truncated")
    index = {label: i for i, label in enumerate(labels)}
    pad_to = config.max_length if config.padding == "max_length" else None
    return ExampleSet(token_examples(ids), [index[y] for y in data.labels], tokenizer.pad_id, pad_to)


def train_classifier(
    run: RunConfig, out: Path | None = None, overwrite: bool = False,
    train_data: LabelledTexts | None = None, valid_data: LabelledTexts | None = None,
    resume: bool = False, keep_checkpoint: bool = False,
) -> TrainOutcome:
    """Train a classifier under a freeze plan and save it (when ``out`` is given).

    Args:
        run: data, model and training settings.
        out: model directory to write; it appears complete or not at all.
        overwrite: replace an existing ``out``.
        train_data, valid_data: already-loaded data (used by ``compare``); both are read from
            ``run.data`` when ``train_data`` is absent. ``valid_data`` ``None`` holds nothing out:
            the whole schedule runs and the last epoch is kept.
        resume: continue from the checkpoint in ``out/checkpoint`` (settings and data must match; needs ``out``).
        keep_checkpoint: keep ``out/checkpoint`` after success (it is removed by default; needs ``out``).

    Returns:
        The outcome, including validation metrics of the kept (best) epoch when there was validation data.

    Seeding sets the global random generators of Python, numpy and torch from ``run.train.seed`` (that is
    what makes a run repeatable), so a caller's own random draws after this call follow that seed too.
    """
    if not isinstance(run, RunConfig):
        raise TypeError(f"train_classifier takes a RunConfig, e.g. RunConfig(DataConfig('train.csv'), ModelConfig(), "
                        f"TrainConfig()), got {type(run).__name__}")
    for name, data in (("train_data", train_data), ("valid_data", valid_data)):
        if data is not None and not isinstance(data, LabelledTexts):
            raise TypeError(f"{name} takes LabelledTexts (freezeframe.data.load_labelled(path) reads a file), got "
                            f"{type(data).__name__}; or leave it out and give the file or DataFrame to DataConfig")
    if valid_data is not None and train_data is None:
        raise ValueError("valid_data is used only with train_data; give the validation file or DataFrame to "
                         "DataConfig(valid=...)")
    if out is None and (resume or keep_checkpoint):  # the checkpoint lives in out/checkpoint: without out there is none
        named = spoken_list([name for name, given in (("resume", resume), ("keep_checkpoint", keep_checkpoint)) if given])
        verb = "need" if resume and keep_checkpoint else "needs"
        raise ValueError(f"{named} {verb} out, the model directory whose checkpoint/ is continued or kept; pass out=...")
    if out is None:
        return _train(run, out, overwrite, train_data, valid_data, resume, keep_checkpoint)
    with output_claimed(Path(out)):  # another process training into the same --out is refused
        return _train(run, out, overwrite, train_data, valid_data, resume, keep_checkpoint)


def _train(run: RunConfig, out: Path | None, overwrite: bool, train_data: LabelledTexts | None,
           valid_data: LabelledTexts | None, resume: bool, keep_checkpoint: bool) -> TrainOutcome:
    members = run.train.ensemble
    checkpoint = open_checkpoint(Path(out), run, overwrite, resume, keep_checkpoint, members) if out is not None else None
    if train_data is None:
        train_data, valid_data = split_data(run)
    labels = train_data.label_names
    if checkpoint is not None:
        checkpoint.record_classes(labels)
    if valid_data is not None:
        check_known_labels(valid_data, labels)
    seed_everything(run.train.seed)
    model, tokenizer = build_model(run.model, labels, train_data.texts)
    if not run.model.is_baseline:
        from freezeframe.source import check_fits

        check_fits(model, tokenizer, run.model.max_length, run.model.model)
    plan = FreezePlan(run.model.plan)
    why = probe_unavailable(run, plan, model) if run.train.probe else None
    if why:
        raise FreezeframeError(f"--probe: {why}; drop --probe")
    if getattr(model, "pooling", run.model.pooling) != run.model.pooling:  # a family whose own head reads [CLS]
        run = replace(run, model=replace(run.model, pooling=model.pooling))
    freeze_report = plan.apply(model).add_rates(model, run.train.lr, run.train.lr_decay, run.train.head_lr)
    plan.warn_untrained_frozen(model)
    depth = plan.gradual_depth(model.num_layers) if plan.is_gradual else 0
    if run.train.epochs <= depth:
        report(f"--freeze {plan.spec}: {run.train.epochs} epoch(s) unfreeze only {run.train.epochs - 1} of its {depth} "
               f"layers (epoch 1 trains the head, each later epoch one more layer); --epochs {depth + 1} or more reaches "
               "them all")
    train_set = encode_examples(tokenizer, train_data, labels, run.model)
    valid_set = encode_examples(tokenizer, valid_data, labels, run.model) if valid_data is not None else None
    device = choose_device(run.train.device)
    trains_encoder = not run.model.is_baseline and any(r.trainable and r.block.startswith(("layer", "embeddings"))
                                                       for r in freeze_report.rows)
    # resolved once, so that every member computes alike and freezeframe.json records what ran
    train_config = replace(run.train, precision=resolve_precision(run.train.precision, device, trains_encoder))
    cache_info: dict = {"used": False, "reason": "--no-cache"}
    budget = int(run.train.cache_budget_mb * 2**20) if run.train.cache_budget_mb is not None else None
    trained_module, loop_train, loop_valid = model, train_set, valid_set
    if plan.is_gradual and run.train.cache:
        cache_info = {"used": True, "level": "rebuilt when a layer unfreezes"}
    elif run.train.cache:
        trained_module, loop_train, loop_valid, cache_info = cached_training_data(
            model, train_set, valid_set, device, run.train.cache_dtype, budget
        )

    stage_caches: list[dict] = []
    """What each stage's cache pass of a gradual run did (every member's stages alike)."""

    def schedule_for(network):
        if not plan.is_gradual:
            return None
        return _gradual_schedule(network, plan, train_set, valid_set, run, device, budget, stage_caches)

    models, modules, datasets = [model], [trained_module], [(loop_train, loop_valid)]
    member_probes = [Probe(run, trained_module, loop_train, loop_valid, device)]
    use_cache = cache_info["used"] and not plan.is_gradual
    for k in range(1, members):  # every member sees the same split and the same cached frozen prefix; only its seed differs
        seed_everything(run.train.seed + k)
        with reports_held_back():  # the first member's load said it all
            member, _ = build_model(run.model, labels, train_data.texts)
        plan.apply(member, quiet=True)  # the same plan as the first member's, reported once
        if same_frozen(model, member):  # the first member's cached features and probe vectors are this member's too
            module = CachedTop(member, CachePlan(cache_info["start_layer"])) if use_cache else member
            sets, probe = datasets[0], member_probes[0]
        else:  # a frozen weight the checkpoint lacked starts random, as this member's seed drew it: its own cache pass
            module, member_train, member_valid = member, train_set, valid_set
            if use_cache:
                module, member_train, member_valid, _ = cached_training_data(
                    member, train_set, valid_set, device, run.train.cache_dtype, budget)
            sets, probe = (member_train, member_valid), Probe(run, module, member_train, member_valid, device)
        models.append(member)
        modules.append(module)
        datasets.append(sets)
        member_probes.append(probe)
    together = (members > 1 and device.type == "cpu" and torch.get_num_threads() > 1 and not plan.is_gradual
                and all(own_dropout(m) for m in models))

    finished: list[int] = []
    finishing = threading.Lock()

    def train_member(k: int, stop: threading.Event | None, display=None) -> tuple[LoopResult, dict | None]:
        done = checkpoint.finished(k) if checkpoint is not None else None
        if done is not None:  # finished before an interruption
            with finishing:
                finished.append(k)
            return restore_member(models[k], done), done["probe"]
        view = checkpoint.member(k) if checkpoint is not None else None
        if view is not None and view.saved is not None:  # the probe ran before the interruption
            record = view.saved.get("probe")
        else:
            record = member_probes[k].fit(models[k], run.train.seed + k)
        if view is not None:
            view.extra["probe"] = record
        name = f"member {k + 1}: " if together else ""
        loop = train_loop(modules[k], *datasets[k], replace(train_config, seed=run.train.seed + k), device, view,
                          schedule_for(models[k]), stop=stop, name=name, display=display)
        with finishing:
            finished.append(k)
            last = len(finished) == members  # the model itself is written next
        if checkpoint is not None and not last:  # its weights ride in the checkpoint until the model is written
            trainable = {n: p.detach().clone() for n, p in models[k].named_parameters() if p.requires_grad}
            checkpoint.finish(k, {"trainable": trainable, "loop": loop.to_dict(), "probe": record})
        return loop, record

    started = time.perf_counter()
    if checkpoint is not None:
        checkpoint.start_clock()
    try:
        if together:
            seeds = ", ".join(str(run.train.seed + k) for k in range(members))
            logger.info("%d members train at once, one thread each (seeds %s), %s", members, seeds, train_config.precision)
            with progress_display(train_config.show_progress) as display:  # one bar per member
                outcomes = train_together(partial(train_member, display=display), members)
        else:
            outcomes = []
            for k in range(members):
                if members > 1:
                    logger.info("member %d of %d (seed %d), %s", k + 1, members, run.train.seed + k, train_config.precision)
                outcomes.append(train_member(k, None))
    except KeyboardInterrupt:
        if checkpoint is None:
            raise
        raise checkpoint.interrupted(train_config.epochs) from None
    except TrainingDiverged:
        if checkpoint is not None:  # resuming its saved epochs would only diverge again
            checkpoint.discard()
        raise
    # training is over: a Ctrl-C or SIGTERM from here on waits until the model is written whole
    with ctrl_c_deferred(deliver=False) as ctrl_c:
        # a resumed run's time includes its earlier sessions', as each member's does
        seconds = time.perf_counter() - started + (checkpoint.seconds_before if checkpoint is not None else 0.0)
        loops, probes = [o[0] for o in outcomes], [o[1] for o in outcomes]
        model, loop = models[0], loops[0]
        stages = plan.gradual_stages(model, len(loop.history)) if plan.is_gradual else []
        unused = [info for info in stage_caches if not info["used"]]
        if unused:  # a stage over --cache-budget, or a family without BERT's stages, trained without the cache
            cache_info = unused[0] if len(unused) == len(stage_caches) else {
                **cache_info, "not_used": {key: value for key, value in unused[0].items() if key != "used"}}
        metrics = None
        if valid_set is not None:
            # members trained through the cache are scored through it too (same logits as the full model,
            # dropout being off in eval mode, at a fraction of the cost); small batches keep padding low
            views = [(member, valid_set) if module is member else (module, data[1])
                     for member, module, data in zip(models, modules, datasets)]
            # in the precision of prediction (float32 on the CPU), so that `evaluate` on this data agrees
            probabilities = torch.stack([predict_logits(m, data, 16, device).softmax(-1) for m, data in views]).mean(0)
            metrics = compute_metrics(valid_set.labels, probabilities.argmax(-1).tolist(), labels)
        meta = {
            "freezeframe_version": __version__,
            "kind": "ensemble" if members > 1 else getattr(model, "kind", "transformer"),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "labels": labels,
            "settings": run.to_dict(),
            "freeze": {**freeze_report.to_dict(), **({"schedule": stages} if stages else {})},
            "cache": cache_info,
            "precision": train_config.precision,
            **({"probe": probes[0]} if probes[0] else {}),
            # the checkpoint's fingerprint has read the data files' digests already: not read again
            "data": _data_record(run, train_data, valid_data, checkpoint.fingerprint["data"] if checkpoint is not None else None),
            "versions": _versions(),
            **loop.to_dict(),
            "validation_metrics": metrics,
        }
        if members > 1:
            meta["members"] = members
            meta["member_runs"] = [dict(seed=run.train.seed + k, **({"probe": p} if p else {}), **lp.to_dict())
                                   for k, (lp, p) in enumerate(zip(loops, probes))]
            meta["history_of"] = "member 1"  # history and best_epoch above are the first member's; each member's are in member_runs
            meta["train_seconds"] = round(seconds, 3)  # the members' wall-clock time, which they may share
        if out is not None:
            # open_checkpoint has checked --out; what is there now is this run's checkpoint or may be replaced
            with atomic_directory(Path(out), overwrite=True) as staging:
                if members > 1:
                    save_ensemble(models, tokenizer, meta, staging)
                else:
                    model.save(staging)
                    tokenizer.save(staging)
                if not run.model.is_baseline:  # one tokenizer at the top, for a single model or an ensemble
                    from freezeframe.tokenizer import record_max_length

                    record_max_length(staging, run.model.max_length)
                # what --overwrite may replace later (the tokenizer's files vary with the tokenizer)
                meta[CONTENTS_KEY] = sorted([META_FILE, *(p.name for p in staging.iterdir())])
                (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
                if keep_checkpoint:
                    checkpoint.move_into(staging)
    if ctrl_c and out is None:  # nothing to finish: stop now (compare's runs), as the signal would have
        raise KeyboardInterrupt
    if ctrl_c:
        raise TrainingInterrupted(f"{stopped_by()} as training ended; the model was finished first and is saved in {out}")
    return TrainOutcome(Path(out) if out is not None else None, labels, metrics, loop, freeze_report, cache_info, meta,
                        model, tokenizer, models if members > 1 else [])


def _gradual_schedule(model, plan: FreezePlan, train_set: ExampleSet, valid_set: ExampleSet | None, run: RunConfig,
                     device: torch.device, budget: int | None, caches: list[dict]):
    """Per-epoch hook for gradual unfreezing: apply the epoch's stage; rebuild the cache when it shrinks, and add
    what the cache pass did to ``caches``."""
    current: dict = {}

    def schedule(epoch: int):
        stage = plan.stage(epoch, model.num_layers)
        if current.get("spec") == stage.spec:
            return None
        current["spec"] = stage.spec
        stage.apply(model)
        if not run.train.cache:
            return model, train_set, valid_set
        module, cached_train, cached_valid, info = cached_training_data(
            model, train_set, valid_set, device, run.train.cache_dtype, budget
        )
        caches.append(info)
        return module, cached_train, cached_valid

    return schedule


def _data_record(run: RunConfig, train: LabelledTexts, valid: LabelledTexts | None, digests: dict | None = None) -> dict:
    """The ``data`` record of freezeframe.json: the digest of each data file or DataFrame, the row counts and where
    the validation rows came from. ``digests`` (``{"train": ..., "valid": ...}``, a run fingerprint's ``data``) are
    taken as they are, instead of reading the data again; a role it has no digest for is read."""
    given = {"train": run.data.train, "valid": run.data.valid}
    known = digests or {}

    def digest(role: str, data) -> str:
        return known.get(role) or (frame_digest(data) if is_frame(data) else file_sha256(data))

    if valid is None:
        source = "none: every row trained, for the whole schedule"
    elif run.data.valid is not None:
        source = data_name(run.data.valid)
    else:
        source = f"stratified {percent(run.data.valid_fraction)} of train, seed {run.train.seed}"
    frames = {role: {"name": frame_name(frame), "digest": digest(role, frame)}
              for role, frame in given.items() if is_frame(frame)}
    return {
        "files": {str(p): digest(role, p) for role, p in given.items()
                  if p is not None and not is_frame(p) and Path(p).is_file()},
        **({"dataframes": frames} if frames else {}),
        "train_rows": len(train),
        "valid_rows": len(valid) if valid is not None else 0,
        "valid_source": source,
    }


def _versions() -> dict:
    from importlib.metadata import version

    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "transformers": version("transformers"), "tokenizers": version("tokenizers"),
    }
