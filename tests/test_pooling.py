"""Mean pooling: trains, saves, reloads, and stays loadable by transformers.pipeline()."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory, tiny_model_dir, tiny_data):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "mean"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out),
          "--pooling", "mean", "--freeze", "last-2", "--epochs", "3", "--lr", "1e-3", "--head-lr", "1e-2",
          "--max-length", str(MAX_LENGTH), "--quiet"])
    return out


MAX_LENGTH = 16
LONG_TEXTS = ["the camera shot lighting and the hero actor and the plot ending twist of this very good film",  # > 16 tokens
              " ".join(["the camera shot and the villain role and the plot"] * 20)]  # > 160, the tiny BERT's positions


def test_mean_pooled_model_is_saved_with_its_code(mean_model):
    config = json.loads((mean_model / "config.json").read_text())
    assert config["freezeframe_pooling"] == "mean"
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith("modeling_freezeframe.")
    assert (mean_model / "modeling_freezeframe.py").exists()


def test_pipeline_with_remote_code_agrees(mean_model):
    from transformers import pipeline

    from freezeframe.predict import load_classifier

    texts = ["the camera shot lighting", "a hero actor", "the plot ending twist", "very good film", *LONG_TEXTS]
    # as README's "Loading a model elsewhere" calls it: truncation=True cuts at the trained --max-length
    classify = pipeline("text-classification", model=str(mean_model), trust_remote_code=True, device="cpu", top_k=None,
                        truncation=True)
    theirs = classify(texts)
    ours = load_classifier(mean_model, device="cpu").predict(texts)
    for mine, other in zip(ours, theirs):
        assert mine["label"] == max(other, key=lambda r: r["score"])["label"]
        for row in other:
            assert mine["scores"][row["label"]] == pytest.approx(row["score"], abs=1e-4)


def test_pipeline_needs_no_remote_code_once_freezeframe_registered_the_class(mean_model):
    """As README says: in a process that called import_transformers(), pipeline() loads the mean head itself."""
    import subprocess
    import sys

    code = ("from freezeframe.encoder import import_transformers; import_transformers(); "
            "from transformers import pipeline; "
            f"print(pipeline('text-classification', model={str(mean_model)!r}, device='cpu')('camera shot')[0]['label'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"Characters", "Cinematography", "Story"}


def test_pipeline_without_remote_code_fails_loudly(mean_model):
    """Outside freezeframe, a mean-pooled model must not load silently as a [CLS]-pooled BERT."""
    import subprocess
    import sys

    code = ("from transformers import pipeline; "
            f"pipeline('text-classification', model={str(mean_model)!r}, device='cpu')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode != 0
    assert "trust_remote_code" in done.stderr


@pytest.mark.parametrize("backend", ["freezeframe", "transformers"])
def test_the_saved_tokenizer_truncates_at_the_trained_max_length(tmp_path, tiny_model_dir, tiny_data, monkeypatch, backend):
    """The pretrained tokenizer's model_max_length (512 for MiniLM) becomes the --max-length the model trained at,
    whether the lean BERT or transformers' classes (and tokenizer) trained it."""
    from freezeframe.cli import main

    monkeypatch.setenv("FREEZEFRAME_BERT", backend)
    out = tmp_path / "model"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out),
          "--freeze", "head", "--epochs", "1", "--max-length", "12", "--quiet"])
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 12
    assert json.loads((tiny_model_dir / "tokenizer_config.json").read_text()).get("model_max_length") != 12


def test_the_saved_tokenizer_json_truncates_and_pads_at_the_trained_max_length(tmp_path, tiny_model_dir, tiny_data):
    """A source tokenizer.json with its own truncation and fixed padding (all-MiniLM-L6-v2's say 128) is saved with
    the --max-length the model trained at, so the tokenizers library reading that file alone cuts where freezeframe does."""
    import shutil

    from tokenizers import Tokenizer

    from freezeframe.cli import main

    source = tmp_path / "source"
    shutil.copytree(tiny_model_dir, source)
    settings = json.loads((source / "tokenizer.json").read_text())
    settings["truncation"] = {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0}
    settings["padding"] = {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": None,
                           "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    (source / "tokenizer.json").write_text(json.dumps(settings))
    out = tmp_path / "model"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(source), "--out", str(out),
          "--freeze", "head", "--epochs", "1", "--max-length", "12", "--quiet"])
    saved = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert [len(e.ids) for e in saved.encode_batch([LONG_TEXTS[0], "camera"])] == [12, 12]
    assert len(Tokenizer.from_file(str(source / "tokenizer.json")).encode("camera").ids) == 128


def test_a_classifier_freezeframe_did_not_train_is_read_at_its_tokenizers_length(tmp_path, tiny_model_dir):
    """A plain Hugging Face classifier directory (no freezeframe.json) is truncated where pipeline(truncation=True)
    truncates it: at its tokenizer's model_max_length; without one, at freezeframe's default of 128."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

    from freezeframe.predict import load_classifier

    config = BertConfig.from_pretrained(str(tiny_model_dir), num_labels=3)
    model = BertForSequenceClassification.from_pretrained(str(tiny_model_dir), config=config)
    plain = tmp_path / "plain"
    model.save_pretrained(plain)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir), model_max_length=MAX_LENGTH)
    tokenizer.save_pretrained(plain)
    classifier = load_classifier(plain, device="cpu")
    assert classifier.max_length == MAX_LENGTH
    classify = pipeline("text-classification", model=str(plain), device="cpu", top_k=None, truncation=True)
    expected = {s["label"]: s["score"] for s in classify([LONG_TEXTS[0]])[0]}
    got = classifier.predict_proba([LONG_TEXTS[0]])[0]
    assert got == pytest.approx([expected[label] for label in classifier.labels], abs=1e-5)

    settings = json.loads((plain / "tokenizer_config.json").read_text())
    del settings["model_max_length"]
    (plain / "tokenizer_config.json").write_text(json.dumps(settings))
    assert load_classifier(plain, device="cpu").max_length == 128
