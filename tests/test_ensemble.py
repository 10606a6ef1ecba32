"""--ensemble K: one directory, members share the split and the cache, predictions average."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

TEXTS = ["the camera shot", "a villain role", "plot twist", "very good film"]


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, tiny_model_dir, tiny_data):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "ensemble"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out),
          "--ensemble", "2", "--epochs", "2", "--lr", "1e-3", "--max-length", str(MAX_LENGTH), "--quiet"])
    return out


MAX_LENGTH = 16
LONG = " ".join(["the camera shot and the villain role and the plot"] * 20)  # past --max-length and the tiny BERT's 160 positions


def test_an_ensemble_is_one_model_directory_whose_predictions_average_its_members(ensemble_dir):
    from freezeframe.encoder import AveragedMembers
    from freezeframe.predict import Classifier, load_classifier

    meta = json.loads((ensemble_dir / "freezeframe.json").read_text())
    assert meta["kind"] == "ensemble" and meta["members"] == 2
    assert [r["seed"] for r in meta["member_runs"]] == [0, 1]
    assert meta["history_of"] == "member 1"  # counted from 1, as train's output counts them
    config = json.loads((ensemble_dir / "config.json").read_text())
    assert config["model_type"] == "freezeframe_ensemble" and config["members"] == 2
    assert not any(p.is_dir() for p in ensemble_dir.iterdir())  # one network, no member directories
    ensemble = load_classifier(ensemble_dir, device="cpu")
    assert isinstance(ensemble.model, AveragedMembers) and len(ensemble.model.members) == 2
    members = [Classifier(m, ensemble.tokenizer, ensemble.labels, MAX_LENGTH, device="cpu") for m in ensemble.model.members]
    expected = np.mean([m.predict_proba(TEXTS) for m in members], axis=0)
    assert np.allclose(ensemble.predict_proba(TEXTS), expected, atol=1e-6)
    assert not np.allclose(members[0].predict_proba(TEXTS), members[1].predict_proba(TEXTS)), "seeds must differ"


def test_predict_evaluate_and_the_onnx_backend_take_an_ensemble(run_cli, ensemble_dir, tiny_data):
    code, stdout, _ = run_cli("evaluate", "--model", ensemble_dir, "--data", tiny_data["test"], "--json")
    assert code == 0 and json.loads(stdout)["n"] == 18
    code, stdout, _ = run_cli("predict", "--model", ensemble_dir, *TEXTS)
    torch_rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and [r["text"] for r in torch_rows] == TEXTS
    code, stdout, err = run_cli("predict", "--model", ensemble_dir, "--backend", "onnx", *TEXTS)
    assert code == 0, err
    for mine, graph in zip(torch_rows, (json.loads(line) for line in stdout.splitlines())):
        assert graph["label"] == mine["label"]
        assert graph["scores"] == pytest.approx(mine["scores"], abs=1e-4)


def test_transformers_loads_an_ensemble_alike(ensemble_dir, monkeypatch):
    """Through transformers' classes (FREEZEFRAME_BERT=transformers) and through pipeline() with the saved code."""
    from transformers import pipeline

    from freezeframe.predict import load_classifier

    texts = [*TEXTS, LONG]
    assert json.loads((ensemble_dir / "tokenizer_config.json").read_text())["model_max_length"] == MAX_LENGTH
    ours = load_classifier(ensemble_dir, device="cpu").predict_proba(texts)
    monkeypatch.setenv("FREEZEFRAME_BERT", "transformers")
    assert np.allclose(load_classifier(ensemble_dir, device="cpu").predict_proba(texts), ours, atol=1e-5)
    classify = pipeline("text-classification", model=str(ensemble_dir), trust_remote_code=True, device="cpu", top_k=None,
                        truncation=True)
    labels = load_classifier(ensemble_dir, device="cpu").labels
    for mine, theirs in zip(ours, classify(texts)):
        scores = {row["label"]: row["score"] for row in theirs}
        assert [scores[label] for label in labels] == pytest.approx(mine.tolist(), abs=1e-5)


