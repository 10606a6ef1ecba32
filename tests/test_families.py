"""Encoders other than the default through --model: other families, and BERT checkpoints as they are shipped."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

TEXTS = ["camera lighting shot", "villain hero role", "the plot twist ending"]


def _with_tokenizer(tiny_model_dir, directory):
    directory.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(tiny_model_dir / name, directory / name)
    return directory


def _deberta(tiny_model_dir, directory):
    """A tiny DeBERTa-v2 with relative positions (DeBERTa-v3's layout) and the tiny WordPiece tokenizer."""
    from transformers import DebertaV2Config, DebertaV2Model

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    DebertaV2Model(DebertaV2Config(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=160, relative_attention=True,
                                   pos_att_type=["p2c", "c2p"], position_biased_input=False, position_buckets=16,
                                   norm_rel_ebd="layer_norm")).save_pretrained(directory)
    return _with_tokenizer(tiny_model_dir, directory)


def test_a_deberta_trains_whole_through_its_own_head(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """DeBERTa has BERT's module names (embeddings, encoder.layer, classifier, dropout) but not its layers (relative
    positions, tuples out): run stage by stage it stopped in the first batch with an internal TypeError. It trains
    whole, through its own head over the first token, and predicts what pipeline() predicts."""
    from transformers import pipeline

    from freezeframe.predict import load_classifier

    source = _deberta(tiny_model_dir, tmp_path / "deberta")
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", out,
                           "--epochs", "1", "--ensemble", "1")
    assert code == 0 and "DebertaV2ForSequenceClassification classifies with its own head" in err, err
    assert json.loads((out / "freezeframe.json").read_text())["settings"]["model"]["pooling"] == "cls"
    expected = [max(row["scores"].values()) for row in load_classifier(out).predict(TEXTS)]
    scored = pipeline("text-classification", model=str(out), truncation=True)(TEXTS)
    assert [row["score"] for row in scored] == pytest.approx(expected, abs=1e-5)


def _cached(hub, repo_id, files: dict) -> None:
    """Put ``files`` (name -> source path) in a local Hugging Face cache as a download lays them out."""
    snapshot = hub / f"models--{repo_id.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name, path in files.items():
        shutil.copyfile(path, snapshot / name)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)


def _tinybert_as_shipped(tiny_model_dir, directory):
    """The tiny model as huawei-noah ships TinyBERT: a config.json without ``model_type`` (with TinyBERT's own extra
    keys), a pretraining checkpoint in pytorch_model.bin (``bert.*``, ``cls.*``, ``fit_denses.*``), a bare vocab.txt."""
    import torch
    from safetensors.torch import load_file

    directory.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config = {key: value for key, value in config.items() if key not in ("model_type", "architectures", "transformers_version")}
    (directory / "config.json").write_text(json.dumps({**config, "cell": {}, "emb_size": config["hidden_size"],
                                                       "pre_trained": "", "structure": []}))
    weights = {f"bert.{key}": value for key, value in load_file(str(tiny_model_dir / "model.safetensors")).items()}
    weights |= {"cls.predictions.bias": torch.zeros(config["vocab_size"]), "fit_denses.0.weight": torch.zeros(8, 32)}
    torch.save(weights, directory / "pytorch_model.bin")
    shutil.copyfile(tiny_model_dir / "vocab.txt", directory / "vocab.txt")
    return directory


