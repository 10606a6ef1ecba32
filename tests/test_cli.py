"""End to end through the command line: train -> evaluate -> predict -> inspect, on a tiny BERT."""

from __future__ import annotations

import json
import shlex

import pytest

from freezeframe.config import DEFAULT_FREEZE

TRAIN_ARGS = ["--epochs", "3", "--lr", "1e-3", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, tiny_data):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "model"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out), *TRAIN_ARGS])
    return out


def test_train_writes_a_complete_hf_directory(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "freezeframe.json", "tokenizer.json"} <= names
    config = json.loads((trained / "config.json").read_text())
    assert set(config["id2label"].values()) == {"Cinematography", "Characters", "Story"}
    meta = json.loads((trained / "freezeframe.json").read_text())
    assert meta["labels"] == ["Characters", "Cinematography", "Story"]
    assert meta["freeze"]["plan"] == DEFAULT_FREEZE
    assert 0 < meta["freeze"]["trainable_parameters"] < meta["freeze"]["total_parameters"]
    # the default encoder recipe holds nothing out: every row trains for the whole schedule, the last epoch is kept
    assert len(meta["history"]) == 3 and meta["best_epoch"] == 3
    assert meta["history"][0]["valid_loss"] is None and meta["history"][0]["train_loss"] > 0
    assert meta["data"]["valid_rows"] == 0 and meta["data"]["train_rows"] == 60
    assert meta["validation_metrics"] is None
    assert meta["data"]["files"] and meta["versions"]["torch"]
    assert not [p for p in trained.parent.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_a_held_out_share_brings_back_early_stopping_and_validation_metrics(run_cli, tiny_model_dir, tiny_data, tmp_path):
    out = tmp_path / "model"
    code, stdout, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                                "--valid-fraction", "0.15", "--epochs", "8", "--patience", "1", "--lr", "1e-1", "--ensemble", "1",
                                "--quiet")
    assert code == 0, err
    assert "validation metrics (best epoch" in stdout
    meta = json.loads((out / "freezeframe.json").read_text())
    assert set(meta["validation_metrics"]) >= {"accuracy", "macro_f1"}
    assert meta["data"]["valid_rows"] == 9 and meta["data"]["train_rows"] == 51
    history = meta["history"]
    assert all(r["valid_loss"] is not None for r in history)
    best = min(range(len(history)), key=lambda i: history[i]["valid_loss"])
    assert meta["best_epoch"] == best + 1
    assert meta["stopped_early"] == (len(history) < 8) and len(history) <= meta["best_epoch"] + 1


def test_train_without_validation_says_how_to_estimate_accuracy(run_cli, tiny_model_dir, tiny_data, tmp_path):
    code, stdout, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", tmp_path / "m",
                                "--epochs", "1", "--quiet")
    assert code == 0, err
    assert "trained on all 60 rows for 1 epoch" in stdout and "freezeframe compare" in stdout
    # the suggested command runs as printed (the same model, epochs and plan), writing its report elsewhere
    suggested = shlex.split(stdout.split("estimate accuracy with:")[1].split(" (cross-validation)")[0])
    assert suggested[:2] == ["freezeframe", "compare"] and "--epochs" in suggested and str(tiny_model_dir) in suggested
    suggested[suggested.index("--out") + 1] = str(tmp_path / "report")
    code, _, err = run_cli(*suggested[1:], "--quiet")
    assert code == 0, err

    # a plan compare cannot name, or a setting it does not carry: a validation split instead
    for extra in (["--freeze", "bert.encoder.layer.3.*"], ["--lr", "1e-3"]):
        code, stdout, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out",
                                    tmp_path / "other", "--overwrite", "--epochs", "1", "--quiet", *extra)
        assert code == 0 and "freezeframe compare" not in stdout and "--valid-fraction 0.15" in stdout, err
        # a plan without classifier.* trains against a random head: said
        assert ("leaves the classifier frozen at its random initialisation" in err) == (extra[0] == "--freeze"), err


