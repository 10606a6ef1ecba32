"""`evaluate` with several --model: one table, confusion matrices side by side, McNemar's test against the first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_rows, write_csv

from freezeframe.evaluate import compute_metrics, evaluate_model
from freezeframe.side_by_side import CHANCE_CAVEAT, evaluate_models, format_comparison, model_names

METRIC_KEYS = {"accuracy", "macro_f1", "macro_precision", "macro_recall", "per_class", "labels", "confusion_matrix", "n"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_data) -> Path:
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "baseline"
    main(["train", "--model", "baseline", "--train", str(tiny_data["train"]), "--out", str(out),
          "--epochs", "20", "--lr", "0.01", "--quiet"])
    return out


def test_two_models_share_one_table_then_their_matrices_then_mcnemar(run_cli, baseline, head_model, tiny_data):
    code, out, err = run_cli("evaluate", "--model", baseline, "--model", head_model, "--data", tiny_data["test"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["baseline", "head"]
    assert [line.split("  ")[0].strip() for line in lines[1:9]] == [
        "accuracy", "macro precision", "macro recall", "macro F1",
        "recall Characters", "recall Cinematography", "recall Story", "n"]
    _, as_json, _ = run_cli("evaluate", "--model", baseline, "--model", head_model, "--data", tiny_data["test"], "--json")
    models = json.loads(as_json)["models"]
    for line, key in zip(lines[1:5], ("accuracy", "macro_precision", "macro_recall", "macro_f1")):
        assert line.split()[-2:] == [f"{models[name][key]:.4f}" for name in ("baseline", "head")]
    assert lines[7].split()[-2:] == [f"{models[name]['per_class']['Story']['recall']:.4f}" for name in ("baseline", "head")]
    # the two matrices fit in 120 columns: side by side under one title, the row names once at the left
    title = lines.index("confusion matrix (rows: true, columns: predicted)")
    assert lines[title + 1].split() == ["baseline", "head"]
    assert lines[title + 2].split() == ["Characters", "Cinematography", "Story"] * 2
    for row, label in enumerate(models["head"]["labels"]):
        assert lines[title + 3 + row].split() == [label, *(str(v) for name in ("baseline", "head")
                                                          for v in models[name]["confusion_matrix"][row])]
    assert max(len(line) for line in lines) <= 120
    assert "McNemar's exact test against baseline on the same 18 items:" in out
    assert "  head: right where baseline was wrong " in out and CHANCE_CAVEAT in out


def test_json_is_todays_object_for_one_model_and_a_models_object_for_several(run_cli, baseline, head_model, tiny_data):
    code, out, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--json")
    assert code == 0, err
    assert json.loads(out) == evaluate_model(head_model, tiny_data["test"])
    code, out, err = run_cli("evaluate", "--model", baseline, "--model", head_model, "--data", tiny_data["test"], "--json")
    assert code == 0 and len(out.strip().splitlines()) == 1, err
    result = json.loads(out)
    assert set(result) == {"models", "mcnemar"} and list(result["models"]) == ["baseline", "head"]
    assert all(set(metrics) == METRIC_KEYS for metrics in result["models"].values())
    assert result["models"]["head"] == evaluate_model(head_model, tiny_data["test"])
    assert len(result["mcnemar"]) == 1
    assert set(result["mcnemar"][0]) == {"a", "b", "a_only_right", "b_only_right", "p_value"}


def test_mcnemar_counts_match_a_hand_count_of_the_two_models_predictions(baseline, head_model, tiny_data):
    from scipy.stats import binomtest

    from freezeframe.predict import load_predictor

    frame = pd.read_csv(tiny_data["test"])
    right = {}
    for directory in (baseline, head_model):
        classifier = load_predictor(directory)
        predicted = [classifier.labels[k] for k in classifier.predict_proba(frame["review"].tolist()).argmax(1)]
        right[directory.name] = [p == y for p, y in zip(predicted, frame["aspect"])]
    baseline_only = sum(b and not h for b, h in zip(right["baseline"], right["head"]))
    head_only = sum(h and not b for b, h in zip(right["baseline"], right["head"]))
    test = evaluate_models([baseline, head_model], tiny_data["test"])["mcnemar"][0]
    assert (test["a"], test["b"]) == ("baseline", "head")
    assert (test["a_only_right"], test["b_only_right"]) == (baseline_only, head_only)
    expected = binomtest(baseline_only, baseline_only + head_only, 0.5).pvalue if baseline_only + head_only else 1.0
    assert test["p_value"] == pytest.approx(expected)


def test_models_that_know_different_classes_are_refused_before_scoring(run_cli, baseline, tiny_data, tmp_path):
    two = write_csv(tmp_path / "two.csv", [row for row in make_rows(10, seed=3) if row[1] != "Story"])
    other = tmp_path / "two_classes"
    assert run_cli("train", "--model", "baseline", "--train", two, "--out", other, "--epochs", "1", "--quiet")[0] == 0
    code, out, err = run_cli("evaluate", "--model", baseline, "--model", other, "--data", tiny_data["test"],
                             "--plots", tmp_path / "plots")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "Characters, Cinematography, Story" in err and "Characters, Cinematography:" in err
    assert "baseline" in err and "two_classes" in err and not (tmp_path / "plots").exists()


def test_the_same_directory_twice_is_refused(run_cli, baseline, tiny_data):
    for again in (baseline, baseline.parent / ".." / baseline.parent.name / baseline.name):
        code, out, err = run_cli("evaluate", "--model", baseline, "--model", again, "--data", tiny_data["test"])
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert "the same model directory given twice" in err


def test_models_sharing_a_directory_name_are_named_by_their_paths():
    assert model_names([Path("a/model"), Path("b/model"), Path("c/other")]) == ["a/model", "b/model", "other"]


def test_plots_hold_one_panel_per_model_and_are_not_overwritten_unasked(run_cli, baseline, head_model, tiny_data, tmp_path):
    args = ["evaluate", "--model", baseline, "--model", head_model, "--data", tiny_data["test"], "--plots", tmp_path]
    code, out, err = run_cli(*args)
    assert code == 0 and f"plots written to {tmp_path}" in out, err
    assert [p.name for p in tmp_path.iterdir()] == ["confusion_matrices.png"]
    assert (tmp_path / "confusion_matrices.png").stat().st_size > 1000
    code, out, err = run_cli(*args)
    assert code == 2 and "already holds confusion_matrices.png; pass --overwrite" in err, err
    code, out, err = run_cli(*args, "--overwrite")
    assert code == 0, err


def test_matrices_too_wide_for_120_columns_follow_one_another():
    labels = [f"a rather long class name {i}" for i in range(3)]
    metrics = compute_metrics([0, 1, 2], [0, 2, 2], labels)
    text = format_comparison({"models": {"first": metrics, "second": metrics}, "mcnemar": []})
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert "first: confusion matrix" in text and "second: confusion matrix" in text
    assert "McNemar" not in text
    assert np.array_equal(metrics["confusion_matrix"], [[1, 0, 0], [0, 0, 1], [0, 0, 1]])


def test_the_data_is_read_and_reported_once_for_all_models(baseline, head_model, tiny_data, tmp_path, reports):
    """Each model scores the same rows: what reading them reports (here, a repeated row) is said once, not per model."""
    text = Path(tiny_data["test"]).read_text()
    repeated = tmp_path / "repeated.csv"
    repeated.write_text(text + text.splitlines()[1] + "\n")
    evaluate_models([baseline, head_model], repeated)
    assert len([line for line in reports if "repeats an earlier text" in line]) == 1, reports
