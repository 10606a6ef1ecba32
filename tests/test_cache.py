"""The frozen-prefix cache computes what the full model computes (dropout off), and trains correctly."""

from __future__ import annotations

import pytest
import torch

from freezeframe.batching import ExampleSet, token_examples
from freezeframe.cache import CachedTop, build_cache, plan_cache
from freezeframe.freeze import FreezePlan

TEXTS = ["the camera shot lighting", "a villain role", "plot twist ending was very good", "film", "the actor and the cast of this movie"]


def _model(tiny_model_dir, pooling="cls"):
    from freezeframe.encoder import load_pretrained

    torch.manual_seed(0)
    return load_pretrained(str(tiny_model_dir), ["a", "b", "c"], pooling)


def _full_and_cached_logits(network, tokenizer):
    ids, _ = tokenizer.encode(TEXTS, 64)
    data = ExampleSet(token_examples(ids), [0, 1, 2, 0, 1], tokenizer.pad_id)
    plan = plan_cache(network)
    cached = build_cache(network, data, plan, torch.device("cpu"))
    top = CachedTop(network, plan).eval()
    network.eval()
    indices = list(range(len(TEXTS)))
    full_batch, cached_batch = data.collate(indices), cached.collate(indices)
    full_batch.pop("labels"), cached_batch.pop("labels")
    with torch.no_grad():
        return network(**full_batch), top(**cached_batch), plan


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("spec, start", [("head", None), ("last-1", 3), ("last-2", 2), ("encoder", 0)])
def test_cached_logits_equal_the_full_model(tiny_model_dir, spec, start, pooling):
    network, tokenizer = _model(tiny_model_dir, pooling)
    FreezePlan(spec).apply(network)
    full, cached, plan = _full_and_cached_logits(network, tokenizer)
    expected_start = start if not (spec == "head" and pooling == "cls") else None
    assert plan.start == expected_start
    assert torch.allclose(full, cached, atol=1e-4), (full - cached).abs().max()


def test_pooler_only_plan_caches_the_last_layer_output(tiny_model_dir):
    network, tokenizer = _model(tiny_model_dir)
    FreezePlan("classifier.*,bert.pooler.*").apply(network)
    full, cached, plan = _full_and_cached_logits(network, tokenizer)
    assert plan.start == 4
    assert torch.allclose(full, cached, atol=1e-4)


def test_frozen_layer_above_a_trainable_one_caches_only_below(tiny_model_dir):
    network, tokenizer = _model(tiny_model_dir)
    FreezePlan("classifier.*,bert.encoder.layer.1.*").apply(network)
    full, cached, plan = _full_and_cached_logits(network, tokenizer)
    assert plan.start == 1, "cache must stop below the lowest trainable layer"
    assert torch.allclose(full, cached, atol=1e-4)


def test_training_through_the_cache_updates_the_full_model(tiny_model_dir, tiny_data):
    """Layer 1 trains under a frozen layer 2/3; the saved full model reflects the training."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    run = RunConfig(DataConfig(tiny_data["train"]),
                    ModelConfig(str(tiny_model_dir), freeze="classifier.*,bert.encoder.layer.1.*"),
                    TrainConfig(lr=1e-2, epochs=3, patience=3, show_progress=False))
    outcome = train_classifier(run)
    assert outcome.cache["used"] and outcome.cache["start_layer"] == 1
    network, _ = _model(tiny_model_dir)
    trained = dict(outcome.model.plan_parameters())
    for name, original in network.plan_parameters():
        same = torch.equal(original, trained[name])
        if name.startswith(("classifier.", "bert.encoder.layer.1.")):
            assert not same, f"{name} should have trained"
        else:
            assert same, f"{name} should be frozen"


def test_cache_and_no_cache_agree_without_dropout(tiny_model_dir, tiny_data):
    """With every dropout off, one training step through the cache equals one through the full model."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    def run(cache: bool):
        config = RunConfig(DataConfig(tiny_data["train"]), ModelConfig(str(tiny_model_dir), freeze="last-1", dropout=0.0),
                           TrainConfig(lr=1e-3, epochs=2, cache=cache, show_progress=False))
        from freezeframe import encoder

        original = encoder.load_pretrained

        def no_dropout(*args, **kwargs):
            network, tokenizer = original(*args, **kwargs)
            for module in network.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
            return network, tokenizer

        encoder.load_pretrained = no_dropout
        try:
            return train_classifier(config)
        finally:
            encoder.load_pretrained = original

    cached, plain = run(True), run(False)
    assert cached.cache["used"] and not plain.cache["used"]
    for a, b in zip(cached.loop.history, plain.loop.history):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)
        assert a.valid_loss == pytest.approx(b.valid_loss, abs=1e-4)


def test_the_head_plans_pooled_cache_batches_as_the_texts_would(tiny_model_dir, tiny_data):
    """A sentence vector keeps its text's length, so `head` trains on the same batches with or without the
    cache (they were shuffled without regard to length with it): with dropout off, the same training."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    def run(cache: bool):
        return train_classifier(RunConfig(DataConfig(tiny_data["train"], valid_fraction=0.2),
                                          ModelConfig(str(tiny_model_dir), freeze="head", dropout=0.0, encoder_dropout=0.0),
                                          TrainConfig(lr=1e-2, epochs=2, cache=cache, show_progress=False)))

    cached, plain = run(True), run(False)
    assert cached.cache["level"] == "pooled" and not plain.cache["used"]
    for a, b in zip(cached.loop.history, plain.loop.history):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-6)
    classifier = dict(plain.model.plan_parameters())
    for name, param in cached.model.plan_parameters():
        assert torch.allclose(param, classifier[name], atol=1e-6), name


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_gradual_trains_alike_with_and_without_the_cache_it_rebuilds(tiny_model_dir, tiny_data, pooling):
    """With every dropout off, a gradual run, whose cache is rebuilt lower each time a layer unfreezes (the pooled vectors,
    then the input of layer 3, then of layer 2), has the losses of the same run without the cache, epoch by epoch."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    def run(cache: bool):
        return train_classifier(RunConfig(
            DataConfig(tiny_data["train"], valid_fraction=0.2),
            ModelConfig(str(tiny_model_dir), freeze="gradual-2", pooling=pooling, dropout=0.0, encoder_dropout=0.0),
            TrainConfig(lr=1e-3, epochs=4, patience=4, cache=cache, show_progress=False)))

    cached, plain = run(True), run(False)
    assert cached.cache == {"used": True, "level": "rebuilt when a layer unfreezes"} and not plain.cache["used"]
    assert [s["plan"] for s in cached.meta["freeze"]["schedule"]] == ["last-0", "last-1", "last-2"]
    assert len(cached.loop.history) == len(plain.loop.history) == 4
    for a, b in zip(cached.loop.history, plain.loop.history):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-4)
        assert a.valid_loss == pytest.approx(b.valid_loss, abs=1e-4)
