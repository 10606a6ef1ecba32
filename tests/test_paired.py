"""The paired comparison over runs: the corrected resampled t-test, Holm's adjustment and how the report words them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from freezeframe.compare import CompareConfig
from freezeframe.data import LabelledTexts
from freezeframe.evaluate import corrected_resampled_ttest, holm_adjusted
from freezeframe.paired import CORRECTED_TEST, SEED_TEST
from freezeframe.report import render_markdown, report_blocks
from freezeframe.results import RunRecord, summarize

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["a", "b"]


def _records(accuracies: dict[str, list[float]], folds: int | None, seeds: int) -> list[RunRecord]:
    """Runs that scored the given accuracies, repetition by repetition, fold by fold (20 items per run)."""
    records = []
    for name, values in accuracies.items():
        splits = [(seed, fold) for seed in range(seeds) for fold in range(1, (folds or 1) + 1)]
        for (seed, fold), accuracy in zip(splits, values):
            right = round(20 * accuracy)
            metrics = {"accuracy": accuracy, "macro_f1": accuracy, "confusion_matrix": [[right, 20 - right], [0, 0]]}
            items = list(range(20 * (fold - 1), 20 * fold)) if folds else list(range(20))
            records.append(RunRecord(name, seed, fold, metrics, [0] * right + [1] * (20 - right), items, [], 1, 2, 1.0,
                                     10, 100, 1, [0] * 20))
    return records


def _summarize(accuracies: dict[str, list[float]], folds: int | None, seeds: int) -> dict:
    settings = CompareConfig(Path("train.csv"), test=None if folds else Path("test.csv"), folds=folds, seeds=seeds,
                             configs=list(accuracies))
    items = 20 * (folds or 1)
    evaluated = LabelledTexts([f"text {i}" for i in range(items)], ["a"] * items, list(range(2, items + 2)), "train.csv")
    return summarize(settings, _records(accuracies, folds, seeds), LABELS, evaluated)


# 2 folds x 2 seeds: best minus other = 0.10, 0.05, 0.00, 0.10
ACCURACIES = {"baseline": [0.80, 0.75, 0.85, 0.85], "head": [0.90, 0.80, 0.85, 0.95]}


def test_the_corrected_t_statistic_and_p_match_a_hand_computation():
    """d = 0.10, 0.05, 0, 0.10: mean 0.0625, s² = 0.006875 / 3; with 2 folds n_test/n_train = 1, so the corrected
    variance of the mean is (1/4 + 1) s², and Student's t with 3 degrees of freedom has a closed-form CDF."""
    paired = _summarize(ACCURACIES, folds=2, seeds=2)["paired"]
    assert paired["best"] == "head" and list(paired["configs"]) == ["baseline"]
    result = paired["configs"]["baseline"]
    variance = 0.006875 / 3
    std_error = math.sqrt((1 / 4 + 1) * variance)
    t = 0.0625 / std_error
    # two-sided p of Student's t, 3 degrees of freedom: 1 - (2/pi) (atan(t/sqrt3) + (t/sqrt3) / (1 + t²/3))
    x = t / math.sqrt(3)
    p = 1 - (2 / math.pi) * (math.atan(x) + x / (1 + x * x))
    assert result["n"] == 4 and result["df"] == 3 and result["n_test_over_n_train"] == 1.0
    assert result["mean_difference"] == pytest.approx(0.0625)
    assert result["std_error_corrected"] == pytest.approx(std_error)
    assert result["t"] == pytest.approx(t) and t == pytest.approx(1.1677, abs=1e-4)
    assert result["p_value"] == pytest.approx(p) and result["p_holm"] == pytest.approx(p), "one comparison: Holm is p"
    half = 3.182446305284263 * std_error  # t(0.975, 3)
    assert result["ci95"] == pytest.approx([0.0625 - half, 0.0625 + half])
    assert result["test"] == CORRECTED_TEST
    uncorrected = corrected_resampled_ttest([0.10, 0.05, 0.0, 0.10], 0.0)
    assert uncorrected["t"] == pytest.approx(0.0625 / math.sqrt(variance / 4)), "ratio 0 is the plain paired t-test"


