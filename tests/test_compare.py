"""``freezeframe compare`` end to end on tiny data and a tiny BERT, and its pieces."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from freezeframe.compare import CompareConfig
from freezeframe.errors import FreezeframeError
from freezeframe.evaluate import mcnemar_exact
from freezeframe.splits import make_splits


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_data, tiny_model_dir):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("compare") / "report"
    main(["compare", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--folds", "3",
          "--seeds", "1", "--configs", "baseline,head,last-1", "--epochs", "3", "--out", str(out), "--quiet"])
    return out


def test_compare_writes_every_file(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"results.json", "report.md", "report.html", "predictions.csv", "confusion_matrices.png",
            "learning_curves.png", "accuracy_per_run.png"} <= names
    for png in report_dir.glob("*.png"):
        assert png.stat().st_size > 2000
    assert not [p for p in report_dir.parent.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_results_json_keys(report_dir):
    results = json.loads((report_dir / "results.json").read_text())
    assert set(results) >= {"settings", "labels", "n_items", "n_runs", "configs", "significance"}
    assert list(results["configs"]) == ["baseline", "head", "last-1"]
    assert results["n_items"] == 60 and results["n_runs"] == 3
    assert results["test_class_counts"] == {"Characters": 20, "Cinematography": 20, "Story": 20}
    for config in results["configs"].values():
        assert set(config) >= {"accuracy", "macro_f1", "per_class_recall", "train_seconds", "trainable_parameters",
                               "total_parameters", "confusion_matrix", "epoch_limit", "runs_best_at_epoch_limit"}
        assert set(config["accuracy"]) == {"mean", "std", "runs"} and len(config["accuracy"]["runs"]) == 3
        assert set(config["per_class_recall"]) == {"Characters", "Cinematography", "Story"}
        assert sum(map(sum, config["confusion_matrix"])) == 60, "every item tested exactly once per seed"
    head, last = results["configs"]["head"], results["configs"]["last-1"]
    assert head["trainable_parameters"] < last["trainable_parameters"] < last["total_parameters"]
    test = results["significance"]
    assert "McNemar" in test["test"] and 0.0 <= test["p_value"] <= 1.0
    assert test["compared"][1] == "baseline" and test["compared"][0] in ("head", "last-1")


def test_report_is_self_contained_and_generated(report_dir):
    markdown = (report_dir / "report.md").read_text()
    page = (report_dir / "report.html").read_text()
    for name in ("baseline", "head", "last-1", "McNemar", "±"):
        assert name in markdown and name in page
    assert "![confusion_matrices.png](confusion_matrices.png)" in markdown
    assert page.count("data:image/png;base64,") == 3 and 'src="confusion' not in page
    assert "was the most accurate configuration" in markdown
    # tiny_data has 20 texts of each class: a majority guess scores a third, the floor to read the rest against
    assert "Test items by class: Characters 20, Cinematography 20, Story 20; always guessing the most frequent " \
           "class would score 0.333." in markdown


def test_compare_on_a_test_file_and_predictions_line_up(run_cli, tiny_data, tiny_model_dir, tmp_path):
    out = tmp_path / "report"
    code, stdout, err = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--model",
                                tiny_model_dir, "--configs", "baseline,head", "--seeds", "2", "--epochs", "2",
                                "--out", out)
    assert code == 0, err
    assert "[1/4] baseline" in err and "left" in err, "progress names the run and the time left"
    assert "McNemar" in stdout
    results = json.loads((out / "results.json").read_text())
    # one test file: the repetitions differ by seed alone, so no correction for overlapping training sets
    assert results["paired"]["test"].startswith("paired t-test over seeds, uncorrected")
    assert results["paired"]["n_test_over_n_train"] == 0.0 and results["paired"]["configs"]
    for name, paired in results["paired"]["configs"].items():  # the terminal gives each tested gap in one line
        line = f"{results['paired']['best']} - {name}: {paired['mean_difference']:+.3f} over 2 paired runs"
        assert (line in stdout) == (paired["p_value"] is not None), stdout
    markdown = (out / "report.md").read_text()
    assert "the repetitions differ by seed alone" in markdown or "every paired difference was" in markdown, markdown
    # each run's progress line shows the training seconds that results.json and report.md average, and the rest apart
    trained = [float(s) for s in re.findall(r"\(best epoch \d+, trained in ([\d.]+)s, tested in [\d.]+s\)", err)]
    runs = [results["configs"][name]["train_seconds"]["runs"] for name in ("baseline", "head")]
    assert trained == pytest.approx([seconds for pair in zip(*runs) for seconds in pair], abs=0.051), err
    assert results["n_items"] == 18 and results["settings"]["seeds"] == [0, 1]
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "seed,fold,item,row,label,baseline,head" and len(lines) == 1 + 2 * 18
    # the true label is in the file (its docstring said so; it was missing), so it scores itself
    import csv

    from freezeframe.data import load_labelled

    truth = load_labelled(tiny_data["test"]).labels
    rows = list(csv.DictReader(lines))
    assert all(row["label"] == truth[int(row["item"])] for row in rows)
    for name in ("baseline", "head"):
        accuracy = [np.mean([row[name] == row["label"] for row in rows if row["seed"] == str(seed)]) for seed in (0, 1)]
        assert accuracy == pytest.approx(results["configs"][name]["accuracy"]["runs"])


def test_bad_settings_are_one_line_errors(run_cli, tiny_data, tmp_path):
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--folds", "3",
                           "--out", tmp_path / "r")
    assert code == 2 and "not both" in err
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--configs", "baseline,last-one",
                           "--out", tmp_path / "r")
    assert code == 2 and "'last-one'" in err and "Traceback" not in err
    with pytest.raises(FreezeframeError, match="rarest class"):
        from freezeframe.data import load_labelled

        make_splits(load_labelled(tiny_data["test"]), None, 10, 1)


def test_splits_are_stratified_and_cover_every_item_once_per_seed(tiny_data):
    from freezeframe.data import load_labelled

    data = load_labelled(tiny_data["train"])
    splits = make_splits(data, None, 4, 2)
    assert len(splits) == 8
    for seed in (0, 1):
        tested = sorted(i for s in splits if s.seed == seed for i in s.test_items)
        assert tested == list(range(len(data)))
    first = splits[0]
    assert sorted(first.test.labels.count(label) for label in data.label_names) == [5, 5, 5]
    assert [s.test_items for s in splits[:4]] != [s.test_items for s in splits[4:]], "each seed reshuffles"
    assert CompareConfig(tiny_data["train"]).folds == 5


def test_mcnemar_exact_counts_discordant_pairs():
    first = np.array([True] * 10 + [False] * 2 + [True] * 5)
    second = np.array([False] * 10 + [True] * 2 + [True] * 5)
    result = mcnemar_exact(first, second)
    assert result["first_only"] == 10 and result["second_only"] == 2
    assert result["p_value"] == pytest.approx(0.03857421875)  # 2 * P(X <= 2), X ~ Binomial(12, 0.5)
    assert mcnemar_exact(first, first)["p_value"] == 1.0


def test_each_configuration_uses_its_training_part_as_train_would(report_dir):
    results = json.loads((report_dir / "results.json").read_text())
    shares = {name: c["valid_fraction"] for name, c in results["configs"].items()}
    assert shares == {"baseline": 0.15, "head": 0.15, "last-1": 0.0}
    markdown = (report_dir / "report.md").read_text()
    assert "baseline, head held out a stratified 15% of each training part for early stopping" in markdown
    assert "last-1 trained on all of it for its fixed schedule" in markdown


def test_the_report_says_which_seconds_it_counts(report_dir):
    markdown = (report_dir / "report.md").read_text()
    assert "Cost, in training seconds per run (loading the model, the frozen-prefix pass and the epochs; " \
           "scoring the test part is not counted): baseline trains" in markdown


def test_the_still_improving_hint_needs_validation_data(report_dir):
    from freezeframe.report import reading

    results = json.loads((report_dir / "results.json").read_text())
    for config in results["configs"].values():
        config["runs_best_at_epoch_limit"] = len(config["accuracy"]["runs"])
    hinted = [s for s in reading(results) if "still improving" in s]
    # a fixed schedule keeps its last epoch by construction; only early-stopped runs tell
    assert [s.split()[0] for s in hinted] == ["baseline", "head"]


def test_the_reading_names_configurations_no_better_than_guessing_the_most_frequent_class(report_dir):
    """On imbalanced data the 'most accurate configuration' could score below predicting one class for all, unsaid."""
    from freezeframe.report import reading

    results = json.loads((report_dir / "results.json").read_text())
    labels = list(results["test_class_counts"])
    results["test_class_counts"] = {label: 90 if i == 0 else 5 for i, label in enumerate(labels)}  # floor 0.900
    for config in results["configs"].values():
        config["accuracy"]["mean"] = 0.95
    assert not [s for s in reading(results) if "always guessing" in s]
    results["configs"]["baseline"]["accuracy"]["mean"] = 0.85
    said = [s for s in reading(results) if "always guessing" in s]
    assert said == [("baseline scored no more than the 0.900 of always guessing the most frequent class: on classes "
                     "this unequal, read macro-F1 and the recall per class rather than accuracy.")]
    for config in results["configs"].values():
        config["accuracy"]["mean"] = 0.9
    assert next(s for s in reading(results) if "always guessing" in s).startswith("No configuration scored above the 0.900")


def test_the_paired_counts_agree_with_a_count_of_one(report_dir):
    """'right where the baseline was wrong 1 times' read as a typo in an otherwise careful report."""
    from freezeframe.report import reading

    results = json.loads((report_dir / "results.json").read_text())
    assert results["significance"]["p_value"] is not None  # the fixture compares baseline with an encoder plan
    results["significance"].update(best_only_right=1, baseline_only_right=0)
    said = next(s for s in reading(results) if "McNemar" in s)
    assert "was wrong 1 time and wrong where the baseline was right 0 times;" in said, said


def test_a_single_run_per_configuration_is_not_called_a_gap_beyond_the_spread(report_dir):
    """With one run each (a --test file, one seed) every std is 0, and every gap read as 'more than the run-to-run
    standard deviation'."""
    from freezeframe.paired import paired_comparison
    from freezeframe.report import reading

    results = json.loads((report_dir / "results.json").read_text())
    for config in results["configs"].values():
        value = config["accuracy"]["runs"][0]
        config["accuracy"] = {"mean": value, "std": 0.0, "runs": [value]}
    results["paired"] = paired_comparison({name: {(0, 1): c["accuracy"]["mean"]} for name, c in results["configs"].items()},
                                          None)
    gaps = [s for s in reading(results) if " below " in s and "percentage points" in s and "reached" in s]
    assert len(gaps) == 2 and all("no run-to-run spread to judge this gap by" in s for s in gaps), gaps


