"""Freeze plans: only the chosen parameters receive gradients and change; the counts are right."""

from __future__ import annotations

import pytest
import torch

from freezeframe.errors import FreezeframeError
from freezeframe.freeze import FreezePlan, block_of, optimizer_groups


@pytest.fixture
def model(tiny_model_dir):
    from freezeframe.encoder import load_pretrained

    torch.manual_seed(0)
    network, tokenizer = load_pretrained(str(tiny_model_dir), ["a", "b", "c"])
    return network, tokenizer


def _train_one_step(network, tokenizer):
    ids, _ = tokenizer.encode(["the camera shot", "a villain role was good"], 32)
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids])
    mask = (input_ids != 0).long()
    optimizer = torch.optim.AdamW(optimizer_groups(network, 1e-2, 0.01), lr=1e-2)
    network.train()
    loss = torch.nn.functional.cross_entropy(network(input_ids, mask), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize(
    "plan, trained_blocks",
    [
        ("head", {"classifier"}),
        ("last-1", {"classifier", "pooler", "layer 3"}),
        ("last-2", {"classifier", "pooler", "layer 3", "layer 2"}),
        ("encoder", {"classifier", "pooler", "layer 0", "layer 1", "layer 2", "layer 3"}),
        ("full", {"classifier", "pooler", "layer 0", "layer 1", "layer 2", "layer 3", "embeddings"}),
        ("classifier.*,bert.encoder.layer.1.*", {"classifier", "layer 1"}),
    ],
)
def test_only_planned_parameters_get_gradients_and_change(model, plan, trained_blocks):
    network, tokenizer = model
    FreezePlan(plan).apply(network)
    before = {n: p.detach().clone() for n, p in network.plan_parameters()}
    _train_one_step(network, tokenizer)
    for name, param in network.plan_parameters():
        if block_of(name) in trained_blocks:
            assert param.requires_grad and param.grad is not None, name
        else:
            assert not param.requires_grad and param.grad is None, name
            assert torch.equal(param, before[name]), f"frozen {name} changed"
    changed = {block_of(n) for n, p in network.plan_parameters() if not torch.equal(p, before[n])}
    assert changed == trained_blocks


def test_report_counts_every_parameter(model):
    network, _ = model
    report = FreezePlan("last-1").apply(network)
    total = sum(p.numel() for p in network.parameters())
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    assert (report.total, report.trainable) == (total, trainable)
    blocks = [r.block for r in report.rows]
    assert blocks == ["embeddings", "layer 0", "layer 1", "layer 2", "layer 3", "pooler", "classifier"]
    assert "trainable" in report.format_table()


def test_bad_plans_are_refused_with_a_message(model):
    network, _ = model
    with pytest.raises(FreezeframeError, match="only 4 encoder layers"):
        FreezePlan("last-9").apply(network)
    with pytest.raises(FreezeframeError, match="matches no parameter"):
        FreezePlan("nothing.like.this*").apply(network)


def test_a_plan_training_only_a_pooler_that_mean_pooling_never_reads_is_refused(tiny_model_dir):
    """Training stopped on an internal error (the loss had no gradient), after the cache pass."""
    from freezeframe.encoder import load_pretrained

    network, _ = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], pooling="mean")
    with pytest.raises(FreezeframeError, match=r"leaves nothing to train \(mean pooling never reads the \[CLS\] pooler"):
        FreezePlan("bert.pooler.*").apply(network)
    assert FreezePlan("bert.pooler.*,classifier.*").apply(network).trainable > 0


