"""Settings checked before any work: NaN and infinity in every float option, wrong types in the Python API,
options that mean nothing for the model at hand; and scores that JSON cannot carry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import write_csv

TRAIN_ARGS = ["--epochs", "1", "--lr", "1e-3", "--quiet"]


@pytest.fixture
def no_work(monkeypatch):
    """Make training, comparing and serving fail loudly if they start."""
    import freezeframe.compare
    import freezeframe.fit
    import freezeframe.serve

    def never(*args, **kwargs):
        raise AssertionError("work started")

    for module, name in ((freezeframe.fit, "train_classifier"), (freezeframe.compare, "compare_configs"),
                         (freezeframe.serve, "serve_model")):
        monkeypatch.setattr(module, name, never)


@pytest.mark.parametrize(("option", "value"), [
    ("--lr", "nan"), ("--lr", "inf"), ("--head-lr", "nan"), ("--weight-decay", "nan"), ("--weight-decay", "inf"),
    ("--cache-budget", "inf"), ("--cache-budget", "nan"), ("--dropout", "nan"), ("--encoder-dropout", "inf"),
    ("--valid-fraction", "nan"), ("--warmup-ratio", "inf"), ("--lr-decay", "nan"), ("--label-smoothing", "-inf"),
])
def test_train_refuses_non_finite_floats_by_option_name(run_cli, no_work, tiny_data, tmp_path, option, value):
    code, out, err = run_cli("train", "--train", tiny_data["train"], "--out", tmp_path / "out", option, value)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"freezeframe: error: {option} must be a finite number, got ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "option"), [
    (["compare", "--train", "t.csv", "--out", "r", "--valid-fraction", "nan"], "--valid-fraction"),
    (["compare", "--train", "t.csv", "--out", "r", "--valid-fraction", "inf"], "--valid-fraction"),
    (["serve", "--model", "m", "--max-body-mb", "inf"], "--max-body-mb"),
    (["serve", "--model", "m", "--max-body-mb", "nan"], "--max-body-mb"),
    (["serve", "--model", "m", "--batch-wait-ms", "nan"], "--batch-wait-ms"),
    (["serve", "--model", "m", "--batch-wait-ms", "inf"], "--batch-wait-ms"),
])
def test_compare_and_serve_refuse_non_finite_floats(run_cli, no_work, tmp_path, monkeypatch, args, option):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(*args)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"freezeframe: error: {option} must be a finite number, got ")


@pytest.fixture(scope="module")
def nan_model(head_model, tmp_path_factory):
    """A copy of ``head_model`` whose classifier weights are NaN (what a diverged training run leaves)."""
    import torch
    from safetensors.torch import load_file, save_file

    copy = tmp_path_factory.mktemp("broken") / "nan"
    shutil.copytree(head_model, copy)
    weights = load_file(copy / "model.safetensors")
    weights["classifier.weight"] = torch.full_like(weights["classifier.weight"], float("nan"))
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    return copy


def test_non_finite_scores_are_refused_not_printed_as_nan(run_cli, nan_model, tmp_path):
    code, out, err = run_cli("predict", "--model", nan_model, "camera shot", "a hero")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "non-finite scores" in err and "2 of 2 texts" in err
    output = tmp_path / "labelled.jsonl"
    code, _, err = run_cli("predict", "--model", nan_model, "camera shot", "--output", output)
    assert code == 2 and "non-finite scores" in err and not output.exists()
    code, _, err = run_cli("evaluate", "--model", nan_model, "--data", write_csv(tmp_path / "d.csv", [("shot", "Story")]))
    assert code == 2 and "non-finite scores" in err
    # serve refuses it before it listens (its warm-up call scores a text)
    code, _, err = run_cli("serve", "--model", nan_model, "--port", "0")
    assert code == 2 and "non-finite scores" in err and len(err.strip().splitlines()) == 1


def test_the_service_answers_non_finite_scores_with_a_reason(nan_model):
    from fastapi.testclient import TestClient

    from freezeframe.predict import load_classifier
    from freezeframe.serve import create_app

    with TestClient(create_app(load_classifier(nan_model, device="cpu"))) as client:
        response = client.post("/predict", json={"texts": ["camera shot"]})
    assert response.status_code == 500 and "non-finite scores" in response.json()["detail"]


def test_python_api_type_mistakes_name_the_field_and_the_type():
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    cases = [
        (lambda: ModelConfig(freeze=3), "ModelConfig.freeze must be a string, got int 3"),
        (lambda: DataConfig("train.csv", valid_fraction="0.15"), "DataConfig.valid_fraction must be a number"),
        (lambda: TrainConfig(seed="1"), "TrainConfig.seed must be an int, got str '1'"),
        (lambda: TrainConfig(batch_size="8"), "TrainConfig.batch_size must be an int"),
        (lambda: TrainConfig(epochs=True), "TrainConfig.epochs must be an int or None, got bool"),
        (lambda: TrainConfig(lr="1e-3"), "TrainConfig.lr must be a number (int or float) or None"),
        (lambda: TrainConfig(cache="yes"), "TrainConfig.cache must be True or False"),
        (lambda: DataConfig(None), "DataConfig.train must be a path"),
        (lambda: RunConfig(ModelConfig(), DataConfig("train.csv"), TrainConfig()),
         "RunConfig.data must be a DataConfig, got ModelConfig"),
    ]
    for build, message in cases:
        with pytest.raises(TypeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            build()
    with pytest.raises(TypeError, match="in that order"):
        RunConfig(ModelConfig(), DataConfig("train.csv"), TrainConfig())


def test_python_api_takes_ints_for_floats_and_paths_for_models(tiny_model_dir):
    import numpy as np

    from freezeframe.config import DataConfig, ModelConfig, TrainConfig

    train = TrainConfig(lr=1, weight_decay=0, seed=np.int64(3))
    assert (train.lr, train.weight_decay, train.seed) == (1.0, 0.0, 3)
    assert type(train.lr) is float and type(train.seed) is int  # freezeframe.json records plain numbers
    assert DataConfig("t.csv", valid_fraction=0).valid_fraction == 0.0
    assert ModelConfig(model=Path(tiny_model_dir)).model == str(tiny_model_dir)


def test_train_classifier_and_predict_refuse_wrong_arguments(head_model):
    from freezeframe.fit import train_classifier
    from freezeframe.predict import load_classifier

    with pytest.raises(TypeError, match="train_classifier takes a RunConfig.*got dict"):
        train_classifier({"train": "train.csv"})
    classifier = load_classifier(head_model, device="cpu")
    with pytest.raises(TypeError, match="texts must be a list of strings .*got NoneType"):
        classifier.predict(None)
    with pytest.raises(TypeError, match="got int"):
        classifier.predict_proba(3)


def test_the_baseline_refuses_cls_pooling(run_cli, no_work, tiny_data, tmp_path):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", tmp_path / "out", "--model", "baseline",
                           "--pooling", "cls")
    assert code == 2 and "--pooling cls: the baseline averages its word vectors" in err
    code, _, err = run_cli("inspect", "--model", "baseline", "--pooling", "cls")
    assert code == 2 and "--pooling cls" in err and len(err.strip().splitlines()) == 1


def test_inspect_refuses_a_pooling_that_contradicts_the_trained_model(run_cli, head_model):
    code, out, err = run_cli("inspect", "--model", head_model, "--pooling", "cls")
    assert code == 2 and out == ""
    assert err.strip() == (f"freezeframe: error: --pooling cls: {head_model} was trained with mean pooling, which its "
                           "weights keep; drop --pooling")
    code, out, _ = run_cli("inspect", "--model", head_model, "--pooling", "mean")
    assert code == 0 and "classifier" in out


def test_training_that_diverges_stops_with_one_line_and_writes_nothing(run_cli, tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "diverged"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--epochs", "2", "--lr", "1e10", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "training diverged in epoch 1: the weights are no longer finite numbers" in err and "lower --lr" in err
    assert not out.exists()


def test_training_that_diverges_after_a_saved_epoch_leaves_no_checkpoint(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                         monkeypatch):
    """Epoch 1's checkpoint stayed in --out, which then refused the next run as an unfinished one to resume (and
    resuming would only diverge again); a model that was there stays."""
    import torch

    from freezeframe import train

    epoch = train._train_epoch
    calls = []

    def diverging_in_epoch_2(model, *args, **kwargs):
        result = epoch(model, *args, **kwargs)
        calls.append(1)
        if len(calls) % 2 == 0:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))
        return result

    monkeypatch.setattr(train, "_train_epoch", diverging_in_epoch_2)
    args = ("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--epochs", "3", "--ensemble", "1",
            "--quiet")
    out = tmp_path / "new"
    code, _, err = run_cli(*args, "--out", out)
    assert code == 2 and "training diverged in epoch 2" in err, err
    assert not out.exists()
    kept = tmp_path / "kept"
    monkeypatch.setattr(train, "_train_epoch", epoch)
    assert run_cli(*args, "--out", kept)[0] == 0
    before = sorted(p.name for p in kept.iterdir())
    monkeypatch.setattr(train, "_train_epoch", diverging_in_epoch_2)
    calls.clear()
    code, _, err = run_cli(*args, "--out", kept, "--overwrite")
    assert code == 2 and "training diverged in epoch 2" in err, err
    assert sorted(p.name for p in kept.iterdir()) == before