def test_a_test_file_sharing_texts_with_the_training_data_is_named(run_cli, tiny_data, tiny_model_dir, tmp_path,
                                                                   monkeypatch):
    import freezeframe.compare

    def stop(*args, **kwargs):
        raise FreezeframeError("stopped before training")

    monkeypatch.setattr(freezeframe.compare, "_run_all", stop)
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["train"], "--configs", "baseline",
                           "--out", tmp_path / "r", "--quiet")
    rows = len(tiny_data["train"].read_text().splitlines()) - 1
    assert code == 2 and f"warning: {tiny_data['train']}: {rows} of {rows} --test texts also appear in the training data" in err
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--configs", "baseline",
                           "--out", tmp_path / "r", "--quiet")
    assert code == 2 and "also appear" not in err


def test_a_class_of_one_example_is_not_told_to_use_fewer_than_2_folds(tmp_path):
    from conftest import make_rows, write_csv

    from freezeframe.data import load_labelled

    data = load_labelled(write_csv(tmp_path / "d.csv", [*make_rows(3), ("a lone example", "Other")]))
    with pytest.raises(FreezeframeError, match="class 'Other' has a single example") as caught:
        make_splits(data, None, 2, 1)
    assert "smaller --folds" not in str(caught.value) and "--test FILE" in str(caught.value)
    with pytest.raises(FreezeframeError, match="pass a smaller --folds"):
        make_splits(load_labelled(write_csv(tmp_path / "e.csv", make_rows(2))), None, 3, 1)


