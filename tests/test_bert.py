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

    from freezeframe.tokenizer import FastTokenizer, SubwordTokenizer

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
          "--pooling", "mean", "--epochs", "1", "--ensemble", "2", "--quiet"])
    trained, _ = load_trained(tmp_path / "m")  # an ensemble's members, through transformers too
    assert len(trained.members) == 2
    assert all(not isinstance(m.hf, bert.BertForSequenceClassification) and m.pooling == "mean" for m in trained.members)


def test_another_family_trains_with_its_own_head_and_every_plan(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """A DistilBERT (no BERT stages) takes the default mean pooling as its own [CLS] head, says so and records it;
    gradual unfreezing walks its layers (its depth once read as 0, so only the head trained)."""
    import json

    from transformers import DistilBertConfig, DistilBertModel

    from freezeframe.freeze import block_of

    source = tmp_path / "distilbert"
    bert_config = json.loads((tiny_model_dir / "config.json").read_text())
    DistilBertModel(DistilBertConfig(vocab_size=bert_config["vocab_size"], dim=32, n_layers=3, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=160)).save_pretrained(source)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copyfile(tiny_model_dir / name, source / name)
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", out,
                           "--freeze", "gradual", "--epochs", "4", "--ensemble", "1")
    assert code == 0 and "mean pooling needs BERT's layout; DistilBertForSequenceClassification" in err, err
    meta = json.loads((out / "freezeframe.json").read_text())
    assert meta["settings"]["model"]["pooling"] == "cls"
    assert [stage["plan"] for stage in meta["freeze"]["schedule"]] == ["last-0", "last-1", "last-2", "last-3"]
    code, shown, _ = run_cli("inspect", "--model", out)
    assert code == 0 and "layer 2" in shown and "pre_classifier" in shown
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "p", "--probe")
    assert code == 2 and "--probe: it fits on sentence vectors computed through BERT's stages" in err, err
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", source, "--out", tmp_path / "g",
                           "--freeze", "classifier.*", "--dropout", "0.3", "--encoder-dropout", "0", "--epochs", "1")
    assert code == 0 and "leaves the pre_classifier frozen at its random initialisation" in err, err
    saved = json.loads((tmp_path / "g" / "config.json").read_text())  # DistilBERT's own dropout keys, not BERT's
    assert (saved["seq_classif_dropout"], saved["dropout"], saved["attention_dropout"]) == (0.3, 0.0, 0.0)
    # heads and layers of other families, by their parameter names
    assert block_of("classifier.dense.weight") == block_of("classifier.out_proj.bias") == "classifier"
    assert block_of("albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight") == "layer 0"
    assert block_of("distilbert.transformer.layer.2.ffn.lin1.weight") == "layer 2"


@pytest.mark.parametrize("backend", ["lean", "transformers"])
def test_checkpoints_that_do_not_fit_the_data_or_the_settings(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                             monkeypatch, backend):
    """A classifier for other classes gets a new head (said); a masked-LM checkpoint's missing pooler, frozen
    under cls pooling, is warned about; too few positions or too small an embedding is one line before training."""
    import json

    from safetensors.torch import load_file, save_file

    if backend == "transformers":
        monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    config = json.loads((tiny_model_dir / "config.json").read_text())
    weights = load_file(str(tiny_model_dir / "model.safetensors"))

    def variant(name, settings=None, state=None):
        directory = tmp_path / name
        shutil.copytree(tiny_model_dir, directory)
        (directory / "config.json").write_text(json.dumps({**config, **(settings or {})}))
        save_file(state if state is not None else weights, str(directory / "model.safetensors"))
        return directory

    hidden = config["hidden_size"]
    two_classes = variant("two", {"architectures": ["BertForSequenceClassification"], "id2label": {"0": "neg", "1": "pos"},
                                  "label2id": {"neg": 0, "pos": 1}},
                          {**{f"bert.{k}": v for k, v in weights.items()},  # the fixture is a bare BertModel
                           "classifier.weight": torch.zeros(2, hidden), "classifier.bias": torch.zeros(2)})
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", two_classes, "--out", tmp_path / "out-two",
                           "--epochs", "1", "--ensemble", "2")
    assert code == 0 and err.count("has a classifier for 2 classes; a new one for this data's 3 replaces it") == 1, err
    no_pooler = variant("mlm", state={k: v for k, v in weights.items() if "pooler" not in k})
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", no_pooler, "--out", tmp_path / "out-mlm",
                           "--epochs", "1", "--pooling", "cls", "--freeze", "head", "--valid-fraction", "0")
    assert code == 0 and "leaves the [CLS] pooler frozen at its random initialisation" in err, err
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", no_pooler, "--out", tmp_path / "out-mlm2",
                           "--epochs", "1", "--pooling", "cls", "--freeze", "last-1")
    assert code == 0 and "pooler frozen" not in err, err
    short = variant("short", {"max_position_embeddings": 64},
                    {**weights, "embeddings.position_embeddings.weight": weights["embeddings.position_embeddings.weight"][:64]})
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", short, "--out", tmp_path / "out-short")
    assert code == 2 and f"--max-length 128: {short} has 64 positions; use --max-length 64 or less" in err, err
    assert not (tmp_path / "out-short").exists()
    words = weights["embeddings.word_embeddings.weight"]
    small = variant("small", {"vocab_size": 8}, {**weights, "embeddings.word_embeddings.weight": words[:8]})
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", small, "--out", tmp_path / "out-small")
    assert code == 2 and "tokens but the model embeds only 8; the tokenizer files belong to another model" in err, err


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