def test_the_runs_pair_by_split_and_seed_not_by_position():
    """A record list in another order pairs the same runs: each difference is taken within one (seed, fold)."""
    settings = CompareConfig(Path("train.csv"), folds=2, seeds=2, configs=list(ACCURACIES))
    evaluated = LabelledTexts([f"t{i}" for i in range(40)], ["a"] * 40, list(range(2, 42)), "train.csv")
    records = _records(ACCURACIES, folds=2, seeds=2)
    shuffled = summarize(settings, records[::-1], LABELS, evaluated)["paired"]
    assert shuffled["configs"]["baseline"]["t"] == pytest.approx(_summarize(ACCURACIES, 2, 2)["paired"]["configs"]
                                                                 ["baseline"]["t"])


def test_holm_multiplies_the_kth_smallest_by_m_minus_k_plus_1_and_keeps_the_order():
    assert holm_adjusted([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_report_gives_the_paired_result_instead_of_comparing_standard_deviations():
    results = _summarize(ACCURACIES, folds=2, seeds=2)
    markdown = render_markdown(report_blocks(results))
    assert "run-to-run standard deviation" not in markdown
    assert ("baseline reached 0.812 ± 0.048, 6.2 percentage points below head (paired over 4 runs sharing a fold and "
            "repetition: difference +0.062 ± 0.054 (standard error), 95% interval −0.108 to +0.233, corrected p = 0.33, "
            "Holm-adjusted 0.33: not a firm ordering at the 5% level).") in markdown
    assert "## Paired differences with head over runs (accuracy)" in markdown
    assert "| baseline | 4 | +0.062 | 0.054 | −0.108 to +0.233 | 1.17 | 0.33 | 0.33 |" in markdown
    assert "n_test/n_train = 1.000" in markdown and "Holm's method for the 1 comparison tested" in markdown
    assert "## Paired significance test on the items (McNemar)" in markdown, "McNemar's test on the items stays"


def test_on_a_test_file_the_t_test_is_over_seeds_and_says_it_covers_them_only():
    """Every run shares its training and test data: no overlap correction, and a spread that is the seeds' alone."""
    results = _summarize({"baseline": [0.80, 0.75, 0.85], "head": [0.90, 0.80, 0.90]}, folds=None, seeds=3)
    paired = results["paired"]
    result = paired["configs"]["baseline"]
    assert paired["test"] == SEED_TEST and result["n_test_over_n_train"] == 0.0 and result["n"] == 3
    assert result["t"] == pytest.approx(0.0666667 / math.sqrt(0.0008333 / 3), rel=1e-4)
    markdown = render_markdown(report_blocks(results))
    assert "paired over 3 seeds on the same test file" in markdown and "paired t-test over seeds p =" in markdown
    assert "the repetitions differ by seed alone" in markdown and "Its spread covers the seeds' variation only" in markdown
    assert "Nadeau-Bengio" not in markdown


def test_one_run_per_configuration_gets_no_t_test_and_says_why():
    results = _summarize({"baseline": [0.80], "head": [0.90]}, folds=None, seeds=1)
    result = results["paired"]["configs"]["baseline"]
    assert result["p_value"] is None and result["t"] is None and result["ci95"] is None
    assert result["mean_difference"] == pytest.approx(0.10) and "a spread needs at least two" in result["reason"]
    markdown = render_markdown(report_blocks(results))
    assert "(one run each, so there is no run-to-run spread to judge this gap by)" in markdown
    assert "No t-test: 1 paired run: a spread needs at least two." in markdown
    assert "| baseline | 1 | +0.100 | — | — | — | no test | — |" in markdown


def test_differences_that_never_vary_get_no_t_test():
    """The same gap in every pair has a variance of 0: t would be infinite (or 0/0), not evidence."""
    results = _summarize({"baseline": [0.80, 0.70, 0.75, 0.85], "head": [0.85, 0.75, 0.80, 0.90]}, folds=2, seeds=2)
    result = results["paired"]["configs"]["baseline"]
    assert result["p_value"] is None and "every paired difference was 0.050" in result["reason"]
    assert "paired over 4 runs, every paired difference was 0.050: no spread to test it against" in \
        render_markdown(report_blocks(results))


def test_a_single_configuration_has_nothing_to_pair_and_no_empty_table():
    results = _summarize({"head": [0.90, 0.80, 0.85, 0.95]}, folds=2, seeds=2)
    assert results["paired"]["best"] == "head" and results["paired"]["configs"] == {}
    markdown = render_markdown(report_blocks(results))
    assert "Only one configuration: nothing to pair it with." in markdown and "mean difference to head" not in markdown