def test_the_copies_of_a_repeated_text_share_a_fold_and_a_side_of_the_validation_split(tmp_path):
    from conftest import make_rows, write_csv

    from freezeframe.data import load_labelled
    from freezeframe.splits import split_train_valid

    rows = make_rows(20, seed=3)
    copies = [(text.upper(), label) for text, label in rows[12:18]]  # the same input to an uncased encoder
    data = load_labelled(write_csv(tmp_path / "d.csv", rows + rows[:12] + copies))  # 18 texts twice
    for split in make_splits(data, None, 4, 2):
        assert not {t.casefold() for t in split.train.texts} & {t.casefold() for t in split.test.texts}
        assert min(split.test.labels.count(label) for label in data.label_names) >= 2  # still stratified
    for seed in range(5):
        fit, valid = split_train_valid(data, 0.25, seed)
        assert not {t.casefold() for t in fit.texts} & {t.casefold() for t in valid.texts}
        assert len(fit) + len(valid) == len(data)
    # without repeated texts the folds are scikit-learn's StratifiedKFold's, as before
    from sklearn.model_selection import StratifiedKFold

    unique = load_labelled(write_csv(tmp_path / "u.csv", rows))
    expected = [sorted(test) for _, test in StratifiedKFold(4, shuffle=True, random_state=0).split(unique.texts, unique.labels)]
    assert [s.test_items for s in make_splits(unique, None, 4, 1)] == expected


