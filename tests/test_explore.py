"""`freezeframe explore`: what a labelled file holds, counted as the model will see it."""

import json

import pytest
from conftest import REAL_TRAIN, WORDS, make_rows, write_csv

from freezeframe.data import LabelledTexts
from freezeframe.explore import ExploreConfig, explore_data, typical_words


def test_counts_classes_lengths_and_cut_texts(tmp_path, tiny_model_dir, run_cli):
    rows = [("camera shot", "Cinematography"), ("camera camera shot lens", "Cinematography"),
            ("plot twist", "Story"), ("the plot " + "plot " * 20, "Story"), ("hero villain", "Characters")]
    data = write_csv(tmp_path / "d.csv", rows)
    code, out, err = run_cli("explore", "--data", data, "--model", tiny_model_dir, "--max-length", "10", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["texts"] == 5 and summary["labels"] == ["Characters", "Cinematography", "Story"]
    assert summary["classes"]["Story"]["texts"] == 2
    assert summary["classes"]["Story"]["words"]["max"] == 22
    assert summary["classes"]["Cinematography"]["tokens"]["max"] == 6  # 4 words and [CLS], [SEP]
    assert summary["all"]["over_max_length"] == 1 and summary["classes"]["Story"]["over_max_length"] == 1
    assert summary["majority_share"] == pytest.approx(0.4)


def test_one_cut_text_is_named_in_the_singular(tmp_path, tiny_model_dir, run_cli):
    rows = [("camera shot", "Cinematography"), ("the plot " + "plot " * 20, "Story"), ("hero villain", "Characters")]
    data = write_csv(tmp_path / "d.csv", rows)
    code, out, err = run_cli("explore", "--data", data, "--model", tiny_model_dir, "--max-length", "10")
    assert code == 0, err
    assert "; 1 text is longer than --max-length 10 and loses its end in training and prediction" in out


def test_repeats_and_a_code_column_that_disagrees(tmp_path, run_cli):
    rows = [("good camera", "Cinematography", "0"), ("good camera", "Story", "1"), ("a plot", "Story", "1"),
            ("the lens", "Cinematography", "0"), ("the plot", "Story", "0"), ("the hero", "Characters", "2")]
    data = write_csv(tmp_path / "d.csv", rows, header=("review", "aspect", "aspect_encoded"))
    code, out, err = run_cli("explore", "--data", data, "--model", "baseline")
    assert code == 0, err
    assert "1 of them under different labels (data rows 1, 2)" in out
    assert "column 'aspect_encoded' codes the labels: 0 = Cinematography, 1 = Story, 2 = Characters; " \
           "1 rows disagree (data rows 5)" in out
    assert "the baseline's words" in out


def test_typical_words_are_the_class_words_not_the_shared_ones():
    rows = make_rows(30, seed=3)
    data = LabelledTexts([t for t, _ in rows], [lab for _, lab in rows], list(range(1, len(rows) + 1)))
    words = typical_words(data, 3)

    for label, top in words.items():
        assert top and set(top) <= set(WORDS[label]), (label, top)


def test_a_trained_model_counts_at_its_own_max_length(tmp_path, tiny_model_dir, tiny_data, run_cli):
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--freeze", "head", "--epochs", "1", "--max-length", "8", "--quiet")
    assert code == 0, err
    summary = explore_data(ExploreConfig(tiny_data["test"], model=str(out), top_words=0))
    assert summary["max_length"] == 8 and summary["all"]["over_max_length"] > 0
    assert summary["typical_words"] == {}


@pytest.mark.parametrize("args, message", [
    (["--max-length", "1"], "max_length must be an integer of at least 2"),
    (["--top-words", "-1"], "top_words must be a non-negative integer"),
    (["--model", ""], "--model is empty"),
    (["--model", "no/such/dir"], "model directory not found"),
    (["--label-column", "nope"], "nope"),
])
def test_bad_options_are_one_line(tmp_path, tiny_data, run_cli, args, message):
    code, out, err = run_cli("explore", "--data", tiny_data["train"], *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(not REAL_TRAIN.is_file(), reason="needs ../shared/data")
def test_the_course_data_with_the_default_encoder(run_cli):
    code, out, err = run_cli("explore", "--data", REAL_TRAIN)
    assert code == 0, err
    assert "369 labelled texts, 3 classes" in out
    assert "column 'aspect_encoded' codes the labels: 0 = Cinematography, 1 = Characters, 2 = Story, on every row" in out


def test_a_trained_baseline_counts_words(tmp_path, tiny_data, run_cli):
    out = tmp_path / "b"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "baseline", "--out", out,
                           "--epochs", "1", "--quiet")
    assert code == 0, err
    summary = explore_data(ExploreConfig(tiny_data["test"], model=str(out)))
    assert summary["tokens"] == f"the words of the baseline {out}"
    assert summary["all"]["tokens"] == summary["all"]["words"]