@pytest.mark.parametrize("backend", ["lean", "transformers"])
def test_tinybert_as_shipped_trains_from_the_cache(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch, backend):
    """TinyBERT's config.json names no model type, which transformers refuses ("Should have a `model_type` key"), and
    the cached hub id was then refused as "not in the Hugging Face cache". Its BERT keys make it BERT's: it trains on
    either backend, and the directory it writes loads in pipeline()."""
    import huggingface_hub.constants
    from transformers import pipeline

    from freezeframe.predict import load_classifier

    source = _tinybert_as_shipped(tiny_model_dir, tmp_path / "tinybert")
    _cached(tmp_path / "hub", "huawei-noah/TinyBERT_General_4L_312D", {n: source / n for n in ("config.json", "vocab.txt", "pytorch_model.bin")})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    if backend == "transformers":
        monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "huawei-noah/TinyBERT_General_4L_312D",
                           "--out", out, "--freeze", "last-2", "--epochs", "1", "--ensemble", "1")
    assert code == 0 and "mean pooling needs" not in err, err
    assert json.loads((out / "config.json").read_text())["model_type"] == "freezeframe_bert"
    expected = [max(row["scores"].values()) for row in load_classifier(out).predict(TEXTS)]
    scored = pipeline("text-classification", model=str(out), trust_remote_code=True, truncation=True)(TEXTS)
    assert [row["score"] for row in scored] == pytest.approx(expected, abs=1e-5)


def test_a_cached_hub_id_that_fails_to_load_says_why(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    """A hub id found in the cache whose files are broken is named as such, not as missing from the cache."""
    import huggingface_hub.constants

    broken = tmp_path / "pytorch_model.bin"
    broken.write_bytes(b"not a checkpoint")
    _cached(tmp_path / "hub", "org/broken", {"config.json": tiny_model_dir / "config.json",
                                             "vocab.txt": tiny_model_dir / "vocab.txt", "pytorch_model.bin": broken})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "org/broken", "--out", tmp_path / "m")
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot load model 'org/broken': cannot read pytorch_model.bin" in err and "not in the Hugging Face cache" not in err
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "org/absent", "--out", tmp_path / "m")
    assert code == 2 and "not a local directory and not in the Hugging Face cache" in err, err


@pytest.mark.parametrize(("content", "message"), [
    ("[1, 2]", "config.json is damaged (not a JSON object)"),
    ('"bert"', "config.json is damaged (not a JSON object)"),
    ({"num_hidden_layers": "4"}, "config.json is damaged: num_hidden_layers is '4', not a whole number"),
    ({"hidden_size": 32.0}, "config.json is damaged: hidden_size is 32.0, not a whole number"),
])
def test_a_damaged_config_is_one_line(run_cli, tiny_model_dir, tiny_data, tmp_path, content, message):
    """A config.json that is JSON but not an object, or sizes the network with something other than whole numbers, was
    an internal error (AttributeError, TypeError) in train and inspect; as a cached hub id's too."""
    import huggingface_hub.constants

    source = tmp_path / "damaged"
    shutil.copytree(tiny_model_dir, source)
    if isinstance(content, dict):
        content = json.dumps({**json.loads((source / "config.json").read_text()), **content})
    (source / "config.json").write_text(content)
    for command in (["train", "--train", tiny_data["train"], "--out", tmp_path / "m"], ["inspect"]):
        code, _, err = run_cli(*command, "--model", source)
        assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "m").exists()
    _cached(tmp_path / "hub", "org/damaged", {"config.json": source / "config.json", "vocab.txt": source / "vocab.txt"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        code, _, err = run_cli("inspect", "--model", "org/damaged")
    assert code == 2 and message in err, err


def test_what_the_layers_share_is_not_the_head(tiny_model_dir, tmp_path):
    """MPNet's relative attention bias (DeBERTa's LayerNorm of its relative positions likewise) lies in the encoder
    outside its layers; named by its first part ("mpnet"), it counted as the head, so `--freeze head` trained a part
    of the encoder. It is the block `encoder`: frozen by `head` (and gradual's first epoch), trained by `last-N` at
    the top layer's rate."""
    from transformers import MPNetConfig, MPNetModel

    from freezeframe.encoder import load_pretrained
    from freezeframe.freeze import FreezePlan, FreezeReport, optimizer_groups

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    source = tmp_path / "mpnet"
    MPNetModel(MPNetConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=160)).save_pretrained(source)
    model, _ = load_pretrained(str(_with_tokenizer(tiny_model_dir, source)), ["a", "b", "c"], "cls")
    shared = "mpnet.encoder.relative_attention_bias.weight"
    assert {n.split(".")[0] for n in FreezePlan("head").trainable_names(model)} == {"classifier"}
    assert shared not in FreezePlan("gradual").stage(1, 2).trainable_names(model)
    assert shared in FreezePlan("last-1").trainable_names(model) and shared not in FreezePlan("last-0").trainable_names(model)
    FreezePlan("last-1").apply(model, quiet=True)
    blocks = {row.block: row.state for row in FreezeReport.of(model, "last-1").rows}
    assert blocks["encoder"] == "trainable" and blocks["layer 0"] == "frozen"
    rates = {name: group["lr"] for group in optimizer_groups(model, 1e-3, 0.01, lr_decay=0.5, head_lr=1e-2)
             for name in group["names"]}
    assert rates[shared] == rates["mpnet.encoder.layer.1.attention.attn.q.weight"] == 1e-3


def test_a_pooler_of_the_head_trains_with_the_head(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """DeBERTa's classifier reads its own pooler (``pooler.dense``, beside the base model, new and random), where BERT's
    ``bert.pooler`` is the pretrained encoder's: `--freeze head` left it frozen at random, with a warning whose advice
    (--pooling mean) a DeBERTa cannot take. It is the head's, and trains with it."""
    source = _deberta(tiny_model_dir, tmp_path / "deberta")
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "m",
                           "--freeze", "head", "--epochs", "1")
    assert code == 0 and "random initialisation" not in err, err
    blocks = {b["block"]: b for b in json.loads((tmp_path / "m" / "freezeframe.json").read_text())["freeze"]["blocks"]}
    assert blocks["pooler"]["trainable"] == blocks["pooler"]["parameters"] > 0 and blocks["layer 1"]["trainable"] == 0
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "g",
                           "--freeze", "classifier.*", "--epochs", "1")
    assert code == 0 and "leaves the [CLS] pooler frozen at its random initialisation" in err and "add pooler.*" in err, err


