"""What the command line refuses before it does any work, and what it never deletes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TRAIN_ARGS = ["--epochs", "1", "--lr", "1e-3", "--quiet"]


def _train(run_cli, tiny_model_dir, train, out, *extra):
    return run_cli("train", "--train", train, "--model", tiny_model_dir, "--out", out, *TRAIN_ARGS, *extra)


def test_overwrite_replaces_only_freezeframe_output(run_cli, tiny_model_dir, tiny_data, tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("precious")
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], mine, "--overwrite")
    assert code == 2 and "was not written by freezeframe" in err and "notes.txt" in err
    assert (mine / "notes.txt").read_text() == "precious" and (mine / "sub").is_dir()

    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--configs", "head",
                           "--model", tiny_model_dir, "--epochs", "1", "--out", mine, "--overwrite", "--quiet")
    assert code == 2 and "was not written by freezeframe" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "sub"]

    model = tmp_path / "model"  # a model directory is freezeframe's own: --overwrite replaces it
    assert _train(run_cli, tiny_model_dir, tiny_data["train"], model)[0] == 0
    assert _train(run_cli, tiny_model_dir, tiny_data["train"], model, "--overwrite")[0] == 0


def test_an_out_that_is_a_symlink_is_written_where_it_points(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """A link to a model was replaced by a directory, the link left behind as a hidden .NAME.old-PID; a link
    pointing nowhere yet ended a finished training in an internal error (NotADirectoryError)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "latest").symlink_to("first")  # nothing there yet
    assert _train(run_cli, tiny_model_dir, tiny_data["train"], runs / "latest", "--ensemble", "1")[0] == 0
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], runs / "latest", "--ensemble", "1", "--seed", "3",
                          "--overwrite")
    assert code == 0, err
    assert (runs / "latest").is_symlink() and sorted(p.name for p in runs.iterdir()) == ["first", "latest"]
    assert json.loads((runs / "latest" / "freezeframe.json").read_text())["settings"]["train"]["seed"] == 3


BASELINE_ARGS = ["--model", "baseline", "--epochs", "1", "--quiet"]


def test_overwrite_never_deletes_files_freezeframe_did_not_write(run_cli, tiny_data, tmp_path, monkeypatch):
    """Before: train --overwrite replaced the whole directory, the user's predictions and notes with it."""
    model = tmp_path / "m1"
    assert run_cli("train", "--train", tiny_data["train"], "--out", model, *BASELINE_ARGS)[0] == 0
    assert run_cli("predict", "--model", model, "--input", tiny_data["test"], "--output", model / "labelled.csv")[0] == 0
    (model / "NOTES.md").write_text("notes")
    monkeypatch.setattr("freezeframe.fit.split_data", lambda *a: pytest.fail("read the data before checking --out"))
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", model, "--overwrite", *BASELINE_ARGS)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds files freezeframe did not write (NOTES.md, labelled.csv)" in err
    assert (model / "NOTES.md").read_text() == "notes" and (model / "labelled.csv").is_file()
    (model / "NOTES.md").unlink()
    (model / "labelled.csv").unlink()
    assert run_cli("export", "--model", model, "--quantize", "int8")[0] == 0
    (model / "onnx" / "mine.txt").write_text("mine")
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", model, "--overwrite", *BASELINE_ARGS)
    assert code == 2 and "(onnx/mine.txt)" in err and (model / "onnx" / "mine.txt").is_file()


def test_overwrite_replaces_every_kind_of_freezeframe_output(run_cli, tiny_model_dir, tiny_data, head_model, tmp_path):
    """What train, export and compare write is recognized as theirs, with or without the list they record."""
    from freezeframe.layouts import CONTENTS_KEY, MODEL_LAYOUT, REPORT_LAYOUT

    model = tmp_path / "model"
    shutil.copytree(head_model, model)
    assert run_cli("export", "--model", model, "--quantize", "int8")[0] == 0
    assert MODEL_LAYOUT.foreign(model) == []
    meta = json.loads((model / "freezeframe.json").read_text())
    del meta[CONTENTS_KEY]  # as older versions wrote it
    (model / "freezeframe.json").write_text(json.dumps(meta))
    assert MODEL_LAYOUT.foreign(model) == []
    for extra in (["--model", tiny_model_dir, "--ensemble", "2", "--keep-checkpoint"], ["--model", "baseline", "--ensemble", "2"]):
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", model, "--overwrite", *TRAIN_ARGS, *extra)
        assert code == 0, err
        assert MODEL_LAYOUT.foreign(model) == []
    assert (model / "member-1").is_dir()
    # a baseline member exported on its own (export's advice for a baseline ensemble), a checkpoint of an older version
    assert run_cli("export", "--model", model / "member-0")[0] == 0 and (model / "member-0" / "onnx").is_dir()
    (model / "checkpoint").mkdir()
    (model / "checkpoint" / "state.pt").write_bytes(b"an older version's single checkpoint file")
    assert MODEL_LAYOUT.foreign(model) == []

    report = tmp_path / "report"
    compare = ["compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--configs", "baseline",
               "--epochs", "1", "--quiet", "--overwrite"]
    assert run_cli(*compare, "--out", report)[0] == 0
    assert REPORT_LAYOUT.foreign(report) == [] and run_cli(*compare, "--out", report)[0] == 0
    (report / "mine.txt").write_text("mine")
    code, _, err = run_cli(*compare, "--out", report)
    assert code == 2 and "(mine.txt)" in err and (report / "mine.txt").is_file()
    code, _, err = run_cli(*compare, "--out", model)
    assert code == 2 and "is a model directory (freezeframe train), not a report directory (freezeframe compare)" in err
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], report, "--overwrite")
    assert code == 2 and "is a report directory (freezeframe compare), not a model directory" in err


