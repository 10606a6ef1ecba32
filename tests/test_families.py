"""Encoders other than the default through --model: other families, and BERT checkpoints as they are shipped."""

from __future__ import annotations

import json
import shutil

import pytest

TEXTS = ["camera lighting shot", "villain hero role", "the plot twist ending"]


def _with_tokenizer(tiny_model_dir, directory):
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(tiny_model_dir / name, directory / name)
    return directory


def test_a_deberta_trains_whole_through_its_own_head(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """DeBERTa has BERT's module names (embeddings, encoder.layer, classifier, dropout) but not its layers (relative
    positions, tuples out): run stage by stage it stopped in the first batch with an internal TypeError. It trains
    whole, through its own head over the first token, and predicts what pipeline() predicts."""
    from transformers import DebertaV2Config, DebertaV2Model, pipeline

    from freezeframe.predict import load_classifier

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    source = tmp_path / "deberta"
    DebertaV2Model(DebertaV2Config(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=160, relative_attention=True,
                                   pos_att_type=["p2c", "c2p"], position_biased_input=False, position_buckets=16,
                                   norm_rel_ebd="layer_norm")).save_pretrained(source)
    _with_tokenizer(tiny_model_dir, source)
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", out,
                           "--epochs", "1", "--ensemble", "1")
    assert code == 0 and "DebertaV2ForSequenceClassification classifies with its own head" in err, err
    assert json.loads((out / "freezeframe.json").read_text())["settings"]["model"]["pooling"] == "cls"
    expected = [max(row["scores"].values()) for row in load_classifier(out).predict(TEXTS)]
    scored = pipeline("text-classification", model=str(out), truncation=True)(TEXTS)
    assert [row["score"] for row in scored] == pytest.approx(expected, abs=1e-5)