def test_a_file_given_as_the_encoder_is_named_as_a_file(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """`--model DIR/config.json` (or the weights) was 'not a Hugging Face model directory (no config.json)'."""
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir / "config.json",
                           "--out", tmp_path / "m")
    assert code == 2 and err.strip().endswith(f"is a file; --model takes a model directory; pass its directory, {tiny_model_dir}"), err
    code, _, err = run_cli("inspect", "--model", tiny_data["train"])
    assert code == 2 and err.strip().endswith("train.csv is a file; --model takes a model directory"), err


def test_a_model_that_classifies_no_text_is_refused_by_name(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """An image model's directory was refused in transformers' words ("Unrecognized configuration class <class
    'transformers.models.vit.configuration_vit.ViTConfig'> for this kind of AutoModel")."""
    source = _with_tokenizer(tiny_model_dir, tmp_path / "vit")
    (source / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
                                                    "num_attention_heads": 2, "intermediate_size": 64}))
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "m")
    assert code == 2 and err.count("\n") == 1 and "is a 'vit' model, which transformers has no text classifier for" in err, err
    assert not (tmp_path / "m").exists()


def test_a_hub_id_not_in_the_cache_never_reaches_transformers(run_cli, tiny_data, tmp_path, monkeypatch):
    """freezeframe only sets HF_HUB_OFFLINE=1 when the environment has no value: with HF_HUB_OFFLINE=0 an id missing
    from the cache went to transformers, which retried the hub for half a minute (and with a network, downloads).
    It is refused before transformers is imported."""
    import freezeframe.encoder

    def refuse():
        raise AssertionError("an id missing from the cache was handed to transformers")

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(freezeframe.encoder, "import_transformers", refuse)
    for command in (["inspect"], ["train", "--train", tiny_data["train"], "--out", tmp_path / "m"],
                    ["compare", "--train", tiny_data["train"], "--configs", "head", "--out", tmp_path / "r"]):
        code, _, err = run_cli(*command, "--model", "org/absent")
        assert code == 2 and err.count("\n") == 1, err
        assert "'org/absent': it is not a local directory and not in the Hugging Face cache (freezeframe never downloads)" in err