def test_the_learning_curve_of_an_ensemble_says_it_is_the_first_members():
    from freezeframe.report import _example_histories
    from freezeframe.results import RunRecord

    def record(config, members, seed=0, fold=1):
        return RunRecord(config, seed, fold, {}, [], [], [{"epoch": 1}], 1, 2, 1.0, 10, 100, members)

    records = [record("encoder", 2), record("head", 1), record("encoder", 2, seed=1)]
    assert list(_example_histories(records, ["encoder", "head"])) == [
        "encoder (seed 0, fold 1, member 1 of 2)", "head (seed 0, fold 1)"]


@pytest.mark.parametrize(("rows", "configs", "message"), [
    # the rarest class has 2 examples: a fold's training part keeps 1, which the baseline's hold-out cannot split
    (2, "encoder,baseline", ("class 'Other' has fewer than 2 examples, too few to split into training and validation; "
                             "--configs baseline holds out 15% of it for early stopping: pass --valid-fraction 0 or a --test FILE\n")),
    # three copies of one text share a fold: the other fold's training part has none of them
    (3, "encoder", ("no example of 'Other' (the copies of a repeated text share a fold); add examples of it or pass a "
                    "--test FILE")),
])
def test_a_fold_no_configuration_could_train_on_is_refused_before_the_first_run(run_cli, tiny_model_dir, tmp_path,
                                                                               monkeypatch, rows, configs, message):
    """Both failed part-way, after earlier runs had trained (the first told to pass train's --valid FILE)."""
    from conftest import make_rows, write_csv

    import freezeframe.compare

    def never(*args, **kwargs):
        raise AssertionError("a run started")

    other = [("a lone example", "Other")] * rows if rows == 3 else [("a lone example", "Other"), ("another one", "Other")]
    data = write_csv(tmp_path / "d.csv", [*make_rows(4), *other])
    monkeypatch.setattr(freezeframe.compare, "_run_all", never)
    code, _, err = run_cli("compare", "--train", data, "--model", tiny_model_dir, "--folds", "2", "--configs", configs,
                           "--out", tmp_path / "report", "--quiet")
    assert code == 2 and message in err, err
    assert not (tmp_path / "report").exists()