def test_pipeline_loads_an_ensemble_without_freezeframe(ensemble_dir, tmp_path):
    """The saved modeling_freezeframe.py is all pipeline() needs: run it where freezeframe cannot be imported."""
    (tmp_path / "freezeframe.py").write_text("raise ImportError('freezeframe is not installed here')\n")
    code = (
        "from transformers import pipeline\n"
        f"classify = pipeline('text-classification', model={str(ensemble_dir)!r}, trust_remote_code=True, device='cpu')\n"
        "print(classify(['camera shot'])[0]['label'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"Characters", "Cinematography", "Story"}


@pytest.mark.parametrize("recorded", ["member 1", "member 0"])  # member 0: a model saved before members counted from 1
def test_the_learning_curve_plot_names_the_first_member_as_member_1(run_cli, ensemble_dir, tiny_data, tmp_path,
                                                                   monkeypatch, recorded):
    import shutil

    from freezeframe import evaluate

    model = tmp_path / "ensemble"
    shutil.copytree(ensemble_dir, model)
    meta = json.loads((model / "freezeframe.json").read_text())
    (model / "freezeframe.json").write_text(json.dumps({**meta, "history_of": recorded}))
    titles = []
    monkeypatch.setattr(evaluate, "plot_learning_curves", lambda curves, path: titles.extend(curves))
    code, _, err = run_cli("evaluate", "--model", model, "--data", tiny_data["test"], "--plots", tmp_path / "plots")
    assert code == 0, err
    assert titles == ["ensemble (member 1)"]


@pytest.mark.parametrize("backend", ["freezeframe", "transformers"])
def test_an_ensemble_member_without_its_classifier_is_refused(run_cli, ensemble_dir, tmp_path, monkeypatch, backend):
    from conftest import without_weight

    monkeypatch.setenv("FREEZEFRAME_BERT", backend)
    broken = without_weight(ensemble_dir, tmp_path / "headless", "members.1.classifier.bias")
    code, out, err = run_cli("predict", "--model", broken, "camera shot")
    assert code == 2 and out == "" and "member 2 (members.1.*)" in err and "classifier.bias" in err


def test_an_ensemble_is_not_a_starting_point_for_training(run_cli, ensemble_dir, tiny_data, tmp_path):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", ensemble_dir, "--out", tmp_path / "m")
    assert code == 2 and "is an ensemble of trained classifiers" in err and len(err.strip().splitlines()) == 1


def test_inspect_shows_the_members_plan(run_cli, ensemble_dir):
    code, stdout, err = run_cli("inspect", "--model", ensemble_dir)
    assert code == 0, err
    assert "(an ensemble of 2 members; one is shown), freeze plan encoder" in stdout


def test_baseline_members_keep_a_directory_each(run_cli, tmp_path, tiny_data):
    out = tmp_path / "baselines"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "baseline", "--out", out,
                           "--ensemble", "2", "--epochs", "3", "--quiet")
    assert code == 0, err
    meta = json.loads((out / "freezeframe.json").read_text())
    assert meta["member_dirs"] == ["member-0", "member-1"]
    from freezeframe.predict import load_classifier

    ensemble = load_classifier(out, device="cpu")
    members = [load_classifier(out / name, device="cpu") for name in meta["member_dirs"]]
    expected = np.mean([m.predict_proba(TEXTS) for m in members], axis=0)
    assert np.allclose(ensemble.predict_proba(TEXTS), expected, atol=1e-6)
    code, _, err = run_cli("export", "--model", out, "--format", "onnx")
    assert code == 2 and "a directory per member" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("together", "interrupt_at_save"), [
    (True, 1), (True, 2),  # members at once: Ctrl-C after the first or the second epoch saved (either member's)
    (False, 2),  # one after the other: member 1 finished, member 2 after its epoch 1
])
def test_an_interrupted_ensemble_resumes_to_the_same_weights(run_cli, ensemble_dir, tmp_path, tiny_model_dir, tiny_data,
                                                            monkeypatch, together, interrupt_at_save):
    import os
    import signal

    from safetensors.torch import load_file

    from freezeframe import fit
    from freezeframe.checkpoint import MemberCheckpoint

    if not together:
        monkeypatch.setattr(fit, "own_dropout", lambda model: False)
    args = ("train", "--train", tiny_data["train"], "--model", tiny_model_dir,
            "--ensemble", "2", "--epochs", "2", "--lr", "1e-3", "--max-length", MAX_LENGTH, "--quiet")
    reference = ensemble_dir
    if not together:  # one thread per member or two per run: the sums of the matrix products may round apart
        reference = tmp_path / "reference"
        assert run_cli(*args, "--out", reference)[0] == 0
    save, saves = MemberCheckpoint.save, []

    def save_then_ctrl_c(self, state):
        save(self, state)
        saves.append(state["epoch"])
        if len(saves) == interrupt_at_save:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MemberCheckpoint, "save", save_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "resumed"
    try:
        code, _, err = run_cli(*args, "--out", out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and "interrupted; saved: member 1" in err and "--resume" in err, err
    monkeypatch.setattr(MemberCheckpoint, "save", save)
    code, _, err = run_cli(*args, "--out", out, "--resume")
    assert code == 0, err
    assert "resuming from the checkpoint of member 1 epoch" in err
    left, right = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)

    def losses(directory):
        runs = json.loads((directory / "freezeframe.json").read_text())["member_runs"]
        return [[epoch["train_loss"] for epoch in run["history"]] for run in runs]

    assert losses(out) == losses(reference)


