"""Dirty data: every case is handled with a one-line report, or refused in one line with exit code 2."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freezeframe.data import MAX_CHARS, LabelledTexts, class_order, load_labelled, load_texts
from freezeframe.errors import FreezeframeError
from freezeframe.evaluate import compute_metrics
from freezeframe.splits import split_train_valid

GOOD = "".join(f"the camera shot {i},Cinematography\nthe villain role {i},Characters\nthe plot twist {i},Story\n"
               for i in range(4))
HEADER = "review,aspect\n"


def write(tmp_path, payload: str | bytes, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(payload.encode("utf-8") if isinstance(payload, str) else payload)
    return path


def test_quoted_newlines_and_commas_stay_in_one_text(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + '"a wide shot, then\na close-up",Cinematography\n' + GOOD))
    assert data.texts[0] == "a wide shot, then\na close-up" and data.labels[0] == "Cinematography"
    assert len(data) == 13 and not reports


def test_bom_crlf_and_trailing_empty_rows(tmp_path, reports):
    payload = ("\ufeff" + HEADER + GOOD + "\n\n\n").replace("\n", "\r\n").encode("utf-8")
    data = load_labelled(write(tmp_path, payload))
    assert len(data) == 12 and set(data.labels) == {"Cinematography", "Characters", "Story"}
    assert not reports
    data = load_labelled(write(tmp_path, HEADER + GOOD + ",\n,\n"))
    assert len(data) == 12 and len(reports) == 1 and "dropped 2 rows with no text" in reports[0]


def test_duplicates_and_spaces_around_labels_are_reported(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD + "the plot twist 0,Story\nnew plot, Story \n"))
    assert data.labels[-1] == "Story"
    assert any("1 row repeats an earlier text" in r for r in reports)
    assert any("' Story ' is 'Story'" in r for r in reports)


def test_texts_with_two_labels_are_reported_with_their_rows(tmp_path, reports):
    payload = HEADER + GOOD + "the plot twist 0,Characters\nthe camera shot 1,Story\nthe camera shot 1,Characters\n"
    data = load_labelled(write(tmp_path, payload))
    assert len(data) == 15  # kept: which label is right is the user's call
    assert any("2 texts appear with different labels (data rows 3 and 13; 4 and 14 and 15)" in r for r in reports)



def test_a_text_repeated_under_many_labels_names_a_few_of_its_rows(tmp_path, reports):
    payload = HEADER + "".join(f"the same text,{label}\n" for label in ["Story", "Characters"] * 30)
    load_labelled(write(tmp_path, payload))
    clash = [r for r in reports if "with different labels" in r]
    assert len(clash) == 1 and "(data rows 1 and 2 and 3 and 4 and 56 more)" in clash[0], clash

def test_label_case_clash_is_refused_or_merged(tmp_path, reports):
    path = write(tmp_path, HEADER + GOOD + "plot again,story\nplot more,STORY\n")
    with pytest.raises(FreezeframeError, match="'STORY' / 'Story' / 'story'.*--normalize-labels"):
        load_labelled(path)
    data = load_labelled(path, normalize_labels=True)
    assert set(data.labels) == {"Cinematography", "Characters", "Story"}
    assert any("merged labels" in r for r in reports)


def test_texts_of_only_spaces_control_characters_or_emoji(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD + '"   ",Story\n"\x01\x02\x7f",Story\n"\u2003\t",Story\n'
                               "\U0001F3AC\U0001F37F,Story\n"))
    assert len(data) == 13 and data.texts[-1] == "\U0001F3AC\U0001F37F"
    assert any("dropped 3 rows with no text" in r for r in reports)
    assert any("1 text has no letters or digits (only symbols, emoji or invisible" in r for r in reports)


def test_nul_bytes_and_control_characters_in_labels(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD + "nul\x00 here,Story\nlost label,\x03\n"))
    assert "nul here" in data.texts
    assert any(r.endswith(": removed 1 NUL byte") for r in reports)
    assert any("dropped 1 row with no label" in r for r in reports)


def test_control_characters_in_texts_are_counted_once_per_file(tmp_path, reports):
    payload = HEADER + GOOD + 'a bell\x07 shot,Cinematography\n"\x1b[1mbold\x1b[0m plot",Story\n"tab\there",Story\n'
    data = load_labelled(write(tmp_path, payload))
    assert "a bell  shot" in data.texts and " [1mbold [0m plot" not in data.texts  # outer spaces go too
    assert "tab\there" in data.texts  # tabs and line breaks are text, not control characters to report
    lines = [r for r in reports if "control characters" in r]
    assert lines == [f"{tmp_path / 'data.csv'}: 2 texts hold control characters (e.g. '\\x07' in data row 13); "
                     + "replaced by spaces"]


def test_control_characters_in_texts_to_classify_are_counted_and_read_as_in_training(tmp_path, reports, tiny_model_dir):
    from freezeframe.tokenizer import FastTokenizer

    texts = load_texts(write(tmp_path, 'review\n"a bell\x07 shot"\nplain\n"form\x0cfeed\x0c"\n', "texts.csv"))
    assert texts == ["a bell\x07 shot", "plain", "form\x0cfeed\x0c"]  # the output file shows them as given
    assert [r for r in reports if "control characters" in r] == [
        f"{tmp_path / 'texts.csv'}: 2 texts hold control characters (e.g. '\\x07'); read as spaces, as in training"]
    # the model reads what training and evaluate read: a space, not the two words joined (BERT's normaliser)
    tokenizer = FastTokenizer(tiny_model_dir)
    assert tokenizer.encode(["the\x07camera\x1bshot"], 64) == tokenizer.encode(["the camera shot"], 64)


def test_extremely_long_texts_are_cut_and_counted(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD + "camera " * (MAX_CHARS // 5) + ",Cinematography\n"))
    assert max(map(len, data.texts)) <= MAX_CHARS
    assert any(f"1 text is longer than {MAX_CHARS:,} characters" in r for r in reports)


def test_numeric_labels_are_class_names(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + "".join(f"text {i},{i % 3}\n" for i in range(9))))
    assert data.label_names == ["0", "1", "2"]
    assert any("the labels are numbers" in r for r in reports)
    jsonl = "".join(f'{{"review": "text {i}", "aspect": {float(i % 3)}}}\n' for i in range(9))
    assert load_labelled(write(tmp_path, jsonl, "data.jsonl")).label_names == ["0", "1", "2"]


def test_numeric_labels_keep_numeric_order(tmp_path, reports):
    """Class 10 comes after class 9, not between 1 and 2, so a model's class ids and its confusion matrices
    follow the numbers; negative and decimal codes too."""
    rows = "".join(f"text {i},{i % 12}\n" for i in range(24))
    assert load_labelled(write(tmp_path, HEADER + rows)).label_names == [str(i) for i in range(12)]
    assert sorted(["10", "-1", "2.5", "2", "-0.5"], key=class_order) == ["-1", "-0.5", "2", "2.5", "10"]


def test_digits_in_class_names_sort_as_numbers_and_plain_names_as_before():
    assert sorted(["grade 10", "grade 2", "grade 1b", "grade 1"], key=class_order) == [
        "grade 1", "grade 1b", "grade 2", "grade 10"]
    plain = ["Story", "Characters", "Cinematography", "story", "b", "a b", "ab", "Ä", "", "_x", "x-y"]
    assert sorted(plain, key=class_order) == sorted(plain)  # the default's classes keep their ids
    assert sorted(["1", "0", "01", "1.0"], key=class_order) == ["0", "01", "1", "1.0"]  # equal numbers: by spelling


def test_numbers_among_label_names_are_named(tmp_path, reports):
    """A file mixing class codes with class names trained on each code as a class of its own, silently."""
    rows = "".join(f"text {i},{'Story' if i % 2 else 'Characters'}\n" for i in range(8)) + "text 8,1\ntext 9,2.0\n"
    data = load_labelled(write(tmp_path, HEADER + rows))
    assert data.label_names == ["1", "2.0", "Characters", "Story"]
    assert any("2 rows have a number for a label (1, 2.0) where the others have names (data rows 9, 10)" in r
               for r in reports), reports
    assert not any("the labels are numbers" in r for r in reports)


def test_json_booleans_are_spelled_as_json(tmp_path):
    jsonl = "".join(f'{{"review": "text {i}", "aspect": {"true" if i % 2 else "false"}}}\n' for i in range(8))
    assert load_labelled(write(tmp_path, jsonl, "data.jsonl")).label_names == ["false", "true"]


def test_json_array_file(tmp_path):
    data = load_labelled(write(tmp_path, '[{"review": "a shot", "aspect": "Cinematography"}, '
                                         '{"review": "a plot", "aspect": "Story"}]', "data.json"))
    assert data.labels == ["Cinematography", "Story"]


def test_ragged_row_with_too_few_fields_is_dropped(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD + "no label here\n"))
    assert len(data) == 12 and any("dropped 1 row with no label" in r for r in reports)


REFUSED = {
    "not utf-8": (HEADER.encode() + "caf\u00e9 shot,Cinematography\n".encode("latin-1"), "data.csv",
                  "not valid UTF-8 \\(byte 0xe9 at line 2\\)"),
    "utf-16": ((HEADER + GOOD).encode("utf-16"), "data.csv", "is UTF-16"),
    "ragged": (HEADER + GOOD + "a shot, wide, Cinematography\n", "data.csv", "line 14 has 3 fields, the header has 2"),
    "bad jsonl": ('{"review": "a", "aspect": "Story"}\n{"review": "b", \n[1, 2]\n', "data.jsonl",
                  "2 of 3 records are not JSON objects.*line 2, 3"),
    "header only": (HEADER, "data.csv", "no rows with both a text and a label"),
    "empty": ("", "data.csv", "is empty"),
    "blank lines only": ("\n\n \n", "data.csv", "is empty"),
    "missing column": ("text,label\na,b\n", "data.csv",
                       "columns 'review', 'aspect' not found; columns found: 'text', 'label'"),
    "case clash": (HEADER + GOOD + "x,story\n", "data.csv", "labels differ only in letter case"),
    "one class": (HEADER + "a,Story\nb,Story\nc,Story\n", "data.csv", "at least two classes"),
    "tiny class": (HEADER + GOOD + "a,Other\n", "data.csv", "class 'Other' has fewer than 2 examples"),
    "unsupported type": ("review,aspect\n", "data.xlsx", "unsupported file type"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_cli_refuses_in_one_line_with_exit_2(run_cli, tmp_path, case):
    payload, name, message = REFUSED[case]
    out = tmp_path / "model"
    code, _, err = run_cli("train", "--train", write(tmp_path, payload, name), "--out", out, "--valid-fraction", "0.15",
                                "--quiet")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("freezeframe: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert re.search(message, errors[0]), errors[0]
    assert not out.exists() and not list(tmp_path.glob(".model*")), "no output directory on refusal"


def test_cli_refuses_an_out_that_is_a_file(run_cli, tmp_path, tiny_data):
    blocker = write(tmp_path, "not a directory", "model")
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", blocker, "--quiet")
    assert code == 2 and "is a file" in err and blocker.read_text() == "not a directory"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", blocker / "inner", "--quiet")
    assert code == 2 and "is a file, not a directory" in err


def test_cli_trains_on_a_dirty_file_with_one_line_reports(run_cli, tmp_path, tiny_model_dir, tiny_data):
    clean = tiny_data["train"].read_text(encoding="utf-8").splitlines()
    rows = clean[1:] + [
        '"a camera shot, then\na lens frame",Cinematography', clean[1], "plot twist ending, Story ", '"   ",Story',
        "\U0001F3AC\U0001F37F,Cinematography", "nul\x00 plot story,Story",
        " ".join(["camera"] * 400) + ",Cinematography",
    ]
    payload = ("\ufeff" + "\r\n".join([clean[0], *rows]) + "\r\n\r\n").encode("utf-8")
    out = tmp_path / "model"
    code, _, err = run_cli("train", "--train", write(tmp_path, payload), "--model", tiny_model_dir, "--out", out,
                                "--epochs", "1", "--quiet")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    for expected in ("removed 1 NUL byte", "dropped 1 row with no text", "' Story ' is 'Story'", "row repeats an earlier text",
                     "no letters or digits", "was truncated"):
        assert sum(expected in line for line in warnings) == 1, (expected, err)
    assert "Traceback" not in err and (out / "freezeframe.json").exists()


@pytest.mark.parametrize("payload, name, expected", [
    ("one\n\n  two  \n", "texts.txt", ["one", "two"]),
    ("one\x0cstill one\x1cand one\r\ntwo\rthree\n", "texts.txt", ["one\x0cstill one\x1cand one", "two", "three"]),
    ('{"review": "a \\ud800 b"}\n', "texts.jsonl", ["a \ufffd b"]),
    ("review\n\n", "texts.csv", None),
])
def test_predict_input_files(tmp_path, payload, name, expected):
    path = write(tmp_path, payload, name)
    if expected is None:
        with pytest.raises(FreezeframeError):
            load_texts(path)
    else:
        assert load_texts(path) == expected


@given(counts=st.lists(st.integers(2, 40), min_size=2, max_size=6), fraction=st.sampled_from([0.1, 0.15, 0.3, 0.5]),
       seed=st.integers(0, 3))
@settings(max_examples=60, deadline=None, derandomize=True)
def test_validation_split_is_stratified_seeded_and_disjoint(counts, fraction, seed):
    labels = [f"c{k}" for k, n in enumerate(counts) for _ in range(n)]
    data = LabelledTexts([f"text {i}" for i in range(len(labels))], labels, list(range(2, len(labels) + 2)))
    try:
        train, valid = split_train_valid(data, fraction, seed)
    except FreezeframeError:
        assert len(data) - max(len(counts), round(len(data) * fraction)) < len(counts)
        return
    assert sorted(train.texts + valid.texts) == sorted(data.texts)
    assert len(valid) == max(len(counts), round(len(data) * fraction))
    shares = {f"c{k}": len(valid) * n / len(data) for k, n in enumerate(counts)}
    for k, n in enumerate(counts):
        assert 1 <= valid.labels.count(f"c{k}") <= n - 1
        if min(shares.values()) >= 1:  # no class needs more than its share to be represented at all
            assert abs(valid.labels.count(f"c{k}") - shares[f"c{k}"]) < 1
    again = split_train_valid(data, fraction, seed)
    assert again[1].texts == valid.texts


@given(pairs=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
@settings(max_examples=60, deadline=None, derandomize=True)
def test_metrics_match_scikit_learn(pairs):
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    truth, predicted = [t for t, _ in pairs], [p for _, p in pairs]
    metrics = compute_metrics(truth, predicted, ["a", "b", "c", "d"])
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=[0, 1, 2, 3], zero_division=0)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1.mean())
    assert metrics["macro_precision"] == pytest.approx(precision.mean())
    assert metrics["macro_recall"] == pytest.approx(recall.mean())
    assert [metrics["per_class"][c]["support"] for c in "abcd"] == support.tolist()
    assert metrics["confusion_matrix"] == confusion_matrix(truth, predicted, labels=[0, 1, 2, 3]).tolist()


def test_a_trailing_separator_is_ignored_and_a_real_extra_field_refused(tmp_path, reports):
    data = load_labelled(write(tmp_path, HEADER + GOOD.replace("\n", ",\n")))
    assert data.texts[0] == "the camera shot 0" and data.labels[0] == "Cinematography" and len(data) == 12
    assert any("trailing separator" in line for line in reports)
    with pytest.raises(FreezeframeError, match="one field more than the header"):
        load_labelled(write(tmp_path, HEADER + GOOD.replace("\n", ",x\n"), "extra.csv"))


def test_repeated_column_names_and_wrong_separators_are_named(tmp_path):
    with pytest.raises(FreezeframeError, match="column name 'review' appears more than once"):
        load_labelled(write(tmp_path, "review, review,aspect\na,b,Story\n" + GOOD.replace("\n", ",x\n")))
    # exact repeats, which pandas renames ("aspect.1") and a JSON object keeps only once
    for name, payload in [("twice.csv", "review,aspect,aspect\nthe camera,Cinematography,Story\n"),
                          ("twice.tsv", "review\taspect\treview\nthe camera\tCinematography\tthe plot\n"),
                          ("twice.jsonl", '{"review": "the camera", "aspect": "Story", "aspect": "Characters"}\n')]:
        with pytest.raises(FreezeframeError, match=r"column name '(review|aspect)' appears more than once"):
            load_labelled(write(tmp_path, payload, name))
    with pytest.raises(FreezeframeError, match="separated by semicolons"):
        load_texts(write(tmp_path, "review;aspect\nthe camera;Cinematography\n", "semi.csv"))
    for name, payload, fix in [("semi.csv", "review;aspect\nthe camera;Cinematography\n", "separated by semicolons"),
                               ("tabs.csv", "review\taspect\nthe camera\tCinematography\n", "separated by tabs: name it .tsv"),
                               ("commas.tsv", "review,aspect\nthe camera,Cinematography\n", "separated by commas: name it .csv")]:
        with pytest.raises(FreezeframeError, match=f"columns 'review', 'aspect' not found; .*; its header is {fix}"):
            load_labelled(write(tmp_path, payload, name))


def test_rows_swallowed_by_an_unbalanced_quote_are_reported(tmp_path, reports):
    payload = HEADER + 'the plot drags,Story\n"the hero is brave,Characters\nlovely shots,Cinematography\nthe end,Story\n"the villain" is weak,Characters\n'
    load_texts(write(tmp_path, payload))
    assert any("unbalanced quote may have merged" in line for line in reports)


def test_evaluate_names_classes_missing_from_the_data(run_cli, tmp_path, tiny_model_dir, tiny_data):
    out = tmp_path / "model"
    assert run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out, "--freeze", "head",
                   "--epochs", "1", "--quiet")[0] == 0
    rows = [line for line in tiny_data["test"].read_text().splitlines()[1:] if not line.endswith(",Story")]
    subset = write(tmp_path, HEADER + "\n".join(rows) + "\n", "subset.csv")
    code, _, err = run_cli("evaluate", "--model", out, "--data", subset)
    assert code == 0 and "has no examples of 'Story'" in err


def test_labels_that_are_mostly_unique_get_a_warning(tmp_path, reports):
    from freezeframe.data import check_classes

    texts = [f"review number {i}" for i in range(40)]
    check_classes(LabelledTexts(texts, ["Story", "Characters"] * 20, list(range(1, 41)), "ok.csv"))
    assert not reports
    check_classes(LabelledTexts(texts, texts, list(range(1, 41)), "texts.csv"))
    assert reports == [("texts.csv: 40 classes for 40 texts, most with a single example; "
                        "is the label column the right one (--label-column)?")]


def test_long_label_lists_are_cut_to_one_short_line(run_cli, tmp_path, tiny_model_dir, tiny_data):
    out = tmp_path / "model"
    assert run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out, "--freeze", "head",
                   "--epochs", "1", "--quiet")[0] == 0
    rows = [f"text {i},{'a very long label that goes on and on ' * 3}{i}" for i in range(30)]
    wrong = write(tmp_path, HEADER + "\n".join(rows) + "\n", "wrong.csv")
    code, _, err = run_cli("evaluate", "--model", out, "--data", wrong)
    assert code == 2 and len(err.strip().splitlines()) == 1 and len(err) < 600
    assert "30 label(s) never seen in training: 'a very long label that goes on and on a…'" in err and "and 24 more" in err
    code, _, err = run_cli("evaluate", "--model", out, "--data", wrong, "--text-column", "aspect", "--label-column", "aspect")
    assert code == 2 and "--text-column and --label-column are both 'aspect'" in err


def test_normalize_labels_spells_the_labels_as_the_model_does(tmp_path, reports):
    from freezeframe.data import check_known_labels

    known = ["Characters", "Cinematography", "Story"]
    only_lower = write(tmp_path, HEADER + "great acting,characters\nthe plot,Story\n", "lower.csv")
    tie = write(tmp_path, HEADER + "great acting,Characters\nnice acting,characters\nshots,Cinematography\n", "tie.csv")
    for path, expected in [(only_lower, ["Characters", "Story"]), (tie, ["Characters", "Characters", "Cinematography"])]:
        data = load_labelled(path, normalize_labels=True, known=known)
        assert data.labels == expected
        check_known_labels(data, known)
    with pytest.raises(FreezeframeError, match="differ from the model's only in letter case: pass --normalize-labels"):
        check_known_labels(load_labelled(only_lower, known=known), known)


def test_a_validation_file_sharing_texts_with_the_training_data_is_named(run_cli, tiny_model_dir, tiny_data, tmp_path):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--valid", tiny_data["train"], "--model", tiny_model_dir,
                           "--freeze", "head", "--out", tmp_path / "out", "--epochs", "1", "--quiet")
    rows = len(tiny_data["train"].read_text().splitlines()) - 1
    assert code == 0 and f"{rows} of {rows} --valid texts also appear in the training data" in err


def test_a_validation_file_missing_a_class_says_its_recall_0_counts(run_cli, tiny_model_dir, tiny_data, tmp_path):
    from conftest import make_rows, write_csv

    rows = [(text, label) for text, label in make_rows(6, seed=5) if label != "Story"]
    valid = write_csv(tmp_path / "valid.csv", rows)
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--valid", valid, "--model", tiny_model_dir,
                           "--freeze", "head", "--out", tmp_path / "out", "--epochs", "1", "--quiet")
    assert code == 0 and "has no examples of 'Story'; recall 0 for it counts in the validation macro averages" in err, err


def test_the_parts_of_a_split_file_are_named_as_parts(tmp_path):
    from conftest import make_rows, write_csv

    from freezeframe.splits import make_splits

    path = write_csv(tmp_path / "d.csv", make_rows(10, seed=4))
    data = load_labelled(path)
    fit, valid = split_train_valid(data, 0.2, 0)
    assert (data.source, fit.source, valid.source) == (str(path), f"{path} (training part)", f"{path} (validation part)")
    fold = make_splits(data, None, 3, 1)[0]
    assert (fold.train.source, fold.test.source) == (f"{path} (fold 1's training part)", f"{path} (fold 1's test part)")
    assert split_train_valid(fold.train, 0.2, 0)[1].source == f"{path} (validation part of fold 1's training part)"


def test_truncation_counts_name_the_part_of_a_split_file(run_cli, tmp_path, tiny_model_dir, tiny_data):
    rows = len(tiny_data["train"].read_text().splitlines()) - 1
    common = ["--train", tiny_data["train"], "--model", tiny_model_dir, "--freeze", "head", "--max-length", "8",
              "--epochs", "1", "--quiet"]
    code, _, err = run_cli("train", *common, "--valid-fraction", "0.3", "--out", tmp_path / "split")
    valid = round(rows * 0.3)
    assert code == 0, err
    assert re.search(rf"train\.csv \(training part\): \d+ of {rows - valid} texts (is|are) longer than 8 tokens", err), err
    assert re.search(rf"train\.csv \(validation part\): \d+ of {valid} texts (is|are) longer than 8 tokens", err), err
    code, _, err = run_cli("train", *common, "--valid-fraction", "0", "--out", tmp_path / "whole")
    assert code == 0 and re.search(rf"train\.csv: \d+ of {rows} texts (is|are) longer than 8 tokens", err), err


def test_a_validation_split_says_when_repeated_texts_shrink_it(tmp_path, reports):
    from conftest import make_rows, write_csv

    rows = make_rows(10, seed=4)
    data = load_labelled(write_csv(tmp_path / "d.csv", rows + rows))  # every text twice
    fit, valid = split_train_valid(data, 0.3, 0)
    assert not set(fit.texts) & set(valid.texts) and len(valid) < 9
    assert any(f"repeat a training text and train instead; {len(valid)} rows validate" in r for r in reports)


def test_messages_list_classes_in_class_order():
    from freezeframe.data import check_known_labels

    data = LabelledTexts(["a", "b", "c"], ["10", "9", "1"], [1, 2, 3], "test.csv")
    with pytest.raises(FreezeframeError, match=r"2 label\(s\) never seen in training: '9', '10'; the model knows '1'"):
        check_known_labels(data, ["1"])