def test_compare_refuses_a_trained_ensemble_or_an_export_as_train_does(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """compare's check before the first run read their depth as 0: `--configs last-1` said the model "has no encoder
    layers; use full or head", and `--configs head` started the runs before train's refusal stopped the first."""
    ensemble = _with_tokenizer(tiny_model_dir, tmp_path / "ensemble")
    (ensemble / "config.json").write_text(json.dumps({"model_type": "freezeframe_ensemble", "members": 2, "member": {}}))
    export = _with_tokenizer(tiny_model_dir, tmp_path / "export")
    shutil.copyfile(tiny_model_dir / "config.json", export / "config.json")
    (export / "export.json").write_text(json.dumps({"directory": "runs/m"}))
    (export / "model.onnx").write_bytes(b"")
    for model, refusal in ((ensemble, "is an ensemble of trained classifiers"), (export, "is an ONNX export")):
        for configs in ("last-1", "head"):
            code, out, err = run_cli("compare", "--train", tiny_data["train"], "--model", model, "--configs", configs,
                                     "--folds", "2", "--out", tmp_path / "r")
            assert code == 2 and refusal in err and "has no encoder layers" not in err and "fold" not in out + err, err
    assert not (tmp_path / "r").exists()


def test_compare_counts_the_layers_of_other_families_as_freeze_plans_do(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """compare's check before the first run read `num_hidden_layers` alone: DistilBERT (`n_layers`) had "no encoder
    layers", so `--configs last-1` was refused though train runs it; ALBERT's 3 layers passed `--configs last-2`, which
    then stopped part-way, as `--freeze last-2`, at its one group of shared layers."""
    from transformers import AlbertConfig, DistilBertConfig

    from freezeframe.encoder import encoder_depth

    distilbert, albert = _with_tokenizer(tiny_model_dir, tmp_path / "distilbert"), _with_tokenizer(tiny_model_dir, tmp_path / "albert")
    DistilBertConfig(dim=32, n_layers=3, n_heads=2, hidden_dim=64).save_pretrained(distilbert)
    AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=2).save_pretrained(albert)
    assert (encoder_depth(str(distilbert)), encoder_depth(str(albert))) == (3, 1)
    code, out, err = run_cli("compare", "--train", tiny_data["train"], "--model", albert, "--configs", "head,last-2",
                             "--folds", "2", "--out", tmp_path / "r")
    assert code == 2 and f"--configs last-2: {albert}'s 3 layers share one set of weights (ALBERT)" in err and "fold" not in out + err, err


def test_a_decoder_is_refused_in_one_line_before_it_loads(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    """GPT-2 as --model was said to classify "over the first token", `last-1` found "no encoder layers", and training
    stopped in its first batch with transformers' "Cannot handle batch sizes > 1 if no padding token is defined". A
    decoder is refused from its config.json, before any weights load, naming what --model takes."""
    import transformers
    from transformers import GPT2Config

    source = _with_tokenizer(tiny_model_dir, tmp_path / "gpt2")
    GPT2Config(n_embd=32, n_layer=2, n_head=2).save_pretrained(source)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        lambda *args, **kwargs: pytest.fail("a decoder's weights were loaded"))
    for command in (["train", "--train", tiny_data["train"], "--out", tmp_path / "m"],
                    ["train", "--train", tiny_data["train"], "--out", tmp_path / "m", "--freeze", "last-1"],
                    ["inspect"], ["compare", "--train", tiny_data["train"], "--configs", "last-1", "--out", tmp_path / "r"]):
        code, _, err = run_cli(*command, "--model", source)
        assert code == 2 and err.count("\n") == 1, err
        assert "is a 'gpt2' model, a decoder that generates text, not an encoder; --model takes a BERT-family text encoder" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_an_encoder_decoder_is_refused_in_one_line_before_it_loads(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                   monkeypatch, family):
    """BART passed the encoder check (it has a masked-LM form) and trained through its own head, which reads the
    decoder's end-of-sequence token, while freezeframe said it classified "over the first token"; T5 passed too.
    An encoder-decoder is refused from its config.json, as a decoder is."""
    import transformers
    from transformers import BartConfig, T5Config

    source = _with_tokenizer(tiny_model_dir, tmp_path / family)
    config = (BartConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                         decoder_attention_heads=2) if family == "bart" else T5Config(d_model=32, num_layers=1, num_heads=2))
    config.save_pretrained(source)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained",
                        lambda *args, **kwargs: pytest.fail("an encoder-decoder's weights were loaded"))
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", tmp_path / "m", "--model", source)
    assert code == 2 and err.count("\n") == 1, err
    assert f"is a '{family}' model, an encoder-decoder that generates text, not an encoder; --model takes" in err
    assert not (tmp_path / "m").exists()


