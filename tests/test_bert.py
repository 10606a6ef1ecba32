"""bert.py, the lean BERT that trains without transformers: it must compute what transformers'
classes compute, tokenize as they do, and fall back to them for anything else."""

from __future__ import annotations

import shutil

import pytest
import torch

TEXTS = ["the camera shot", "a plot twist ending was very good", "hero", "lighting and colour of the frame really is bad"]


def _batch(tokenizer, texts=TEXTS):
    ids, _ = tokenizer.encode(texts, 64)
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [tokenizer.pad_id] * (width - len(x)) for x in ids])
    return input_ids, (input_ids != tokenizer.pad_id).long()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_logits_match_transformers(tiny_model_dir, monkeypatch, pooling):
    from freezeframe import bert
    from freezeframe.encoder import load_pretrained

    torch.manual_seed(0)
    lean, tokenizer = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], pooling)
    monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    reference, _ = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], pooling)
    assert isinstance(lean.hf, bert.BertForSequenceClassification)
    assert not isinstance(reference.hf, bert.BertForSequenceClassification)
    assert list(lean.hf.state_dict()) == list(reference.hf.state_dict())
    reference.hf.load_state_dict(lean.hf.state_dict())
    input_ids, mask = _batch(tokenizer)
    lean.eval(), reference.eval()
    with torch.no_grad():
        theirs = reference.hf(input_ids=input_ids, attention_mask=mask).logits
        assert torch.allclose(lean(input_ids, mask), theirs, atol=1e-5)
        assert torch.allclose(reference(input_ids, mask), theirs, atol=1e-5)


def test_gradients_match_transformers_without_dropout(tiny_model_dir, monkeypatch):
    """Training mode takes the explicit attention path (for its dropout): with p = 0 it must give transformers' gradients."""
    from freezeframe.encoder import load_pretrained

    lean, tokenizer = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], "mean", dropout=0.0)
    monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    reference, _ = load_pretrained(str(tiny_model_dir), ["a", "b", "c"], "mean", dropout=0.0)
    reference.hf.load_state_dict(lean.hf.state_dict())
    input_ids, mask = _batch(tokenizer)
    labels = torch.tensor([0, 2, 1, 0])
    for model in (lean, reference):
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model.train()
        torch.nn.functional.cross_entropy(model(input_ids, mask), labels).backward()
    theirs = dict(reference.hf.named_parameters())
    for name, parameter in lean.hf.named_parameters():
        if name.startswith("bert.pooler."):  # unused by mean pooling, in both
            assert parameter.grad is None and theirs[name].grad is None
            continue
        assert torch.allclose(parameter.grad, theirs[name].grad, atol=1e-5), name


def test_tokenizer_matches_transformers(tiny_model_dir):
    from transformers import AutoTokenizer

    from freezeframe.encoder import FastTokenizer, SubwordTokenizer

    texts = TEXTS + ["UPPER Case, punctuation!", "  ", "camera " * 40, "unseenword villains"]
    ours, theirs = FastTokenizer(tiny_model_dir), SubwordTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    assert ours.pad_id == theirs.pad_id
    for max_length in (128, 16):
        assert ours.encode(texts, max_length) == theirs.encode(texts, max_length)
    assert ours.encode(texts, 16)[1] == 1


def test_dropout_keeps_its_rate_and_follows_the_seed():
    from freezeframe.bert import dropout

    x = torch.ones(200_000)
    torch.manual_seed(3)
    first = dropout(x, 0.1, True)
    torch.manual_seed(3)
    assert torch.equal(first, dropout(x, 0.1, True))
    assert not torch.equal(first, dropout(x, 0.1, True))
    kept = first != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)
    assert torch.allclose(first[kept], torch.tensor(1 / 0.9))
    assert torch.equal(dropout(x, 0.1, False), x) and torch.equal(dropout(x, 0.0, True), x)
    y = torch.randn(4, 5, requires_grad=True)
    out = dropout(y, 0.5, True)
    out.sum().backward()
    assert torch.equal(y.grad, (out != 0).float() * 2.0)


def test_other_checkpoints_train_through_transformers(tiny_model_dir, tiny_data, tmp_path):
    """A BERT that bert.py does not run (here an activation it lacks) loads, trains and predicts through transformers."""
    import json

    from freezeframe import bert
    from freezeframe.encoder import load_pretrained, load_trained

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_act": "gelu_fast"}))
    assert bert.unsupported(other) == "activation 'gelu_fast'"
    model, _ = load_pretrained(str(other), ["a", "b"], "mean")
    assert not isinstance(model.hf, bert.BertForSequenceClassification)
    from freezeframe.cli import main

    main(["train", "--train", str(tiny_data["train"]), "--model", str(other), "--out", str(tmp_path / "m"),
          "--pooling", "mean", "--epochs", "1", "--quiet"])
    trained, _ = load_trained(tmp_path / "m")
    assert not isinstance(trained.hf, bert.BertForSequenceClassification) and trained.pooling == "mean"


def test_a_broken_checkpoint_is_one_clear_error(tiny_model_dir, tmp_path):
    from freezeframe.encoder import load_pretrained
    from freezeframe.errors import FreezeframeError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(FreezeframeError, match="cannot load model"):
        load_pretrained(str(broken), ["a", "b"])
    (broken / "tokenizer.json").write_text("{")
    shutil.copyfile(tiny_model_dir / "model.safetensors", broken / "model.safetensors")
    with pytest.raises(FreezeframeError, match="tokenizer.json"):
        load_pretrained(str(broken), ["a", "b"])