def test_evaluate_json_has_the_documented_keys(run_cli, trained, tiny_data, tmp_path):
    code, out, err = run_cli("evaluate", "--model", trained, "--data", tiny_data["test"], "--json", "--plots", tmp_path)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert set(metrics) == {"accuracy", "macro_f1", "macro_precision", "macro_recall", "per_class", "labels",
                            "confusion_matrix", "n"}
    assert metrics["n"] == 18 and sum(map(sum, metrics["confusion_matrix"])) == 18
    assert set(metrics["per_class"]["Story"]) == {"precision", "recall", "f1", "support"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000


def test_evaluate_table(run_cli, trained, tiny_data):
    code, out, _ = run_cli("evaluate", "--model", trained, "--data", tiny_data["test"])
    assert code == 0 and "macro F1" in out and "confusion matrix" in out


def test_predict_arguments_and_file_keep_order(run_cli, trained, tmp_path):
    texts = ["the camera shot", "a villain role", "plot twist ending", "the camera shot"]
    code, out, err = run_cli("predict", "--model", trained, *texts)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == texts
    assert all(set(r["scores"]) == {"Characters", "Cinematography", "Story"} for r in rows)
    assert all(abs(sum(r["scores"].values()) - 1) < 1e-4 for r in rows)
    assert rows[0] == rows[3]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, out_file, _ = run_cli("predict", "--model", trained, "--input", source)
    assert code == 0 and out_file == out


def test_predict_output_file_keeps_the_input_columns(run_cli, trained, tmp_path):
    import pandas as pd

    source = tmp_path / "reviews.csv"
    source.write_text('id,review,note\n7,"the camera shot, lit well",a\n3,a villain role,\n9,plot twist ending,c\n',
                      encoding="utf-8")
    before = source.read_bytes()
    code, out, _ = run_cli("predict", "--model", trained, "--input", source)
    expected = [json.loads(line) for line in out.splitlines()]
    for name in ("labelled.csv", "labelled.tsv", "labelled.jsonl"):
        target = tmp_path / "out" / name
        code, out, err = run_cli("predict", "--model", trained, "--input", source, "--output", target)
        assert code == 0 and out == "" and f"wrote 3 predictions to {target}" in err
        if name.endswith(".jsonl"):
            records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
        else:
            frame = pd.read_csv(target, sep="," if name.endswith(".csv") else "\t", dtype=str, keep_default_na=False)
            records = frame.to_dict("records")
        assert [r["id"] for r in records] == ["7", "3", "9"] and records[0]["review"] == "the camera shot, lit well"
        assert [r["predicted_label"] for r in records] == [row["label"] for row in expected]
        for record, row in zip(records, expected):
            for label, score in row["scores"].items():
                assert abs(float(record[f"score_{label}"]) - score) < 1e-6
    assert source.read_bytes() == before
    code, out, err = run_cli("predict", "--model", trained, "an argument text", "--output", tmp_path / "args.jsonl")
    assert code == 0 and json.loads((tmp_path / "args.jsonl").read_text())["text"] == "an argument text"


def test_predict_output_of_argument_texts_and_a_file_shares_the_files_columns(run_cli, trained, tmp_path):
    """Argument texts fill the file's text column, so every row has the same columns in the same place;
    a JSON Lines file's values come back as JSON had them."""
    source = tmp_path / "reviews.jsonl"
    rows = [{"id": 7, "review": "the camera shot", "ok": True, "tags": ["a"], "weight": 1.5},
            {"review": "a villain role", "id": None}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    target = tmp_path / "out.jsonl"
    code, _, err = run_cli("predict", "--model", trained, "an argument text", "--input", source, "--output", target)
    assert code == 0, err
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [list(r)[:5] for r in records] == [["id", "review", "ok", "tags", "weight"]] * 3
    assert [r["review"] for r in records] == ["an argument text", "the camera shot", "a villain role"]
    assert records[0]["id"] is None and {key: records[1][key] for key in rows[0]} == rows[0]
    target = tmp_path / "out.csv"
    code, _, err = run_cli("predict", "--model", trained, "an argument text", "--input", source, "--output", target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert code == 0 and lines[0].startswith("id,review,ok,tags,weight,predicted_label,score_")
    assert lines[1].startswith(",an argument text,,,,") and lines[2].startswith('7,the camera shot,true,"[""a""]",1.5,')


def test_predict_writes_an_argument_that_is_not_utf8_as_the_model_reads_it(run_cli, trained, tmp_path):
    """Before: bytes that are not UTF-8 in an argument (a Latin-1 terminal: os.fsdecode gives lone surrogates)
    stopped --output with "'utf-8' codec can't encode character '\\udce9' ...", and stdout carried the raw byte."""
    import os

    text = os.fsdecode(b"caf\xe9 camera")
    code, out, err = run_cli("predict", "--model", trained, text, "--output", tmp_path / "out.jsonl")
    assert code == 0, err
    assert json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8"))["text"] == "caf\ufffd camera"
    code, out, err = run_cli("predict", "--model", trained, text)
    assert code == 0 and json.loads(out)["text"] == "caf\ufffd camera"


@pytest.mark.parametrize(("name", "extra", "message"), [
    ("taken.csv", [], "exists; pass --overwrite"),
    ("reviews.csv", ["--overwrite"], "is the input file"),
    ("out.parquet", [], "unsupported file type '.parquet'"),
    ("folder", [], "is a directory"),
    ("clash.csv", ["--input", "labelled.csv"], "already has a column 'predicted_label'"),
])
def test_predict_output_refusals_leave_files_alone(run_cli, trained, tmp_path, name, extra, message):
    (tmp_path / "reviews.csv").write_text("review\nthe camera shot\n", encoding="utf-8")
    (tmp_path / "labelled.csv").write_text("review,predicted_label\nthe camera shot,Story\n", encoding="utf-8")
    (tmp_path / "taken.csv").write_text("keep me\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    source = [] if "--input" in extra else ["--input", tmp_path / "reviews.csv"]
    extra = [tmp_path / e if e.endswith(".csv") else e for e in extra]
    code, out, err = run_cli("predict", "--model", trained, *source, *extra, "--output", tmp_path / name)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_predict_refuses_an_output_under_a_file_before_any_work(run_cli, trained, tmp_path, monkeypatch):
    """Before: `--output notes.csv/out.csv` classified every text, then stopped with "cannot create notes.csv: File
    exists"."""
    (tmp_path / "notes.csv").write_text("mine\n", encoding="utf-8")
    monkeypatch.setattr("freezeframe.predict.load_predictor",
                        lambda *args, **kwargs: pytest.fail("loaded the model before checking --output"))
    code, out, err = run_cli("predict", "--model", trained, "the camera", "--output", tmp_path / "notes.csv" / "out.csv")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "notes.csv is a file, not a directory" in err
    assert (tmp_path / "notes.csv").read_text(encoding="utf-8") == "mine\n"


def test_predict_refuses_a_clashing_input_column_before_classifying(run_cli, trained, tmp_path, monkeypatch):
    """Before: an input column named like an output column (here score_Story) was refused after every text of the
    file had been classified."""
    source = tmp_path / "scored.csv"
    source.write_text("review,score_Story\nthe camera shot,0.5\n", encoding="utf-8")
    monkeypatch.setattr("freezeframe.predict.Classifier.predict",
                        lambda *args, **kwargs: pytest.fail("classified before checking the columns"))
    code, out, err = run_cli("predict", "--model", trained, "--input", source, "--output", tmp_path / "out.csv")
    assert code == 2 and out == "" and "already has a column 'score_Story'" in err, err
    assert not (tmp_path / "out.csv").exists()


def test_inspect_counts_match_the_saved_model(run_cli, trained, tiny_model_dir):
    meta = json.loads((trained / "freezeframe.json").read_text())
    code, out, _ = run_cli("inspect", "--model", tiny_model_dir)
    assert code == 0
    assert "layer 3" in out and "pooler" in out and "classifier" in out
    assert f"{meta['freeze']['trainable_parameters']:,}" in out
    assert f"{meta['freeze']['total_parameters']:,}" in out


def test_inspect_shows_each_blocks_learning_rate_as_training_gets_it(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """--lr-decay and --head-lr were recorded as settings only: neither inspect nor freezeframe.json said which rate
    each layer trained at. Both now show the optimizer's own rate per trainable block."""
    code, out, err = run_cli("inspect", "--model", tiny_model_dir, "--freeze", "last-2", "--lr", "1e-3", "--lr-decay",
                             "0.5", "--head-lr", "1e-2")
    rows = {line[:12].strip(): line.split() for line in out.splitlines()}
    assert code == 0 and "learning rate" in out, err
    assert rows["layer 3"][-1] == "0.001" and rows["layer 2"][-1] == "0.0005" and rows["classifier"][-1] == "0.01"
    assert rows["layer 1"][-1] == "frozen" and rows["embeddings"][-1] == "frozen"
    code, out, _ = run_cli("inspect", "--model", tiny_model_dir, "--freeze", "head")
    assert code == 0 and out.split("classifier")[1].split()[2] == "0.01"  # the head plan's own default rate
    model = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", model, "--freeze",
                           "last-2", "--lr-decay", "0.5", "--epochs", "1", "--ensemble", "1", "--quiet")
    assert code == 0, err
    blocks = {b["block"]: b.get("lr") for b in json.loads((model / "freezeframe.json").read_text())["freeze"]["blocks"]}
    assert blocks["layer 3"] == pytest.approx(2e-4) and blocks["layer 2"] == pytest.approx(1e-4) and blocks["layer 1"] is None
    code, out, _ = run_cli("inspect", "--model", model)
    assert code == 0 and [line.split()[-1] for line in out.splitlines() if line.startswith("layer 2")] == ["0.0001"]
    code, _, err = run_cli("inspect", "--model", model, "--lr-decay", "0.8")
    assert code == 2 and "--lr-decay: " in err and ("is trained; inspect shows the rates it trained its plan (last-2) at, "
                                                    "so drop it (or name another --freeze") in err, err
    # another plan than its own: the rates train would give it (its defaults, or the options given)
    code, out, _ = run_cli("inspect", "--model", model, "--freeze", "head")
    assert code == 0 and out.split("classifier")[1].split()[2] == "0.01"
    code, out, err = run_cli("inspect", "--model", model, "--freeze", "last-2", "--lr", "1e-3", "--lr-decay", "0.5")
    assert code == 2 and "--lr, --lr-decay: " in err  # last-2 is its own plan
    code, out, err = run_cli("inspect", "--model", model, "--freeze", "last-3", "--lr", "1e-3", "--lr-decay", "0.5")
    rows = {line[:12].strip(): line.split()[-1] for line in out.splitlines() if line.strip()}
    assert code == 0 and (rows["layer 3"], rows["layer 1"], rows["layer 0"]) == ("0.001", "0.00025", "frozen"), err


def test_pipeline_loads_a_cls_model_and_agrees(tmp_path, tiny_model_dir, tiny_data):
    """A cls-pooled model is a plain BertForSequenceClassification (mean pooling: tests/test_pooling.py)."""
    from transformers import pipeline

    from freezeframe.cli import main
    from freezeframe.predict import load_classifier

    trained = tmp_path / "cls"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(trained),
          "--pooling", "cls", "--freeze", "last-1", *TRAIN_ARGS])
    assert "auto_map" not in __import__("json").loads((trained / "config.json").read_text())

    texts = ["the camera shot lighting", "a hero actor", "the plot ending twist", "very good film",
             " ".join(["the camera shot and the villain role and the plot"] * 20)]  # past 128 tokens and 160 positions
    classify = pipeline("text-classification", model=str(trained), device="cpu", truncation=True)
    theirs = [r["label"] for r in classify(texts)]
    ours = [r["label"] for r in load_classifier(trained, device="cpu").predict(texts)]
    assert theirs == ours


def test_same_seed_gives_same_metrics(tiny_model_dir, tiny_data):
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    def run():
        config = RunConfig(DataConfig(tiny_data["train"]), ModelConfig(str(tiny_model_dir), freeze="last-2"),
                           TrainConfig(lr=1e-3, epochs=2, seed=3, show_progress=False))
        return train_classifier(config)

    first, second = run(), run()
    assert first.metrics == second.metrics
    assert first.loop.history[-1].train_loss == second.loop.history[-1].train_loss


def test_training_and_prediction_stay_lean(tiny_model_dir, tiny_data, tmp_path):
    """`freezeframe train` and `predict` on a BERT checkpoint pay for no import they do not use:
    not transformers (5 s on 2 cores: bert.py runs the model), scikit-learn, scipy or matplotlib, nor
    torch's compiler (torch._dynamo, 1 s: see optim.py) or sympy (0.3 s: see bert.from_state)."""
    import subprocess
    import sys

    out = tmp_path / "model"
    code = ("import sys; from freezeframe.cli import main\n"
            f"main(['train', '--train', {str(tiny_data['train'])!r}, '--model', {str(tiny_model_dir)!r}, '--out', {str(out)!r},"
            " '--epochs', '1', '--quiet'])\n"
            f"main(['predict', '--model', {str(out)!r}, 'the camera shot'])\n"
            "print(sorted(m for m in ('transformers', 'sklearn', 'scipy', 'matplotlib', 'torch._dynamo', 'sympy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_dropout_and_label_smoothing_options_are_applied_and_recorded(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    import torch

    from freezeframe.encoder import load_pretrained

    for backend in ("freezeframe", "transformers"):
        monkeypatch.setenv("FREEZEFRAME_BERT", backend)
        model, _ = load_pretrained(str(tiny_model_dir), ["a", "b"], "mean", encoder_dropout=0.0)
        rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        assert len(rates) >= 9 and set(rates) == {0.0}, backend  # embeddings, 2 per layer, classifier
        model, _ = load_pretrained(str(tiny_model_dir), ["a", "b"], "mean", dropout=0.3, encoder_dropout=0.0)
        assert model.hf.dropout.p == 0.3 and model.base.embeddings.dropout.p == 0.0
    monkeypatch.delenv("FREEZEFRAME_BERT")
    losses = {}
    for smoothing in ("0", "0.3"):
        out = tmp_path / smoothing
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                               "--epochs", "1", "--encoder-dropout", "0", "--label-smoothing", smoothing, "--ensemble", "1", "--quiet")
        assert code == 0, err
        meta = json.loads((out / "freezeframe.json").read_text())
        assert meta["settings"]["model"]["encoder_dropout"] == 0.0
        assert meta["settings"]["train"]["label_smoothing"] == float(smoothing)
        config = json.loads((out / "config.json").read_text())
        assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0
        losses[smoothing] = meta["history"][0]["train_loss"]
    assert losses["0"] != losses["0.3"]
    for option in ("--label-smoothing", "--encoder-dropout"):
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", tmp_path / "bad",
                               option, "1.5")
        assert code != 0 and len(err.strip().splitlines()) == 1 and "must be in [0, 1)" in err
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "No such option: --bogus"),
    (["bogus"], "No such command 'bogus'"),
    (["train", "--train", "x.csv", "--out", "o", "--epochs", "two"], "Invalid value for '--epochs'"),
    (["predict"], "Missing option '--model'"),
])
def test_usage_errors_are_one_line_with_exit_code_2(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "internal error" not in err


@pytest.mark.parametrize(("option", "suggested"), [
    ("--bogus", None),  # click compared "--bogus" with "--out" dashes and all, and offered it
    ("--ouut", "(Possible options: --out)"),
    ("--trian", "(Possible options: --train)"),
    ("--seeds", "(Possible options: --seed)"),
])
def test_an_unknown_option_is_matched_by_its_name_without_dashes(run_cli, option, suggested):
    code, _, err = run_cli("train", "--train", "ok.csv", "--out", "o", option)
    assert code == 2 and f"No such option: {option}" in err and len(err.strip().splitlines()) == 1
    if suggested is None:
        assert "Possible options" not in err
    else:
        assert suggested in err


def test_version_and_bare_command(run_cli):
    from freezeframe import __version__

    assert run_cli("--version") == (0, f"freezeframe {__version__}\n", "")
    code, _, err = run_cli()
    assert code == 2 and "Commands:" in err and "train" in err


def test_predict_speed_names_a_missing_model_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "predict_speed.py"
    done = subprocess.run([sys.executable, str(script), "--model", str(tmp_path / "missing"), "--n", "10"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"predict_speed.py: error: model directory not found: {tmp_path / 'missing'}"


def test_predict_reads_standard_input_and_names_it(trained, run_cli, monkeypatch):
    """`--input -` reads one text per line from standard input; its problems name it as standard input, not '-'."""
    import io
    import json as json_module
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"the camera shot\n\nthe plot ending\n")))
    code, out, err = run_cli("predict", "--model", trained, "--input", "-")
    assert code == 0, err
    assert [json_module.loads(line)["text"] for line in out.splitlines()] == ["the camera shot", "the plot ending"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9 camera\n")))
    code, out, err = run_cli("predict", "--model", trained, "--input", "-")
    assert code == 2 and err.startswith("freezeframe: error: standard input is not valid UTF-8"), err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n  \n")))
    code, out, err = run_cli("predict", "--model", trained, "--input", "-")
    assert code == 2 and "standard input: no texts to classify" in err, err


def test_a_text_that_starts_with_a_dash_gets_a_hint(trained, run_cli):
    code, _, err = run_cli("predict", "--model", trained, "-great camera")
    assert code == 2 and "a text that starts with '-' goes after '--'" in err, err
    code, out, err = run_cli("predict", "--model", trained, "--", "-great camera")
    assert code == 0 and json.loads(out)["text"] == "-great camera", err


def test_a_confusion_matrix_too_wide_for_a_terminal_numbers_its_columns():
    """Twelve classes named 'Class number N' made lines of 220 characters that wrapped into an unreadable grid."""
    from freezeframe.evaluate import MATRIX_WIDTH, compute_metrics, format_metrics

    few = format_metrics(compute_metrics([0, 1, 2], [0, 1, 1], ["Characters", "Cinematography", "Story"]))
    assert "confusion matrix (rows: true, columns: predicted)\n" in few and "  Characters  Cinematography           Story\n" in few
    labels = [f"Class number {i}" for i in range(12)]
    text = format_metrics(compute_metrics(list(range(12)), [*range(11), 0], labels))
    matrix = text[text.index("confusion matrix"):].splitlines()
    assert matrix[0] == "confusion matrix (rows: true, columns: predicted, numbered as the rows)"
    assert matrix[1].split() == [str(i) for i in range(1, 13)]
    assert matrix[2].startswith(" 1 Class number 0 ") and matrix[13].startswith("12 Class number 11 ")
    assert matrix[13].split()[-12:] == ["1"] + ["0"] * 11  # the last class, predicted as the first
    assert all(len(line) <= MATRIX_WIDTH for line in matrix)


def test_train_help_names_the_defaults_of_lr_epochs_and_dropout(run_cli):
    """--lr, --epochs and --dropout default differently for head and the baseline; --help names each value."""
    code, out, _ = run_cli("train", "--help")
    assert code == 0
    out = " ".join(out.split())  # the help wraps its lines
    assert "Peak learning rate (default 0.0002; --freeze head: 0.01; the baseline: 0.01)" in out
    assert "Length of the schedule (default 2; --freeze head: 60; the baseline: 60;" in out
    assert "the encoder's hidden dropout; the baseline's 0.5" in out
