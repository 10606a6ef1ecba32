"""ONNX export: parity with torch (cls and mean pooling, baseline), int8, the CLI and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_rows

TRAIN_ARGS = ["--epochs", "2", "--lr", "1e-3", "--quiet"]
TEXTS = [text for text, _ in make_rows(4, seed=7)] + ["", "camera", "the plot " * 80]


def _train(tmp_path_factory, tiny_data, *args: str):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("export") / "model"
    main(["train", "--train", str(tiny_data["train"]), "--out", str(out), *TRAIN_ARGS, *args])
    return out


@pytest.fixture(scope="module")
def cls_model(tmp_path_factory, tiny_model_dir, tiny_data):
    """A tiny BERT with [CLS] pooling, exported with --quantize int8 through the CLI."""
    from freezeframe.cli import main

    out = _train(tmp_path_factory, tiny_data, "--model", str(tiny_model_dir), "--pooling", "cls", "--freeze", "last-1")
    try:
        main(["export", "--model", str(out), "--format", "onnx", "--quantize", "int8"])
    except SystemExit as done:
        assert done.code == 0
    return out


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory, tiny_model_dir, tiny_data):
    return _train(tmp_path_factory, tiny_data, "--model", str(tiny_model_dir), "--pooling", "mean")


def _torch_logits(classifier, texts):
    from freezeframe.onnx_backend import padded_batches

    ids, _ = classifier.tokenizer.encode(texts, classifier.max_length)
    out = np.zeros((len(texts), len(classifier.labels)), dtype=np.float32)
    with torch.inference_mode():
        for indices, input_ids, mask in padded_batches(ids, 4, classifier.tokenizer.pad_id):
            out[indices] = classifier.model(torch.from_numpy(input_ids), torch.from_numpy(mask)).numpy()
    return out


def _onnx_logits(onnx_classifier, texts):
    from freezeframe.onnx_backend import padded_batches, run_session

    ids, _ = onnx_classifier.tokenizer.encode(texts, onnx_classifier.max_length)
    out = np.zeros((len(texts), len(onnx_classifier.labels)), dtype=np.float32)
    for indices, input_ids, mask in padded_batches(ids, 4, onnx_classifier.tokenizer.pad_id):
        out[indices] = run_session(onnx_classifier.session, input_ids, mask)
    return out


def _assert_parity(model_dir):
    from freezeframe.onnx_backend import load_onnx_classifier
    from freezeframe.predict import load_classifier

    ours = load_classifier(model_dir, device="cpu")
    theirs = load_onnx_classifier(model_dir)
    assert theirs.labels == ours.labels
    torch_logits, onnx_logits = _torch_logits(ours, TEXTS), _onnx_logits(theirs, TEXTS)
    assert np.abs(torch_logits - onnx_logits).max() < 1e-4
    assert [r["label"] for r in ours.predict(TEXTS)] == [r["label"] for r in theirs.predict(TEXTS)]
    assert np.allclose(ours.predict_proba(TEXTS, 3), theirs.predict_proba(TEXTS, 5), atol=1e-5)


def test_export_writes_the_documented_directory(cls_model):
    export_dir = cls_model / "onnx"
    assert {"model.onnx", "model.int8.onnx", "export.json", "tokenizer.json", "freezeframe.json"} <= {
        p.name for p in export_dir.iterdir()}
    meta = json.loads((export_dir / "export.json").read_text())
    assert meta["labels"] == ["Characters", "Cinematography", "Story"]
    assert meta["inputs"].keys() == {"input_ids", "attention_mask"} and meta["quantize"] == "int8"
    assert meta["parity"]["fp32_max_abs_logit_diff"] < 1e-4
    assert not [p for p in cls_model.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_fp32_parity_cls_pooling(cls_model):
    _assert_parity(cls_model)


def test_fp32_parity_mean_pooling_and_export_on_first_use(mean_model, run_cli):
    code, out, err = run_cli("predict", "--model", mean_model, "--backend", "onnx", *TEXTS[:4])
    assert code == 0, err
    assert "exporting it now" in err and (mean_model / "onnx" / "model.onnx").is_file()
    code, torch_out, _ = run_cli("predict", "--model", mean_model, *TEXTS[:4])
    assert [json.loads(x)["label"] for x in out.splitlines()] == [json.loads(x)["label"] for x in torch_out.splitlines()]
    _assert_parity(mean_model)


@pytest.fixture(scope="module")
def baseline_model(tmp_path_factory, tiny_data):
    return _train(tmp_path_factory, tiny_data, "--model", "baseline", "--epochs", "2")


def test_baseline_exports_with_parity(baseline_model):
    from freezeframe.export import ExportConfig, export_model

    export_model(ExportConfig(baseline_model))
    _assert_parity(baseline_model)


def test_a_baseline_export_is_recognized_as_freezeframes_without_its_recorded_list(baseline_model, tmp_path):
    """A baseline's export holds word_tokenizer.json, which the export layout did not list: with export.json's list of
    the files written unreadable (damaged, or hand-edited), --overwrite called it a file freezeframe did not write."""
    import shutil

    from freezeframe.export import ExportConfig, export_model
    from freezeframe.layouts import CONTENTS_KEY, EXPORT_LAYOUT, EXPORT_META

    out = tmp_path / "export"
    export_model(ExportConfig(baseline_model, out=out))
    assert (out / "word_tokenizer.json").is_file()
    meta = json.loads((out / EXPORT_META).read_text())
    del meta[CONTENTS_KEY]
    (out / EXPORT_META).write_text(json.dumps(meta))
    assert EXPORT_LAYOUT.foreign(out) == []
    shutil.rmtree(out)


def test_int8_runs_and_mostly_agrees(cls_model, run_cli):
    from freezeframe.onnx_backend import load_onnx_classifier
    from freezeframe.predict import load_classifier

    int8 = load_onnx_classifier(cls_model, "int8")
    assert int8.path.name == "model.int8.onnx"
    probabilities = int8.predict_proba(TEXTS)
    assert probabilities.shape == (len(TEXTS), 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    torch_labels = load_classifier(cls_model, device="cpu").predict_proba(TEXTS).argmax(1)
    assert (probabilities.argmax(1) == torch_labels).mean() >= 0.8
    code, out, err = run_cli("predict", "--model", cls_model, "--backend", "onnx", "--quantize", "int8", "camera shot")
    assert code == 0, err
    assert json.loads(out)["label"] in {"Characters", "Cinematography", "Story"}


def test_single_file_export_and_export_dir_as_model(cls_model, baseline_model, run_cli, tmp_path):
    import onnxruntime

    # The baseline exports in seconds; the single-file path is the same for every model kind.
    code, out, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx")
    assert code == 0, err
    session = onnxruntime.InferenceSession(str(tmp_path / "graph.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "logits"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.onnx"]
    code, out, err = run_cli("predict", "--model", cls_model / "onnx", "--backend", "onnx", "camera shot")
    assert code == 0, err
    code, out, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx")
    assert code == 2 and "already exists; pass --overwrite" in err
    assert run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx", "--overwrite")[0] == 0
    for backend in ("onnx", "torch"):  # the graph alone has no labels or tokenizer: it is for onnxruntime itself
        code, out, err = run_cli("predict", "--model", tmp_path / "graph.onnx", "--backend", backend, "camera shot")
        assert code == 2 and out == "" and "graph.onnx is a single ONNX graph (for onnxruntime itself)" in err
    code, out, err = run_cli("predict", "--model", cls_model / "onnx", "camera shot")
    assert out == ""
    assert code == 2 and "is an ONNX export (no torch weights); add --backend onnx" in err


def test_a_missing_int8_graph_names_the_command_that_makes_it(baseline_model, run_cli, tmp_path):
    exported = tmp_path / "exported"
    assert run_cli("export", "--model", baseline_model, "--out", exported)[0] == 0
    code, out, err = run_cli("predict", "--model", exported, "--backend", "onnx", "--quantize", "int8", "camera")
    assert code == 2 and out == ""
    assert f"freezeframe export --model {baseline_model.resolve()} --format onnx --out {exported} --quantize int8" in err


@pytest.mark.parametrize("args, message", [
    (["--quantize", "int8"], "add --backend onnx"),
    (["--backend", "tensorflow"], "--backend: expected one of torch, onnx"),
    (["--backend", "onnx", "--quantize", "int4"], "--quantize: expected one of none, int8"),
])
def test_predict_backend_errors_are_one_line(cls_model, run_cli, args, message):
    code, out, err = run_cli("predict", "--model", cls_model, *args, "camera")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_export_errors_are_one_line(cls_model, run_cli, tmp_path):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    for args, message in [
        (["--model", cls_model, "--format", "tflite"], "format: expected one of onnx"),
        (["--model", cls_model, "--quantize", "int4"], "quantize: expected one of none, int8"),
        (["--model", tmp_path / "missing"], "model directory not found"),
        (["--model", cls_model, "--out", tmp_path / "occupied"], "is not an export directory"),
    ]:
        code, _, err = run_cli("export", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "occupied" / "notes.txt").read_text() == "mine"


def test_stale_or_missing_export_is_refused(cls_model, tmp_path):
    import shutil

    from freezeframe.errors import FreezeframeError
    from freezeframe.onnx_backend import load_onnx_classifier

    copy = tmp_path / "model"
    shutil.copytree(cls_model, copy)
    meta_path = copy / "onnx" / "export.json"
    meta = json.loads(meta_path.read_text())
    meta["source"]["weights_sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FreezeframeError, match="other weights"):
        load_onnx_classifier(copy)
    shutil.rmtree(copy / "onnx")
    with pytest.raises(FreezeframeError, match="not found; create it with"):
        load_onnx_classifier(copy, export_if_missing=False)


@pytest.mark.parametrize(("body", "message"), [
    ("[]", "export.json is damaged (not a JSON object)"),
    ('{"labels": 5, "source": 5}', "export.json lists no labels"),
    ('{"source": 5}', None),  # the source only tells a stale export; the labels come from freezeframe.json
])
def test_an_export_json_of_the_wrong_shape_is_one_line(cls_model, run_cli, tmp_path, body, message):
    """Before: valid JSON of another shape in a hand-edited export.json was an internal error (AttributeError,
    TypeError) in predict --backend onnx."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(cls_model, copy)
    (copy / "onnx" / "export.json").write_text(body)
    code, out, err = run_cli("predict", "--model", copy, "--backend", "onnx", "the camera")
    if message is None:
        assert code == 0 and json.loads(out)["label"], err
    else:
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_opset_23_exports_a_transformer_with_parity(cls_model, run_cli, tmp_path):
    """Before: onnxruntime's Attention (opset 23) refused the [batch, 1, 1, sequence] mask: an internal error."""
    import onnxruntime

    from freezeframe.predict import load_classifier

    code, _, err = run_cli("export", "--model", cls_model, "--out", tmp_path / "g23.onnx", "--opset", "23")
    assert code == 0, err
    session = onnxruntime.InferenceSession(str(tmp_path / "g23.onnx"), providers=["CPUExecutionProvider"])
    ours = load_classifier(cls_model, device="cpu")
    theirs = _onnx_logits(type("Graph", (), {"session": session, "tokenizer": ours.tokenizer, "labels": ours.labels,
                                             "max_length": ours.max_length}), TEXTS)
    assert np.abs(_torch_logits(ours, TEXTS) - theirs).max() < 1e-4