def _tinybert_layout(tiny_model_dir, directory):
    """The tiny model as TinyBERT's hub repository lays it out: ``pytorch_model.bin`` and ``vocab.txt``, no
    ``tokenizer.json``, no safetensors."""
    from safetensors.torch import load_file

    directory.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copyfile(tiny_model_dir / name, directory / name)
    torch.save(load_file(str(tiny_model_dir / "model.safetensors")), directory / "pytorch_model.bin")
    return directory


@pytest.mark.parametrize("settings", [{}, {"do_lower_case": False}, {"strip_accents": False}, {"tokenize_chinese_chars": False}])
def test_a_bare_vocab_txt_tokenizes_as_transformers_does(tmp_path, settings):
    """Without tokenizer.json the lean path builds the WordPiece tokenizer from vocab.txt and tokenizer_config.json."""
    import json

    from transformers import AutoTokenizer

    from freezeframe.tokenizer import FastTokenizer, SubwordTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["camera", "Camera", "cafe", "café", "crème", "creme", "電", "影", "電影", "plot", "##s", "##ing", "the", "!", ","]
    (tmp_path / "vocab.txt").write_text("\n".join(specials + words) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", **settings}))
    texts = ["Camera cameras, CAFÉ crème!", "電影 plot", "the [SEP] plot [MASK] camera", "x" * 150 + " plot", "",
             "tab\there\x00 new\nline  plots", "Crème CAMERAing " * 6]
    ours, theirs = FastTokenizer(tmp_path), SubwordTokenizer(AutoTokenizer.from_pretrained(str(tmp_path)))
    assert not (tmp_path / "tokenizer.json").exists()
    assert ours.pad_id == theirs.pad_id == 0
    for max_length in (64, 8):
        assert ours.encode(texts, max_length) == theirs.encode(texts, max_length)


def test_a_tinybert_layout_trains_without_transformers(tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    """pytorch_model.bin and a bare vocab.txt (the seed's TinyBERT) run on the lean path, compute what transformers
    computes, and train into a directory that the lean path and transformers both load."""
    from freezeframe import bert
    from freezeframe.cli import main
    from freezeframe.encoder import load_pretrained, load_trained

    source = _tinybert_layout(tiny_model_dir, tmp_path / "tinybert")
    assert bert.unsupported(source) is None
    lean, tokenizer = load_pretrained(str(source), ["a", "b", "c"], "mean")
    assert isinstance(lean.hf, bert.BertForSequenceClassification)
    main(["train", "--train", str(tiny_data["train"]), "--model", str(source), "--out", str(tmp_path / "m"),
          "--epochs", "1", "--ensemble", "2", "--quiet"])
    trained, trained_tokenizer = load_trained(tmp_path / "m")  # two members
    assert all(isinstance(m.hf, bert.BertForSequenceClassification) for m in trained.members)
    assert (tmp_path / "m" / "model.safetensors").is_file() and not (tmp_path / "m" / "pytorch_model.bin").exists()
    monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    reference, reference_tokenizer = load_pretrained(str(source), ["a", "b", "c"], "mean")
    reference.hf.load_state_dict(lean.hf.state_dict())
    input_ids, mask = _batch(tokenizer)
    assert torch.equal(input_ids, _batch(reference_tokenizer)[0])
    lean.eval(), reference.eval()
    with torch.no_grad():
        assert torch.allclose(lean(input_ids, mask), reference(input_ids, mask), atol=1e-5)
    through_transformers, _ = load_trained(tmp_path / "m")
    assert not any(isinstance(m.hf, bert.BertForSequenceClassification) for m in through_transformers.members)
    trained.eval(), through_transformers.eval()
    with torch.no_grad():
        assert torch.allclose(trained(input_ids, mask), through_transformers(input_ids, mask), atol=1e-5)
    assert trained_tokenizer.encode(TEXTS, 64) == tokenizer.encode(TEXTS, 64)
    from freezeframe.onnx_backend import _load_tokenizer
    from freezeframe.tokenizer import FastTokenizer

    onnx_tokenizer = _load_tokenizer(tmp_path / "m", "transformer")  # what an export of it would run
    assert isinstance(onnx_tokenizer, FastTokenizer) and onnx_tokenizer.encode(TEXTS, 64) == tokenizer.encode(TEXTS, 64)


def test_a_cached_hub_id_runs_on_the_lean_path_and_its_model_loads_in_pipeline(
        tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    """A hub id found in the local cache loads from its snapshot directory, so a cached TinyBERT (config.json,
    pytorch_model.bin and vocab.txt: no tokenizer files beyond the vocabulary) trains on the lean path like a
    directory; the mean-pooled model it writes loads in pipeline() and predicts what freezeframe predicts."""
    import huggingface_hub.constants
    from transformers import pipeline

    from freezeframe import bert
    from freezeframe.cli import main
    from freezeframe.encoder import load_pretrained
    from freezeframe.errors import FreezeframeError
    from freezeframe.predict import load_classifier
    from freezeframe.source import resolve_model

    snapshot = tmp_path / "hub" / "models--org--tiny-bert" / "snapshots" / "0123abcd"
    build = _tinybert_layout(tiny_model_dir, tmp_path / "build")
    snapshot.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "pytorch_model.bin"):
        (build / name).rename(snapshot / name)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("org/tiny-bert") == str(snapshot)
    with pytest.raises(FreezeframeError, match="not in the Hugging Face cache"):  # never handed to transformers
        resolve_model("org/absent")
    model, _ = load_pretrained("org/tiny-bert", ["a", "b"], "mean")
    assert isinstance(model.hf, bert.BertForSequenceClassification)
    out = tmp_path / "m"
    main(["train", "--train", str(tiny_data["train"]), "--model", "org/tiny-bert", "--out", str(out),
          "--epochs", "1", "--ensemble", "1", "--quiet"])
    texts = ["camera lighting shot", "villain hero role"]
    expected = [max(row["scores"].values()) for row in load_classifier(out).predict(texts)]
    scored = pipeline("text-classification", model=str(out), trust_remote_code=True, truncation=True)(texts)
    assert [row["score"] for row in scored] == pytest.approx(expected, abs=1e-5)


def test_what_the_lean_path_leaves_to_transformers(tiny_model_dir, tmp_path):
    import json

    from freezeframe import bert
    from freezeframe.encoder import load_pretrained
    from freezeframe.errors import FreezeframeError

    source = _tinybert_layout(tiny_model_dir, tmp_path / "tinybert")
    settings = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps({**settings, "tokenizer_class": "BertJapaneseTokenizer"}))
    assert bert.unsupported(source) == "tokenizer class 'BertJapaneseTokenizer'"
    (source / "tokenizer_config.json").write_text(json.dumps(settings))
    (source / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    assert bert.unsupported(source) is None
    with pytest.raises(FreezeframeError, match="cannot load model .*pytorch_model.bin"):
        load_pretrained(str(source), ["a", "b"])
    (source / "pytorch_model.bin").unlink()
    assert bert.unsupported(source) == "no model.safetensors or pytorch_model.bin"