def test_the_hold_out_refusal_with_a_test_file_offers_no_folds_and_no_test_file(run_cli, tiny_model_dir, tmp_path,
                                                                                monkeypatch):
    """--test takes no --folds and is already given (both were offered; --folds 2, which cannot be smaller, is above)."""
    from conftest import make_rows, write_csv

    import freezeframe.compare

    monkeypatch.setattr(freezeframe.compare, "_run_all", lambda *args, **kwargs: pytest.fail("a run started"))
    data = write_csv(tmp_path / "d.csv", [*make_rows(6), ("a lone example", "Other")])
    test = write_csv(tmp_path / "t.csv", make_rows(2, seed=3))
    code, _, err = run_cli("compare", "--train", data, "--test", test, "--model", tiny_model_dir, "--configs", "baseline",
                           "--out", tmp_path / "report", "--quiet")
    assert code == 2 and "holds out 15% of it for early stopping: pass --valid-fraction 0\n" in err, err


def test_a_class_the_test_file_lacks_has_no_recall_and_is_not_called_the_hardest(run_cli, tiny_data, tiny_model_dir,
                                                                                 tmp_path):
    """Its recall was reported as 0.000, and the report's reading named it the hardest class, without a warning."""
    from conftest import make_rows, write_csv

    test = write_csv(tmp_path / "test.csv", [row for row in make_rows(6, seed=2) if row[1] != "Story"])
    out = tmp_path / "report"
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", test, "--model", tiny_model_dir,
                           "--configs", "baseline", "--epochs", "2", "--out", out, "--quiet")
    assert code == 0, err
    assert f"warning: {test} has no examples of 'Story'; recall 0 for it counts in the macro-F1" in err
    recall = json.loads((out / "results.json").read_text())["configs"]["baseline"]["per_class_recall"]
    assert recall["Story"] is None and 0 <= recall["Characters"] <= 1
    markdown = (out / "report.md").read_text()
    assert "| baseline | " in markdown and "| no test items |" in markdown
    assert "the hardest class was Story" not in markdown and "the hardest class was C" in markdown


def test_label_names_with_markdown_characters_keep_report_md_tables_whole():
    from freezeframe.report import Block, render_markdown

    markdown = render_markdown([Block("p", "the hardest class was <b>Story|plot</b> (p < 0.01)"),
                                Block("table", header=["configuration", "<b>Story|plot</b>", "Cinematography"],
                                      rows=[["baseline", "0.500", "0.875"]])])
    lines = markdown.splitlines()
    assert lines[0] == "the hardest class was \\<b>Story|plot\\</b> (p < 0.01)"  # shown as written, not as bold
    assert lines[2] == "| configuration | \\<b>Story\\|plot\\</b> | Cinematography |"
    assert [len(re.findall(r"(?<!\\)\|", line)) for line in lines[2:5]] == [4, 4, 4]  # three cells in every row