def test_modernberts_final_norm_is_the_encoders_not_the_head(tiny_model_dir, tmp_path):
    """ModernBERT's ``model.final_norm`` (the LayerNorm over its last layer's output) was the block `model`, part of
    the head: `--freeze head` trained it. It is the encoder's: frozen by `head` and gradual's first epoch, trained by
    `last-N` with the top layer, at its rate."""
    from transformers import ModernBertConfig, ModernBertModel

    from freezeframe.encoder import load_pretrained
    from freezeframe.freeze import FreezePlan, FreezeReport, optimizer_groups

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    source = _with_tokenizer(tiny_model_dir, tmp_path / "modernbert")
    ModernBertModel(ModernBertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=160, pad_token_id=0, bos_token_id=2,
                                     eos_token_id=3, cls_token_id=2, sep_token_id=3)).save_pretrained(source)
    model, _ = load_pretrained(str(source), ["a", "b", "c"], "cls")
    norm = "model.final_norm.weight"
    assert norm not in FreezePlan("head").trainable_names(model)
    assert norm not in FreezePlan("gradual").stage(1, 2).trainable_names(model)
    assert norm in FreezePlan("last-1").trainable_names(model) and norm not in FreezePlan("last-0").trainable_names(model)
    FreezePlan("head").apply(model, quiet=True)
    assert {row.block: row.state for row in FreezeReport.of(model, "head").rows}["encoder"] == "frozen"
    FreezePlan("last-1").apply(model, quiet=True)
    rates = {name: group["lr"] for group in optimizer_groups(model, 1e-3, 0.01, lr_decay=0.5, head_lr=1e-2)
             for name in group["names"]}
    assert rates[norm] == rates["model.layers.1.attn.Wqkv.weight"] == 1e-3


def test_albert_says_its_layers_share_their_weights(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """ALBERT's depth was refused as "the model has only 1 encoder layer" while its config.json says 3 (or 12): its layers
    reuse the weights of its groups, which are what plans count. The refusal says so, and inspect's table, whose
    block 'layer 0' is that shared group, says what the block stands for."""
    from transformers import AlbertConfig, AlbertModel

    source = _with_tokenizer(tiny_model_dir, tmp_path / "albert")
    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    sizes = {"vocab_size": vocab_size, "embedding_size": 16, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    AlbertModel(AlbertConfig(num_hidden_layers=3, **sizes)).save_pretrained(source)
    for plan in ("last-2", "gradual-2"):
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "m", "--freeze", plan)
        assert code == 2 and err.strip().endswith(f"--freeze {plan}: the model's 3 layers share one set of weights (ALBERT), "
                                                  "so a plan cannot pick among them; last-1 trains them all, or use head"), err
        assert "only 1 encoder layer" not in err
    code, out, err = run_cli("inspect", "--model", source, "--freeze", "last-1")
    assert code == 0 and "\nlayer 0 " in out and out.strip().endswith(
        "ALBERT: its 3 layers share the weights of one layer group (the block 'layer 0' above), so a plan that trains a "
        "group trains every layer that reuses it"), out
    AlbertModel(AlbertConfig(num_hidden_layers=4, num_hidden_groups=2, **sizes)).save_pretrained(source)
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "m", "--freeze", "last-3")
    assert code == 2 and "the model's 4 layers share 2 sets of weights (ALBERT's num_hidden_groups), which plans count; last-2" in err, err
    code, out, _ = run_cli("inspect", "--model", source, "--freeze", "last-2")
    assert code == 0 and "4 layers share the weights of 2 layer groups (the blocks 'layer 0' to 'layer 1' above)" in out, out
    code, out, _ = run_cli("inspect", "--model", tiny_model_dir)
    assert code == 0 and "ALBERT" not in out


