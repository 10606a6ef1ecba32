"""--ensemble K: one directory, members share the split and the cache, predictions average."""

from __future__ import annotations

import json

import numpy as np


def test_ensemble_trains_saves_and_predicts(run_cli, tmp_path, tiny_model_dir, tiny_data):
    out = tmp_path / "ensemble"
    code, stdout, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                                "--ensemble", "2", "--epochs", "2", "--lr", "1e-3", "--quiet")
    assert code == 0, err
    meta = json.loads((out / "freezeframe.json").read_text())
    assert meta["kind"] == "ensemble" and meta["members"] == ["member-0", "member-1"]
    assert [r["seed"] for r in meta["member_runs"]] == [0, 1]
    from freezeframe.predict import load_classifier

    ensemble = load_classifier(out, device="cpu")
    members = [load_classifier(out / name, device="cpu") for name in meta["members"]]
    texts = ["the camera shot", "a villain role", "plot twist"]
    expected = np.mean([m.predict_proba(texts) for m in members], axis=0)
    assert np.allclose(ensemble.predict_proba(texts), expected, atol=1e-6)
    assert not np.allclose(members[0].predict_proba(texts), members[1].predict_proba(texts)), "seeds must differ"
    code, stdout, _ = run_cli("evaluate", "--model", out, "--data", tiny_data["test"], "--json")
    assert code == 0 and json.loads(stdout)["n"] == 18
    code, stdout, _ = run_cli("predict", "--model", out, *texts)
    assert code == 0 and [json.loads(line)["text"] for line in stdout.splitlines()] == texts
    code, stdout, err = run_cli("predict", "--model", out, "--backend", "onnx", *texts)
    assert code == 2 and err.strip() == f"freezeframe: error: {out} is an ensemble; the ONNX backend runs one model: use --backend torch"


def test_ensemble_refuses_resume(run_cli, tmp_path, tiny_model_dir, tiny_data):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", tmp_path / "e",
                           "--ensemble", "2", "--resume", "--quiet")
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
