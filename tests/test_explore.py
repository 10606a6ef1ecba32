"""`freezeframe explore`: what a labelled file holds, counted as the model will see it."""

import json
from collections import Counter

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
           "1 row disagrees (data rows 5)" in out
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
    (["--max-length", "1"], "--max-length must be between 8 and 512, as train takes it, got 1"),
    (["--max-length", "4"], "--max-length must be between 8 and 512, as train takes it, got 4"),
    (["--max-length", "1000"], "--max-length must be between 8 and 512, as train takes it, got 1000"),
    (["--top-words", "-1"], "--top-words must be 0 or more, got -1"),
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
    # a baseline saved before its tokenizer version was recorded counts words as it cuts them: ASCII only
    data = write_csv(tmp_path / "de.csv", [("Schöne Kamera über alles", "a"), ("plain words", "b")])
    assert explore_data(ExploreConfig(data, model=str(out)))["all"]["tokens"]["max"] == 4
    (out / "word_tokenizer.json").unlink()
    assert explore_data(ExploreConfig(data, model=str(out)))["all"]["tokens"]["max"] == 5  # sch, ne, kamera, ber, alles
    # a baseline without its vocabulary is damaged: it was counted as words of a tokenizer it never had
    (out / "vocab.txt").unlink()
    code, _, err = run_cli("explore", "--data", data, "--model", out)
    assert code == 2 and f"{out} has no vocab.txt; it is not a complete baseline model directory" in err, err


def test_the_config_checks_its_fields_as_the_other_configs_do(tmp_path, tiny_model_dir, tiny_data):
    summary = explore_data(ExploreConfig(tiny_data["train"], model=tiny_model_dir, top_words=0))  # a Path model
    assert summary["tokens"].startswith(f"as {tiny_model_dir}'s tokenizer")
    for field, value, message in [("text_column", 3, "ExploreConfig.text_column must be a string"),
                                  ("normalize_labels", "yes", "ExploreConfig.normalize_labels must be True or False"),
                                  ("data", 5, "ExploreConfig.data must be a path"),
                                  ("max_length", 2.5, "ExploreConfig.max_length must be an int or None")]:
        with pytest.raises(TypeError, match=message):
            ExploreConfig(**{"data": tiny_data["train"], field: value})
    with pytest.raises(ValueError, match="both 'review'"):
        ExploreConfig(tiny_data["train"], label_column="review")


def test_the_table_stays_aligned_for_long_texts(tmp_path, run_cli):
    rows = [(" ".join(["plot"] * 12000), "Story"), ("camera", "Cinematography"), ("hero", "Characters")]
    code, out, err = run_cli("explore", "--data", write_csv(tmp_path / "d.csv", rows), "--model", "baseline",
                             "--top-words", "0")
    assert code == 0, err
    table = out.splitlines()[3:8]
    assert len({len(line) for line in table}) == 1, table  # every column right-aligned under its heading
    assert table[3].split() == ["Story", "1", "33.3%", "12000", "12000", "12000", "12000", "12000", "12000", "1"]
    assert "1 text is longer than --max-length 128 and loses its end in training" in out


def test_counts_of_one_read_as_one(tmp_path, run_cli):
    rows = [("the same text", "Story"), ("the same text", "Story"), ("another text", "Story")]
    code, out, err = run_cli("explore", "--data", write_csv(tmp_path / "d.csv", rows), "--model", "baseline")
    assert code == 0, err
    assert "3 labelled texts, 1 class (always" in out
    assert "repeated texts: 1 occurs more than once (1 extra row)" in out


def test_words_in_other_scripts_are_counted(tmp_path, run_cli):
    rows = [("الفيلم قصة جميلة", "Story"), ("摄影 很美", "Cinematography"), ("Amélie était là 😀", "Characters")] * 3
    code, out, err = run_cli("explore", "--data", write_csv(tmp_path / "d.csv", rows), "--model", "baseline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert [summary["classes"][c]["words"]["max"] for c in ("Story", "Cinematography", "Characters")] == [3, 2, 3]
    assert summary["typical_words"]["Story"] == ["الفيلم", "جميلة", "قصة"]
    assert "amélie" in summary["typical_words"]["Characters"]


def test_a_code_column_with_a_stray_value_or_empty_cells_is_still_read(tmp_path, run_cli):
    rows = make_rows(10, seed=5)
    codes = {"Cinematography": "0", "Characters": "1", "Story": "2"}
    seen = Counter()
    unrelated = []  # each class's most frequent value is its own, but on 4 rows in 10 only
    for _, label in rows:
        seen[label] += 1
        unrelated.append(str((int(codes[label]) + (seen[label] > 4) + (seen[label] > 7)) % 3))
    table = [(text, label, codes[label] if i else "9", "" if i == 4 else label[:3], str(i), "same", unrelated[i])
             for i, (text, label) in enumerate(rows)]
    header = ("review", "aspect", "code", "initial", "id", "constant", "unrelated")
    code, out, err = run_cli("explore", "--data", write_csv(tmp_path / "d.csv", table, header=header),
                             "--model", "baseline", "--json")
    assert code == 0, err
    found = json.loads(out)["code_columns"]
    assert set(found) == {"code", "initial"}  # an ID, a constant and a column that often disagrees code nothing
    assert found["code"] == {"codes": {"0": "Cinematography", "1": "Characters", "2": "Story"},
                             "disagreeing_rows": [1], "empty_rows": []}
    assert found["initial"]["disagreeing_rows"] == [] and found["initial"]["empty_rows"] == [5]


def test_a_baseline_ensemble_and_a_baseline_export_count_words(tmp_path, tiny_data, run_cli):
    ensemble, export = tmp_path / "be", tmp_path / "bx"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "baseline", "--out", ensemble,
                           "--ensemble", "2", "--epochs", "1", "--quiet")
    assert code == 0, err
    code, _, err = run_cli("export", "--model", ensemble / "member-0", "--out", export)
    assert code == 0, err
    for directory in (ensemble, export):
        code, out, err = run_cli("explore", "--data", tiny_data["test"], "--model", directory, "--json")
        assert code == 0, err  # was: "... is a from-scratch baseline ... and cannot be trained from"
        summary = json.loads(out)
        assert summary["tokens"] == f"the words of the baseline {directory}"
        assert summary["all"]["tokens"] == summary["all"]["words"]