def test_a_pretrained_encoder_where_a_classifier_is_needed_says_to_train_one(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                            monkeypatch, capsys):
    """predict, evaluate, export and serve on an encoder that was never trained as a classifier said "lacks
    classifier.weight (not a trained classifier)" (a directory) or "model directory not found" (the default's name, a
    cached hub id). Each says in one line that it is an encoder and names the train step."""
    import huggingface_hub.constants
    from transformers import RobertaConfig, RobertaModel

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    roberta = _with_tokenizer(tiny_model_dir, tmp_path / "roberta")
    RobertaModel(RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=160, pad_token_id=0)).save_pretrained(roberta)
    shipped = _tinybert_as_shipped(tiny_model_dir, tmp_path / "tinybert")  # no architectures: found as it loads
    _cached(tmp_path / "hub", "org/encoder", {n: tiny_model_dir / n for n in ("config.json", "vocab.txt", "model.safetensors")})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    capsys.readouterr()  # what building the models printed
    commands = [["predict", "a camera shot"], ["predict", "--backend", "onnx", "a camera shot"],
                ["evaluate", "--data", tiny_data["test"]], ["export", "--format", "onnx"], ["serve", "--port", "0"]]
    for model in (tiny_model_dir, roberta, shipped, "all-MiniLM-L6-v2", "org/encoder"):
        for command in commands[:1] if model == shipped else commands:
            code, _, err = run_cli(*command, "--model", model)
            assert code == 2 and err.count("\n") == 1, err
            assert err.strip().endswith(f"{model} is a pretrained encoder, not a trained classifier; train one from it first "
                                        f"(freezeframe train --model {model} --train FILE --out DIR), then pass --model DIR"), err
    assert not (tiny_model_dir / "onnx").exists() and not (roberta / "onnx").exists()


def test_a_hub_id_is_told_from_a_path_by_one_rule(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    """train (resolve_model) took a cached hub id without a namespace, as the Hub's oldest models have
    (``bert-base-uncased``), but predict (is_pretrained_encoder) looked only for ``org/name`` and called such an
    encoder "model directory not found" instead of saying to train a classifier from it. One rule serves both."""
    import huggingface_hub.constants

    from freezeframe.errors import FreezeframeError
    from freezeframe.source import is_pretrained_encoder, looks_like_hub_id, resolve_model

    files = {n: tiny_model_dir / n for n in ("config.json", "vocab.txt", "model.safetensors")}
    _cached(tmp_path / "hub", "bare-encoder", files)
    _cached(tmp_path / "hub", "org/encoder", files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert [looks_like_hub_id(n) for n in ("bare-encoder", "org/encoder", "a/b/c", "./org/x", "/abs", "~/m")] == [
        True, True, False, False, False, False]
    for name in ("bare-encoder", "org/encoder"):
        assert Path(resolve_model(name)).parent.parent.name == f"models--{name.replace('/', '--')}"
        assert is_pretrained_encoder(name)
        code, _, err = run_cli("predict", "a camera shot", "--model", name)
        assert code == 2 and err.strip().endswith(f"{name} is a pretrained encoder, not a trained classifier; train one "
                                                  f"from it first (freezeframe train --model {name} --train FILE "
                                                  "--out DIR), then pass --model DIR"), err
    for name in ("org/encoder/extra", "./org/encoder"):
        assert not is_pretrained_encoder(name)
        with pytest.raises(FreezeframeError, match=f"^model directory not found: {re.escape(name)}$"):
            resolve_model(name)
