"""The paired comparison of the most accurate configuration with every other one, run by run.

Every configuration trains and tests on the same splits, so the runs of two configurations pair up by split and
repetition (same fold, same seed), and the difference of their accuracies in each pair removes what the split
itself contributes. :func:`paired_comparison` tests those differences with the corrected resampled t-test of
:func:`freezeframe.evaluate.corrected_resampled_ttest` (under cross-validation) or the plain paired t-test over
seeds (on a ``--test`` file), Holm-adjusts the p-values over the comparisons, and gives results.json its
``paired`` section; the ``paired_*`` text functions word it for the report.
"""

from __future__ import annotations

from freezeframe.evaluate import corrected_resampled_ttest, holm_adjusted
from freezeframe.tables import counted

CORRECTED_TEST = ("Nadeau-Bengio corrected resampled t-test (paired over runs sharing a fold and repetition; variance "
                  "(1/n + n_test/n_train) s², df n - 1)")
SEED_TEST = ("paired t-test over seeds, uncorrected (every run trained on the same data and was tested on the same "
             "file, so its spread covers the seeds' variation only)")
DIFFERENCE = "accuracy of the best configuration minus the configuration's, in each pair of runs sharing a split and seed"
HOLM = ("p_holm: Holm's step-down adjustment of p_value over the comparisons with the best configuration that were "
        "tested; read p_holm when asking whether any of them differs")

Run = tuple[int, int]
"""A run's (repetition, fold); on a ``--test`` file the fold is always 1."""


def test_train_ratio(folds: int | None) -> float | None:
    """n_test/n_train of a fold: each item is tested once per repetition, so a fold's mean test part is 1/k of the
    items and its mean training part the other (k - 1)/k; ``None`` on a ``--test`` file, where it does not apply."""
    return None if folds is None else 1.0 / (folds - 1)


def runs_in_order(runs: list[float], seeds: list[int], folds: int | None) -> dict[Run, float]:
    """results.json's ``runs`` of one configuration keyed by run: they are listed repetition by repetition, fold by
    fold within one (the order of :func:`freezeframe.splits.make_splits`), for every configuration alike."""
    per_seed = folds or 1
    if len(runs) != len(seeds) * per_seed:
        raise ValueError(f"runs: expected {len(seeds)} repetitions x {per_seed} folds = {len(seeds) * per_seed} "
                         f"accuracies, got {len(runs)}")
    return {(seeds[i // per_seed], i % per_seed + 1): value for i, value in enumerate(runs)}


def paired_comparison(accuracy: dict[str, dict[Run, float]], folds: int | None) -> dict:
    """The ``paired`` section of results.json: the most accurate configuration against every other one.

    Args:
        accuracy: per configuration (in report order), the test accuracy of each run.
        folds: the number of cross-validation folds; ``None`` for a ``--test`` file.

    Returns:
        ``best``, what the differences are, the test, the n_test/n_train ratio, and per other configuration the
        result of :func:`~freezeframe.evaluate.corrected_resampled_ttest` with ``test``, ``n_test_over_n_train``
        and ``p_holm`` added.
    """
    means = {name: sum(runs.values()) / len(runs) for name, runs in accuracy.items()}
    best = max(means, key=lambda name: means[name])  # the first of equals, as the report ranks them
    ratio = test_train_ratio(folds)
    test = SEED_TEST if ratio is None else CORRECTED_TEST
    others = [name for name in accuracy if name != best]
    results = {}
    for name in others:
        shared = sorted(set(accuracy[best]) & set(accuracy[name]))
        differences = [accuracy[best][run] - accuracy[name][run] for run in shared]
        results[name] = {**corrected_resampled_ttest(differences, ratio or 0.0), "test": test,
                         "n_test_over_n_train": ratio or 0.0}
    for name, adjusted in zip(others, holm_adjusted([results[name]["p_value"] for name in others])):
        results[name]["p_holm"] = adjusted
    return {"best": best, "difference": DIFFERENCE, "test": test, "n_test_over_n_train": ratio or 0.0,
            "multiple_comparisons": HOLM, "configs": results}


def paired_clause(paired: dict, name: str) -> str:
    """How firm the gap between the best configuration and ``name`` is, for the report's reading."""
    result = paired["configs"][name]
    if result["p_value"] is None:
        if result["n"] < 2:
            return "one run each, so there is no run-to-run spread to judge this gap by"
        return f"paired over {result['n']} runs, {result['reason']}"
    low, high = result["ci95"]
    where = ("runs sharing a fold and repetition" if result["n_test_over_n_train"] else "seeds on the same test file")
    kind = "corrected p" if result["n_test_over_n_train"] else "paired t-test over seeds p"
    firm = "a firm ordering at the 5% level" if result["p_holm"] < 0.05 else "not a firm ordering at the 5% level"
    return (f"paired over {result['n']} {where}: difference {_signed(result['mean_difference'])} ± "
            f"{result['std_error_corrected']:.3f} (standard error), 95% interval {_signed(low)} to {_signed(high)}, "
            f"{kind} = {result['p_value']:.2g}, Holm-adjusted {result['p_holm']:.2g}: {firm}")


def paired_table(paired: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the report's paired table."""
    header = ["configuration", "paired runs", f"mean difference to {paired['best']}", "standard error",
              "95% interval", "t", "p", "p (Holm)"]
    rows = []
    for name, r in paired["configs"].items():
        if r["p_value"] is None:
            rows.append([name, str(r["n"]), _signed(r["mean_difference"]), "—", "—", "—", "no test", "—"])
            continue
        low, high = r["ci95"]
        rows.append([name, str(r["n"]), _signed(r["mean_difference"]), f"{r['std_error_corrected']:.3f}",
                     f"{_signed(low)} to {_signed(high)}", f"{r['t']:.2f}", f"{r['p_value']:.2g}", f"{r['p_holm']:.2g}"])
    return header, rows


def paired_note(paired: dict) -> str:
    """What the paired table's test is, what its spread covers and what it does not claim."""
    best, results = paired["best"], paired["configs"]
    if not results:
        return "Only one configuration: nothing to pair it with."
    lead = (f"Each difference is {best}'s accuracy minus the configuration's in a pair of runs that shared a split "
            "and seed, so what the split itself contributes cancels out. ")
    if all(r["p_value"] is None for r in results.values()):
        reasons = sorted({r["reason"] for r in results.values()})
        return lead + f"No t-test: {'; '.join(reasons)}."
    if paired["n_test_over_n_train"]:
        test = (f"The test is the Nadeau-Bengio corrected resampled t-test: the runs of repeated cross-validation "
                f"share most of their training texts, so the plain paired t-test would understate the variance; the "
                f"correction takes (1/n + n_test/n_train) s² with n_test/n_train = {paired['n_test_over_n_train']:.3f}, "
                "and the 95% interval uses the same corrected variance (Student's t, n − 1 degrees of freedom). ")
    else:
        test = ("Every run trained on the same data and was tested on the same file, so the repetitions differ by "
                "seed alone: the correction for overlapping training sets does not apply, and this is the plain paired "
                "t-test over seeds. Its spread covers the seeds' variation only, not what other training or test data "
                "would bring (McNemar's test below speaks for the test items). ")
    tested = counted(sum(r["p_value"] is not None for r in results.values()), "comparison")
    return (lead + test + f"p is for each comparison on its own; p (Holm) is adjusted by Holm's method for the {tested} "
            f"tested, and the report's verdicts read it. {best} was picked as the most accurate on these same runs, so "
            "the differences lean its way.")


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")