def test_out_may_not_hold_the_input_or_the_current_directory(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    model = tmp_path / "model"
    assert _train(run_cli, tiny_model_dir, tiny_data["train"], model)[0] == 0
    inside = model / "train.csv"
    shutil.copyfile(tiny_data["train"], inside)
    code, _, err = _train(run_cli, tiny_model_dir, inside, model, "--overwrite")
    assert code == 2 and "holds the input" in err and inside.is_file()

    monkeypatch.chdir(model)
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], ".", "--overwrite")
    assert code == 2 and "current directory" in err and (model / "freezeframe.json").is_file()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nothing can be created")
def test_an_out_that_cannot_be_written_is_refused_before_any_work(run_cli, tiny_model_dir, tiny_data, head_model, tmp_path):
    """Before: training ran to the end, then the checkpoint thread and the final save failed with tracebacks."""
    for command in (["train", "--train", tiny_data["train"], "--model", tiny_model_dir, *TRAIN_ARGS],
                    ["compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--configs", "head",
                     "--model", tiny_model_dir, "--epochs", "1", "--quiet"],
                    ["export", "--model", head_model]):
        code, _, err = run_cli(*command, "--out", "/proc/freezeframe-test/out")
        assert code == 2 and len(err.strip().splitlines()) == 1, command[0]
        assert "--out /proc/freezeframe-test/out: cannot write in /proc" in err, command[0]


def test_ctrl_c_outside_training_is_exit_130(run_cli, head_model, monkeypatch):
    import freezeframe.predict

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(freezeframe.predict, "load_predictor", interrupted)
    code, out, err = run_cli("predict", "--model", head_model, "some text")
    assert (code, out, err.strip()) == (130, "", "freezeframe: interrupted")


@pytest.mark.parametrize(("args", "message"), [
    (["predict", "--batch-size", "0", "x"], "--batch-size must be at least 1, got 0"),
    (["predict", "--batch-size", "-3", "x"], "--batch-size must be at least 1, got -3"),
    (["inspect", "--num-labels", "1"], "--num-labels must be at least 2, got 1"),
    (["export", "--opset", "5"], "--opset: expected 17 to 23, got 5"),
])
def test_bad_values_are_refused_by_option_name(run_cli, head_model, tiny_model_dir, args, message):
    args = [*args, "--model", head_model if args[0] in ("predict", "export") else tiny_model_dir]
    code, out, err = run_cli(*args)
    assert code == 2 and out == "" and err.strip() == f"freezeframe: error: {message}"


@pytest.mark.parametrize(("extra", "message"), [
    (["--weight-decay", "-1"], "--weight-decay must be at least 0"),
    (["--cache-budget", "-5"], "--cache-budget must be positive"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--freeze", "last-0"], "use --freeze head"),
    (["--freeze", "last-00"], "--freeze last-00 trains no encoder layer"),
    (["--vocab-size", "500"], "--vocab-size and --embedding-dim size the baseline's vocabulary"),
    (["--freeze", "gradual-99"], "--freeze gradual-99: the model has only 4 encoder layers"),
    (["--label-column", "review"], "--text-column and --label-column are both 'review'"),
])
def test_bad_train_values_name_the_option(run_cli, tiny_model_dir, tiny_data, tmp_path, extra, message):
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], tmp_path / "out", *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_predict_warns_about_empty_texts_and_keeps_their_rows(run_cli, head_model):
    code, out, err = run_cli("predict", "--model", head_model, "", "camera shot", "  ")
    assert code == 0 and [json.loads(line)["text"] for line in out.splitlines()] == ["", "camera shot", "  "]
    assert "2 of 3 texts are empty or invisible (number 1, 3)" in err
    code, _, err = run_cli("predict", "--model", head_model, "camera shot", "")
    assert code == 0 and "1 of 2 texts is empty or invisible (number 2)" in err
    # a zero-width space or a byte order mark alone is nothing to the tokenizer either (it was not counted)
    code, _, err = run_cli("predict", "--model", head_model, "\u200b", "camera shot", " \ufeff\u200d ")
    assert code == 0 and "2 of 3 texts are empty or invisible (number 1, 3)" in err