@pytest.mark.parametrize("failing", ["run_session", "quantize_int8"])
def test_exporter_and_onnxruntime_failures_are_one_line(baseline_model, run_cli, tmp_path, monkeypatch, failing):
    def fail(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code\nsecond line of a log dump")

    monkeypatch.setattr(f"freezeframe.export.{failing}", fail)
    code, out, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx", "--quantize", "int8")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "failed: [ONNXRuntimeError] : 1 : FAIL : Non-zero status code" in err and "internal error" not in err
    assert not list(tmp_path.iterdir())


def test_exporter_failures_lose_their_terminal_colour_codes(baseline_model, run_cli, tmp_path, monkeypatch):
    def fail(*args):
        raise RuntimeError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m of exporting")

    monkeypatch.setattr("freezeframe.export.export_graph", fail)
    code, _, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx")
    assert code == 2 and "\x1b" not in err and "torch.export. This is step 1/3 of exporting" in err, err


def test_ctrl_c_inside_the_exporter_is_an_interrupt_not_a_failure(baseline_model, run_cli, tmp_path, monkeypatch):
    """Before: a Ctrl-C during torch.export's first import of torch._dynamo surfaced as torch's TorchExportError
    (from an AttributeError of the half-imported module), reported as "ONNX export ... failed", exit 2."""
    def interrupted_inside_torch(*args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            try:
                raise AttributeError("module 'torch._dynamo' has no attribute 'exc'")
            except AttributeError as err:
                raise RuntimeError("Failed to export the model with torch.export.") from err

    monkeypatch.setattr("freezeframe.export.export_graph", interrupted_inside_torch)
    code, out, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "graph.onnx")
    assert code == 130 and out == "" and err.strip() == "freezeframe: interrupted", err
    assert not list(tmp_path.iterdir())


def test_a_graph_file_that_cannot_be_written_is_refused_before_any_work(baseline_model, run_cli, tmp_path, monkeypatch):
    """Before: internal errors (IsADirectoryError, FileExistsError, FileNotFoundError) after the export, and an
    upper-case suffix made a directory named like a graph."""
    monkeypatch.setattr("freezeframe.export.export_graph", lambda *a: pytest.fail("exported before the path was checked"))
    (tmp_path / "d.onnx").mkdir()
    (tmp_path / "README.md").write_text("mine")
    cases = [([tmp_path / "d.onnx"], "d.onnx is a directory; choose a file path"),
             ([tmp_path / "d.onnx", "--overwrite"], "d.onnx is a directory; choose a file path"),
             ([tmp_path / "README.md" / "x.onnx"], "README.md is a file, not a directory"),
             ([tmp_path / "README.md" / "x.ONNX"], "README.md is a file, not a directory")]
    if Path("/proc/self").is_dir():
        cases.append((["/proc/x.onnx"], "--out /proc/x.onnx: cannot write in /proc"))
    for args, message in cases:
        code, _, err = run_cli("export", "--model", baseline_model, "--out", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "README.md").read_text() == "mine" and not any((tmp_path / "d.onnx").iterdir())
    monkeypatch.undo()
    code, out, err = run_cli("export", "--model", baseline_model, "--out", tmp_path / "up.ONNX")
    assert code == 0, err
    assert (tmp_path / "up.ONNX").is_file() and "run it with" not in out


def _source_digest(export_dir):
    return json.loads((export_dir / "export.json").read_text())["source"]["weights_sha256"]


def test_reexport_never_deletes_user_files_nor_replaces_another_models_export_unasked(cls_model, baseline_model, run_cli,
                                                                                     tmp_path):
    """Before: exit 0, the user's file deleted and the snapshot silently replaced by the other model's."""
    from freezeframe.onnx_backend import weights_digest

    exported = tmp_path / "exp"
    assert run_cli("export", "--model", baseline_model, "--out", exported)[0] == 0
    (exported / "mynotes.txt").write_text("mine")
    code, _, err = run_cli("export", "--model", cls_model, "--out", exported, "--overwrite")
    assert code == 2 and "holds files freezeframe did not write (mynotes.txt)" in err
    assert (exported / "mynotes.txt").read_text() == "mine"
    (exported / "mynotes.txt").unlink()
    code, _, err = run_cli("export", "--model", cls_model, "--out", exported)
    assert code == 2 and "holds the export of other weights" in err and "--overwrite" in err
    assert _source_digest(exported) == weights_digest(baseline_model)
    assert run_cli("export", "--model", baseline_model, "--out", exported)[0] == 0  # the same weights: regenerated
    code, _, err = run_cli("export", "--model", cls_model, "--out", exported, "--overwrite")
    assert code == 0, err
    assert _source_digest(exported) == weights_digest(cls_model)
    code, _, err = run_cli("export", "--model", cls_model, "--out", cls_model)
    assert code == 2 and "is a model directory (freezeframe train), not an export directory" in err


def test_reexport_keeps_the_int8_graph(baseline_model, run_cli, tmp_path):
    """Before: re-exporting without --quantize int8 deleted model.int8.onnx (an export directory and MODEL/onnx)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(baseline_model, model)
    shutil.rmtree(model / "onnx", ignore_errors=True)
    for out in ([], ["--out", tmp_path / "exp"]):
        assert run_cli("export", "--model", model, "--quantize", "int8", *out)[0] == 0
        code, stdout, err = run_cli("export", "--model", model, *out)
        assert code == 0, err
        export_dir = out[1] if out else model / "onnx"
        assert (export_dir / "model.int8.onnx").is_file() and "model.int8.onnx" in stdout
        assert json.loads((export_dir / "export.json").read_text())["quantize"] == "int8"
    (model / "onnx" / "notes.txt").write_text("mine")
    code, _, err = run_cli("export", "--model", model)
    assert code == 2 and "notes.txt" in err and (model / "onnx" / "notes.txt").is_file()
    assert err.startswith("freezeframe: error: the model's export directory "), err  # no --out was given


@pytest.mark.parametrize("command, extra, advice", [
    ("export", [], "to export it again, pass the model directory it was exported from"),
    ("inspect", [], "inspect the model directory it was exported from"),
])
def test_torch_commands_name_an_export_directory(baseline_model, tiny_data, run_cli, command, extra, advice):
    """Before: transformers' 'Error no file named model.safetensors, or pytorch_model.bin, found in directory'."""
    export_dir = baseline_model / "onnx"
    if not (export_dir / "export.json").is_file():
        assert run_cli("export", "--model", baseline_model)[0] == 0
    extra = [tiny_data["test"] if a == "DATA" else a for a in extra]
    code, out, err = run_cli(command, "--model", export_dir, *extra)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"{export_dir} is an ONNX export (no torch weights); {advice} ({baseline_model.resolve()})" in err


def test_evaluate_scores_the_onnx_graphs(cls_model, tiny_data, run_cli, tmp_path):
    """Before: evaluate had no --backend, so an export directory (and the int8 graph) could not be scored at all."""
    export_dir = tmp_path / "exported"
    assert run_cli("export", "--model", cls_model, "--quantize", "int8", "--out", export_dir)[0] == 0
    scores = {}
    for name, args in {"torch": [cls_model], "onnx": [export_dir, "--backend", "onnx"],
                       "int8": [export_dir, "--backend", "onnx", "--quantize", "int8"]}.items():
        code, out, err = run_cli("evaluate", "--model", *args, "--data", tiny_data["test"], "--json")
        assert code == 0, err
        scores[name] = json.loads(out)
    assert scores["onnx"] == scores["torch"] and scores["int8"]["n"] == scores["torch"]["n"]
    code, out, err = run_cli("evaluate", "--model", export_dir, "--data", tiny_data["test"])
    assert code == 2 and out == "" and f"{export_dir} is an ONNX export (no torch weights); add --backend onnx" in err


def test_a_file_where_the_models_export_directory_goes_is_named_as_that(baseline_model, run_cli, tmp_path):
    """No --out was given, so the message names the model's own export directory, not --out."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(baseline_model, model)
    shutil.rmtree(model / "onnx", ignore_errors=True)
    (model / "onnx").write_text("mine")
    code, _, err = run_cli("export", "--model", model)
    assert code == 2 and f"the model's export directory {model / 'onnx'} is a file" in err and "--out" not in err, err
    assert (model / "onnx").read_text() == "mine"