def test_predictions_name_each_items_data_row(run_cli, tiny_data, tmp_path):
    import csv

    lines = tiny_data["test"].read_text().splitlines()
    test = tmp_path / "test.csv"
    test.write_text("\n".join([lines[0], ",Story", *lines[1:]]) + "\n")  # data row 1 has no text: dropped
    out = tmp_path / "report"
    code, _, err = run_cli("compare", "--train", tiny_data["train"], "--test", test, "--configs", "baseline",
                           "--epochs", "1", "--out", out, "--quiet")
    assert code == 0, err
    rows = list(csv.DictReader((out / "predictions.csv").read_text().splitlines()))
    assert [(row["item"], row["row"]) for row in rows[:2]] == [("0", "2"), ("1", "3")]
    written = test.read_text().splitlines()
    assert all(row["label"] == next(csv.reader([written[int(row["row"])]]))[1] for row in rows)


def test_an_item_right_in_half_of_an_even_number_of_seeds_is_not_right():
    """With 2 seeds 'right in at least half of them' meant 'right in either': a configuration that is right by luck
    once got the credit, and McNemar saw a 34-point accuracy gap as 4 items against 3 (p = 1)."""
    from freezeframe.results import RunRecord, item_correctness

    labels, truth = ["a", "b"], ["a", "a", "a"]

    def record(seed: int, predictions: list[int]) -> RunRecord:
        return RunRecord("baseline", seed, 1, {}, predictions, [0, 1, 2], [], 1, 1, 0.0, 1, 1)

    right = item_correctness([record(0, [0, 0, 1]), record(1, [0, 1, 1])], labels, truth, 3)
    assert right.tolist() == [True, False, False], "right in both seeds, in one of two, in none"
    odd = item_correctness([record(0, [0, 0, 1]), record(1, [0, 1, 1]), record(2, [1, 0, 1])], labels, truth, 3)
    assert odd.tolist() == [True, True, False], "2 of 3 seeds is a majority, as before"


def test_the_paired_test_is_hedged_for_picking_the_best_of_several_encoders_on_the_same_items(report_dir):
    """The encoder tested against the baseline is the most accurate of the encoder configurations on the very items
    the test then counts: with several of them the p-value is optimistic, and it never counts retraining's variation."""
    from freezeframe.report import _significance_text, reading

    results = json.loads((report_dir / "results.json").read_text())
    test = results["significance"]
    assert test["chosen_from"] == ["head", "last-1"]
    test["p_value"], test["best_only_right"], test["baseline_only_right"] = 0.001, 20, 2
    said = next(s for s in reading(results) if "McNemar" in s)
    assert f"picked as the most accurate of 2 encoder configurations on these same {results['n_items']} items" in said
    assert "smaller than it would be for a configuration chosen in advance" in said
    section = _significance_text(test)
    assert "only source of chance" in section and "picked as the most accurate of 2" in section
    test["chosen_from"] = [test["compared"][0]]
    assert "picked as the most accurate" not in next(s for s in reading(results) if "McNemar" in s)
    del test["chosen_from"]  # results.json written before the key existed
    assert "picked" not in _significance_text(test)


def test_the_report_says_its_standard_deviation_is_the_sample_one(report_dir):
    """± is numpy's ddof=1 spread of the runs; a reader recomputing it with the population formula would differ."""
    results = json.loads((report_dir / "results.json").read_text())
    runs = results["configs"]["head"]["accuracy"]["runs"]
    assert results["configs"]["head"]["accuracy"]["std"] == pytest.approx(np.std(runs, ddof=1))
    assert results["spread"] == "mean and sample standard deviation (n - 1) over the runs; a run is one fold of one seed"
    markdown = (report_dir / "report.md").read_text()
    assert "## Results (mean ± sample standard deviation over the 3 runs, n − 1)" in markdown