def test_a_model_without_its_tokenizer_is_refused(run_cli, head_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(head_model, broken)
    for name in ("tokenizer.json", "vocab.txt"):
        (broken / name).unlink(missing_ok=True)
    code, out, err = run_cli("predict", "--model", broken, "camera shot")
    assert code == 2 and out == "" and "has no tokenizer" in err


@pytest.mark.parametrize("backend", ["freezeframe", "transformers"])
def test_a_model_without_its_classifier_weights_is_refused(run_cli, head_model, tmp_path, monkeypatch, backend):
    """A new, random head would predict at random: loading a trained model must not start one."""
    from conftest import without_weight

    monkeypatch.setenv("FREEZEFRAME_BERT", backend)
    broken = without_weight(head_model, tmp_path / "headless", "classifier.weight")
    code, out, err = run_cli("predict", "--model", broken, "camera shot")
    assert code == 2 and out == ""
    assert "classifier.weight (not a trained classifier)" in err and len(err.strip().splitlines()) == 1


def test_inspect_shows_a_trained_directorys_own_plan(run_cli, head_model):
    code, out, _ = run_cli("inspect", "--model", head_model)
    assert code == 0 and "freeze plan head" in out
    code, out, _ = run_cli("inspect", "--model", head_model, "--freeze", "last-1")
    assert code == 0 and "freeze plan last-1" in out


def test_evaluate_plots_path_is_checked_before_scoring(run_cli, head_model, tiny_data, tmp_path, monkeypatch):
    import freezeframe.predict

    def never(*args, **kwargs):
        raise AssertionError("loaded the model before checking --plots")

    monkeypatch.setattr(freezeframe.predict, "load_classifier", never)
    afile = tmp_path / "afile.png"
    afile.write_text("x")
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", afile / "plots")
    assert code == 2 and "is a file" in err and afile.read_text() == "x"
    if Path("/proc/self").is_dir():
        code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", "/proc/plots")
        assert code == 2 and "--plots /proc/plots: cannot write in /proc" in err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "confusion_matrix.png").write_text("my own figure")
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", mine)
    assert code == 2 and "already holds confusion_matrix.png; pass --overwrite" in err
    assert (mine / "confusion_matrix.png").read_text() == "my own figure"


def test_evaluate_plots_replace_earlier_plots_with_overwrite(run_cli, head_model, tiny_data, tmp_path):
    plots = tmp_path / "plots"
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", plots)
    assert code == 0 and {p.name for p in plots.iterdir()} == {"confusion_matrix.png", "learning_curve.png"}, err
    (plots / "confusion_matrix.png").write_bytes(b"old")
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", plots, "--overwrite")
    assert code == 0 and (plots / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG"), err
    assert {p.name for p in plots.iterdir()} == {"confusion_matrix.png", "learning_curve.png"}  # no temporary left


def test_outputs_get_the_users_umask_not_private_modes(run_cli, tiny_model_dir, tiny_data, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        assert _train(run_cli, tiny_model_dir, tiny_data["train"], tmp_path / "model", "--freeze", "head")[0] == 0
    finally:
        os.umask(previous)
    model = tmp_path / "model"
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in model.iterdir() if p.is_file()} == {0o644}


@pytest.mark.parametrize(("args", "message"), [
    (["--configs", "head,last-9"], "--configs last-9: "),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["--folds", "1"], "--folds must be at least 2, got 1"),
    (["--seeds", "0"], "--seeds must be between 1 and 100, got 0"),
    (["--seeds", "1000000"], "--seeds must be between 1 and 100, got 1000000"),
    (["--configs", ","], "--configs is empty"),
    (["--configs", "head,bogus"], "--configs: unknown configuration 'bogus'"),
    # it said the model 'baseline' was neither a local directory nor in the Hugging Face cache
    (["--model", "baseline", "--configs", "baseline,head"], "--model baseline: freeze plans (head) apply to a pretrained"),
])
def test_compare_refuses_before_the_first_run(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch, args, message):
    import freezeframe.compare

    def never(*args, **kwargs):
        raise AssertionError("a run started")

    monkeypatch.setattr(freezeframe.compare, "_run_all", never)
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--model", tiny_model_dir, "--folds", "2",
                           "--out", tmp_path / "report", "--quiet", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_input_mistakes_are_named(run_cli, tiny_model_dir, tiny_data, head_model, tmp_path):
    (tmp_path / "adir").mkdir()
    code, _, err = _train(run_cli, tiny_model_dir, tmp_path / "adir", tmp_path / "out")
    assert code == 2 and "is a directory" in err
    code, _, err = _train(run_cli, tiny_model_dir, tiny_data["train"], tmp_path / "out",
                          "--valid", tiny_data["test"], "--valid-fraction", "0.2")
    assert code == 2 and "give one of them" in err
    code, _, err = run_cli("predict", "--model", head_model, "--input", tmp_path / "texts.xlsx")
    assert code == 2 and "use .csv, .tsv, .jsonl or .txt" in err
    assert not (tmp_path / "out").exists()


