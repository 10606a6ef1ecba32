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