def test_ctrl_c_sent_to_the_process_ends_members_at_once_with_130(tmp_path, tiny_model_dir, tiny_data):
    """A process, not in-process: the C++ abort this guards against came at interpreter exit, when a worker
    thread outlived a join that Ctrl-C had interrupted (exit 134, "terminate called without an active exception");
    and a SIGINT the kernel gave a worker thread went unseen until training ended (exit 0)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        # Python leaves SIGINT ignored when the test runs as a background job (`make test &`): handle it anyway
        start = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); from freezeframe.cli import main; main()"
        command = [sys.executable, "-c", start, "train", "--train", str(tiny_data["train"]), "--model",
                   str(tiny_model_dir), "--ensemble", "2", "--epochs", "400", "--out", str(out), "--quiet"]
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        deadline = time.monotonic() + 120
        while not list((out / "checkpoint").glob("member-*.pt")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 130 and "terminate called" not in err, (child.returncode, err)
        assert "interrupted" in err and "--resume" in err, err


@pytest.mark.parametrize(("model", "freeze", "given", "precision", "members"), [
    ("all-MiniLM-L6-v2", "encoder", None, "auto", 2), ("all-MiniLM-L6-v2", "last-1", None, "auto", 1),
    ("all-MiniLM-L6-v2", "head", None, "auto", 1), ("baseline", "encoder", None, "auto", 1),
    ("all-MiniLM-L6-v2", "encoder", 1, "auto", 1), ("all-MiniLM-L6-v2", "last-1", 3, "auto", 3),
    ("all-MiniLM-L6-v2", "encoder", None, "fp32", 1), ("all-MiniLM-L6-v2", "encoder", 2, "fp32", 2),
])
def test_the_default_recipe_trains_two_members_in_bf16_and_one_otherwise(monkeypatch, model, freeze, given, precision, members):
    from pathlib import Path

    from freezeframe import train
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    monkeypatch.setattr(train, "cpu_multiplies_bf16", lambda: True)
    run = RunConfig(DataConfig(Path("train.csv")), ModelConfig(model=model, freeze=freeze),
                    TrainConfig(ensemble=given, precision=precision, device="cpu"))
    assert run.train.ensemble == members
    monkeypatch.setattr(train, "cpu_multiplies_bf16", lambda: False)  # a CPU without bf16: float32, one member
    run = RunConfig(DataConfig(Path("train.csv")), ModelConfig(model=model, freeze=freeze), TrainConfig(device="cpu"))
    assert run.train.ensemble == 1


@pytest.mark.parametrize("freeze, extra", [("head", {"cache": True}), ("classifier.*,bert.encoder.layer.3.*", {"cache": False, "probe": True})])
def test_a_member_whose_frozen_weights_start_random_trains_on_its_own_features(tiny_model_dir, tiny_data, tmp_path, freeze,
                                                                              extra):
    """A checkpoint without pooler weights, --pooling cls, a plan that leaves the pooler frozen: each member's pooler
    starts random, as its seed draws it, yet every member trained on the first member's cached (or probed) sentence
    vectors and predicted through its own pooler, on features it had never seen."""
    from conftest import without_weight

    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    source = without_weight(tiny_model_dir, tmp_path / "no-pooler", "pooler.dense.weight")

    def train(seed: int, members: int):
        return train_classifier(RunConfig(DataConfig(tiny_data["train"], valid_fraction=0), ModelConfig(str(source), freeze=freeze, pooling="cls"),
                                          TrainConfig(lr=1e-2, epochs=2, seed=seed, ensemble=members, show_progress=False, **extra)))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # members one after the other, summing as a single run does: the same weights to the bit
    try:
        ensemble, second = train(0, 2), train(1, 1)
    finally:
        torch.set_num_threads(threads)
    member, alone = dict(ensemble.members[1].plan_parameters()), dict(second.model.plan_parameters())
    assert not torch.equal(member["bert.pooler.dense.weight"], dict(ensemble.members[0].plan_parameters())["bert.pooler.dense.weight"])
    assert all(torch.equal(member[name], alone[name]) for name in member)