def test_the_python_api_refuses_what_it_would_misread(head_model, tmp_path):
    import numpy as np

    from freezeframe.errors import FreezeframeError
    from freezeframe.predict import load_classifier

    classifier = load_classifier(head_model, device="cpu")
    texts = ["camera shot", "a hero actor"]
    expected = classifier.predict(texts)
    assert classifier.predict(t for t in texts) == expected  # a generator is read once, not exhausted
    assert classifier.predict(np.array(texts)) == expected
    with pytest.raises(TypeError, match="not one string"):
        classifier.predict("camera shot")
    with pytest.raises(TypeError, match="item 1 is NoneType"):
        classifier.predict(["camera", None])
    for size in (0, -1):
        with pytest.raises(ValueError, match="batch_size"):
            classifier.predict_proba(texts, batch_size=size)
    with pytest.raises(FreezeframeError, match="--device must be auto, cpu or cuda"):
        load_classifier(head_model, device="tpu")


def test_run_config_fills_defaults_in_copies():
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    train, data = TrainConfig(), DataConfig("x.csv")
    head = RunConfig(data, ModelConfig(freeze="head"), train)
    encoder = RunConfig(data, ModelConfig(freeze="encoder"), train)
    assert (train.lr, train.epochs, data.valid_fraction) == (None, None, None)
    assert (head.train.lr, head.data.valid_fraction) == (1e-2, 0.15)
    assert (encoder.train.lr, encoder.train.epochs, encoder.data.valid_fraction) == (2e-4, 2, 0.0)


def test_an_option_for_the_other_kind_of_model_is_refused_not_ignored():
    from freezeframe.config import ModelConfig

    with pytest.raises(ValueError, match="--encoder-dropout: the baseline has no encoder"):
        ModelConfig(model="baseline", encoder_dropout=0.2)
    with pytest.raises(ValueError, match="an encoder brings its own"):
        ModelConfig(embedding_dim=64)
    with pytest.raises(ValueError, match="an encoder brings its own"):  # the baseline's default, given explicitly
        ModelConfig(vocab_size=1000)
    assert ModelConfig(model="baseline", vocab_size=500, embedding_dim=64).vocab_size == 500
    assert (ModelConfig(model="baseline").vocab_size, ModelConfig(model="baseline").embedding_dim) == (1000, 256)


def test_shares_and_sizes_in_messages_are_not_rounded_to_what_they_are_not():
    from freezeframe.cache import _mib
    from freezeframe.tables import percent

    assert [percent(f) for f in (0.15, 0.999, 0.001)] == ["15%", "99.9%", "0.1%"]
    assert [_mib(n) for n in (2**20 * 1.25, 2**19)] == ["1.2", "0.5"]
    assert _mib(105) != "0.0"


def test_an_interrupted_run_or_a_baseline_given_as_model_is_named(run_cli, tiny_data, tmp_path):
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoint").mkdir(parents=True)
    for command in (["predict", "--model", interrupted, "x"], ["inspect", "--model", interrupted]):
        code, _, err = run_cli(*command)
        assert code == 2 and "holds only an interrupted training run's checkpoint/" in err and "--resume" in err, err
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    (baseline / "freezeframe.json").write_text(json.dumps({"settings": {"model": {"model": "baseline"}}}))
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", baseline, "--out", tmp_path / "out")
    assert code == 2 and "is a from-scratch baseline" in err and "use --model baseline" in err, err
    assert not (tmp_path / "out").exists()