def test_a_p_value_for_items_favouring_the_baseline_does_not_confirm_an_encoder_ahead_on_mean_accuracy(report_dir):
    """Mean accuracy over runs and the items right in most seeds can point opposite ways; the reading called the
    encoder's lead 'very unlikely to be chance' with p computed from items that favoured the baseline."""
    from freezeframe.report import reading

    results = json.loads((report_dir / "results.json").read_text())
    test = results["significance"]
    encoder, baseline = test["compared"]
    results["configs"][encoder]["accuracy"]["mean"], results["configs"][baseline]["accuracy"]["mean"] = 0.8, 0.7
    test["p_value"], test["best_only_right"], test["baseline_only_right"] = 0.001, 2, 20
    said = next(s for s in reading(results) if "McNemar" in s)
    assert "unlikely to be chance" not in said
    assert "point opposite ways" in said
    test["best_only_right"], test["baseline_only_right"] = 20, 2
    assert "very unlikely to be chance" in next(s for s in reading(results) if "McNemar" in s)


def test_learning_curves_of_a_test_file_comparison_name_no_fold():
    """Under --test every seed trains on the whole training file: 'fold 1' in a panel title named a fold that never was."""
    from freezeframe.report import _example_histories
    from freezeframe.results import RunRecord

    records = [RunRecord("head", 0, 1, {}, [], [], [{"epoch": 1}], 1, 2, 1.0, 10, 100, 1)]
    assert list(_example_histories(records, ["head"], folds=False)) == ["head (seed 0, test file)"]
    assert list(_example_histories(records, ["head"])) == ["head (seed 0, fold 1)"]


def test_confusion_matrix_panels_say_their_counts_pool_every_run(report_dir):
    """The PNG's counts sum to items x seeds; a panel titled by the configuration alone read as one run's."""
    from freezeframe.report import _pooled_matrices

    results = json.loads((report_dir / "results.json").read_text())
    panels = _pooled_matrices(results)
    assert list(panels) == ["baseline (3 runs pooled)", "head (3 runs pooled)", "last-1 (3 runs pooled)"]
    assert panels["head (3 runs pooled)"] == results["configs"]["head"]["confusion_matrix"]
    results["n_runs"] = 1
    assert "baseline" in _pooled_matrices(results)


@pytest.mark.parametrize("members", [1, 2, 3])
def test_repetitions_share_no_ensemble_member(tiny_data, tiny_model_dir, monkeypatch, members):
    """Repetition r trained members with seeds r..r+K-1, so repetitions 0 and 1 of the default's two members both
    trained seed 1: on a --test file identically, which shrank the spread between repetitions. Repetition r now
    takes seeds r*K..r*K+K-1; a single model keeps seed r."""
    import freezeframe.config

    monkeypatch.setattr(freezeframe.config, "default_members", lambda model, train: members)
    settings = CompareConfig(train=tiny_data["train"], test=tiny_data["test"], model=str(tiny_model_dir),
                             configs=["encoder"], seeds=3)
    seeds = [[run.train.seed + k for k in range(run.train.ensemble)]
             for run in (settings.run_config("encoder", r) for r in range(3))]
    assert seeds == [list(range(r * members, (r + 1) * members)) for r in range(3)]


def test_the_results_heading_of_a_single_run_claims_no_standard_deviation(report_dir):
    """With one run per configuration (a --test file, one seed) the heading read 'sample standard deviation over the
    1 runs, n − 1', a spread that one run does not have (every ± is 0)."""
    from freezeframe.report import render_markdown, report_blocks

    results = json.loads((report_dir / "results.json").read_text())
    results["n_runs"] = 1
    markdown = render_markdown(report_blocks(results))
    assert "over the 1 runs" not in markdown
    assert "## Results (one run per configuration: no spread, so every ± is 0)" in markdown


def test_the_report_says_which_seeds_a_repetition_of_an_ensemble_trains(report_dir):
    """results.json's seeds are the repetitions; since repetition r of K members trains seeds rK..rK+K-1, 'seeds 0, 1, 2'
    in the report named seeds that the default's two members did not all train with."""
    markdown = (report_dir / "report.md").read_text()
    assert "; repetitions 0 (repetition r shuffles with seed r and trains seed r, or seeds rK to rK + K − 1 for a " \
           "configuration of K members);" in markdown and "; seeds 0;" not in markdown