def test_optimizer_groups_discriminative_rates(model):
    network, _ = model
    FreezePlan("full").apply(network)
    groups = optimizer_groups(network, 1e-3, 0.01, lr_decay=0.5, head_lr=1e-2)
    rate = {name: g["lr"] for g in groups for name in g["names"]}
    assert rate["classifier.weight"] == pytest.approx(1e-2)
    assert rate["bert.encoder.layer.3.output.dense.weight"] == pytest.approx(1e-3)
    assert rate["bert.encoder.layer.2.output.dense.weight"] == pytest.approx(5e-4)
    assert rate["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-3 * 0.5**4)
    no_decay = {name for g in groups if g["weight_decay"] == 0 for name in g["names"]}
    assert "bert.encoder.layer.3.output.LayerNorm.weight" in no_decay
    assert "classifier.bias" in no_decay and "classifier.weight" not in no_decay


def test_max_length_padding_reproduces_the_seed_shapes(tiny_model_dir, tiny_data):
    from freezeframe.config import ModelConfig
    from freezeframe.data import load_labelled
    from freezeframe.encoder import load_pretrained
    from freezeframe.fit import encode_examples

    data = load_labelled(tiny_data["train"])
    _, tokenizer = load_pretrained(str(tiny_model_dir), data.label_names)
    examples = encode_examples(tokenizer, data, data.label_names, ModelConfig(padding="max_length"))
    batch = next(examples.training_batches(16, __import__("random").Random(0)))
    assert batch["input_ids"].shape == (16, 128) and batch["attention_mask"].shape == (16, 128)
    assert batch["labels"].shape == (16,)
    padding = batch["input_ids"] == tokenizer.pad_id
    assert torch.all(batch["attention_mask"][padding] == 0) and torch.all(batch["attention_mask"][~padding] == 1)
    dynamic = encode_examples(tokenizer, data, data.label_names, ModelConfig())
    assert next(dynamic.training_batches(16, __import__("random").Random(0)))["input_ids"].shape[1] < 128


@pytest.mark.parametrize("plan", ["full", "*"])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_what_a_plan_counts_as_trained_is_what_changed(tiny_model_dir, tiny_data, plan, pooling):
    """`full` under mean pooling counted the [CLS] pooler as trained (freezeframe.json, inspect, the optimizer's
    groups), though mean pooling never reads it and it left training bit-identical to the pretrained one."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.encoder import load_pretrained
    from freezeframe.fit import train_classifier

    run = RunConfig(DataConfig(tiny_data["train"]), ModelConfig(str(tiny_model_dir), freeze=plan, pooling=pooling),
                    TrainConfig(lr=1e-2, epochs=1, show_progress=False))
    outcome = train_classifier(run)
    pretrained = dict(load_pretrained(str(tiny_model_dir), outcome.labels, pooling)[0].plan_parameters())
    changed = {n: p.numel() for n, p in outcome.model.plan_parameters() if not torch.equal(p, pretrained[n])}
    assert changed.keys() >= {"classifier.weight", "bert.embeddings.word_embeddings.weight"}
    assert ("bert.pooler.dense.weight" in changed) == (pooling == "cls")
    assert outcome.meta["freeze"]["trainable_parameters"] == sum(changed.values())
    groups = optimizer_groups(outcome.model, 1e-3, 0.01)
    assert {n for g in groups for n in g["names"]} == changed.keys()


def test_patterns_naming_the_pooler_of_a_mean_pooled_head_say_it_stays_frozen(tiny_model_dir, reports):
    from freezeframe.encoder import load_pretrained

    network, _ = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], pooling="mean")
    report = FreezePlan("bert.pooler.*,classifier.*").apply(network)
    assert report.trainable == sum(p.numel() for n, p in network.plan_parameters() if n.startswith("classifier."))
    assert not any(p.requires_grad for n, p in network.plan_parameters() if block_of(n) == "pooler")
    said = "--freeze bert.pooler.*,classifier.*: mean pooling never reads the [CLS] pooler, so it stays frozen; use --pooling cls to train it"
    assert reports[0] == said  # and, next, that it trains what --freeze head does
    reports.clear()
    FreezePlan("full").apply(network)  # the README says what full leaves out
    assert reports == []


def test_patterns_that_train_only_the_head_say_head_has_the_probes_defaults(model, reports):
    """`--freeze classifier.*` trained the head alone at the encoder plans' lr 2e-4 for 2 epochs, without a word that
    `--freeze head` (the same parameters) defaults to lr 1e-2 for 60 epochs."""
    network, _ = model
    assert FreezePlan("classifier.*").apply(network).trainable == FreezePlan("head").apply(network).trainable
    said = ("--freeze classifier.* trains the classifier alone, as --freeze head does, but only head takes the linear "
            "probe's defaults (lr 0.01, 60 epochs, early stopping on 15% held out); use --freeze head, or set --lr and --epochs")
    assert reports == [said]
    reports.clear()
    FreezePlan("classifier.*,bert.encoder.layer.3.*").apply(network)
    FreezePlan("classifier.*").apply(network, quiet=True)  # ensemble members after the first
    assert reports == []
