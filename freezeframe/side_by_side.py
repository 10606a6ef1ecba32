"""Several saved classifiers scored on the same labelled data, side by side: one table of their metrics, their
confusion matrices, and McNemar's exact test of each against the first (the course notebooks' final comparison)."""

from __future__ import annotations

from pathlib import Path

from freezeframe.data import class_order
from freezeframe.errors import FreezeframeError
from freezeframe.evaluate import (
    MATRIX_WIDTH,
    check_data_argument,
    check_plots,
    confusion_lines,
    load_scored_data,
    mcnemar_exact,
    plot_confusion_matrices,
    score_classifier,
    write_plots,
)
from freezeframe.frames import LabelledFrame

PLOTS_FILE = "confusion_matrices.png"
"""What ``evaluate --plots`` writes with several models: one confusion-matrix panel per model, on one colour scale."""

CHANCE_CAVEAT = "McNemar's test counts only the choice of test items as chance (not retraining on other data or seeds)."


def evaluate_models(
    model_dirs: list[Path], data_path: Path | LabelledFrame, text_column: str = "review", label_column: str = "aspect",
    normalize_labels: bool = False, batch_size: int = 64, plots: Path | None = None, overwrite: bool = False,
    backend: str = "torch", quantize: str = "none",
) -> dict:
    """Load several saved classifiers and score each on the same labelled file or DataFrame.

    Args:
        model_dirs: model directories ``train`` wrote (usually two or more), each once, knowing the same classes.
        data_path, text_column, label_column, normalize_labels, batch_size, backend, quantize: as for
            :func:`~freezeframe.evaluate.evaluate_model` (the backend applies to every model).
        plots: a directory to write ``confusion_matrices.png`` into (one panel per model, one colour scale);
            it is checked before any work.
        overwrite: replace that file where ``plots`` has it already (else refused before any work).

    Returns:
        ``models``: each model's metrics (:func:`~freezeframe.evaluate.compute_metrics`, classes in the first
        model's order) under its name (its directory's name, or the path where two share one), and ``mcnemar``:
        McNemar's exact test of each later model against the first (``a``, ``b``, ``a_only_right``,
        ``b_only_right``, ``p_value``).
    """
    from freezeframe.predict import load_predictor

    check_data_argument(data_path)
    model_dirs = [Path(d) for d in model_dirs]
    names = model_names(model_dirs)
    plots = check_plots(plots, (PLOTS_FILE,), overwrite)
    classifiers = [load_predictor(d, backend, quantize) for d in model_dirs]
    _check_same_classes(names, [c.labels for c in classifiers])
    labels = list(classifiers[0].labels)
    data = load_scored_data(data_path, text_column, label_column, normalize_labels, labels)  # read and reported once
    models, right = {}, {}
    for name, classifier in zip(names, classifiers):
        models[name], right[name] = score_classifier(classifier, data, batch_size, labels)
    first = names[0]
    tests = []
    for name in names[1:]:
        result = mcnemar_exact(right[first], right[name])
        tests.append({"a": first, "b": name, "a_only_right": result["first_only"],
                      "b_only_right": result["second_only"], "p_value": result["p_value"]})
    if plots is not None:
        matrices = {name: metrics["confusion_matrix"] for name, metrics in models.items()}
        write_plots(plots, [(PLOTS_FILE, lambda path: plot_confusion_matrices(matrices, labels, path))])
    return {"models": models, "mcnemar": tests}


def model_names(model_dirs: list[Path]) -> list[str]:
    """Each model's name: its directory's name, or the path as given where two directories share a name.

    Raises:
        FreezeframeError: a directory given twice (the same directory under two spellings counts).
    """
    if not model_dirs:
        raise FreezeframeError("evaluate needs at least one --model")
    seen: dict[Path, Path] = {}
    for directory in model_dirs:
        key = directory.resolve()
        if key in seen:
            twice = str(directory) if str(directory) == str(seen[key]) else f"{seen[key]} and {directory}"
            raise FreezeframeError(f"--model {twice}: the same model directory given twice; give each model once")
        seen[key] = directory
    short = [d.name or str(d) for d in model_dirs]
    return [name if short.count(name) == 1 else str(d) for name, d in zip(short, model_dirs)]


def _check_same_classes(names: list[str], label_lists: list[list[str]]) -> None:
    first = set(label_lists[0])
    for name, labels in zip(names[1:], label_lists[1:]):
        if set(labels) != first:
            raise FreezeframeError(
                f"--model {names[0]} knows the classes {', '.join(sorted(first, key=class_order))} but --model {name} "
                f"knows {', '.join(sorted(labels, key=class_order))}: models side by side must know the same classes")


def format_comparison(result: dict) -> str:
    """The side-by-side metrics, confusion matrices and McNemar tests as plain text for a terminal."""
    models = result["models"]
    names, labels = list(models), next(iter(models.values()))["labels"]
    rows = [("accuracy", "accuracy"), ("macro precision", "macro_precision"), ("macro recall", "macro_recall"),
            ("macro F1", "macro_f1")]
    heads = [*(head for head, _ in rows), *(f"recall {label}" for label in labels)]
    width = max(len(head) for head in heads)
    cell = max(8, *(len(name) for name in names))
    lines = [f"{'':<{width}}  " + "  ".join(f"{name:>{cell}}" for name in names)]
    for head, key in rows:
        lines.append(f"{head:<{width}}  " + "  ".join(f"{models[name][key]:>{cell}.4f}" for name in names))
    for label in labels:
        lines.append(f"{'recall ' + label:<{width}}  "
                     + "  ".join(f"{models[name]['per_class'][label]['recall']:>{cell}.4f}" for name in names))
    lines += [f"{'n':<{width}}  " + "  ".join(f"{models[name]['n']:>{cell}d}" for name in names), ""]
    lines += _matrices_lines(models, labels)
    if result["mcnemar"]:
        lines += ["", f"McNemar's exact test against {names[0]} on the same {models[names[0]]['n']} items:"]
        for test in result["mcnemar"]:
            lines.append(f"  {test['b']}: right where {test['a']} was wrong {_times(test['b_only_right'])}, "
                         f"{test['a']} right alone {_times(test['a_only_right'])}, p = {test['p_value']:.3g}")
        lines.append(CHANCE_CAVEAT)
    return "\n".join(lines)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _matrices_lines(models: dict[str, dict], labels: list[str]) -> list[str]:
    """The models' confusion matrices side by side, the row names once at the left, where that fits in the
    terminal; else each under its model's name, in turn."""
    width = max(12, *(len(label) for label in labels))
    named = {name: confusion_lines(labels, metrics["confusion_matrix"], width) for name, metrics in models.items()}
    bare = {name: confusion_lines(labels, metrics["confusion_matrix"], width, names_shown=False)
            for name, metrics in models.items()}
    first = next(iter(models))
    lead = len(named[first][1]) - len(bare[first][1])  # the row names' column, gap included
    widths = {name: max(len(name), *map(len, block[1:])) for name, block in bare.items()}
    gap = "    "
    if lead + sum(widths.values()) + len(gap) * (len(models) - 1) > MATRIX_WIDTH:
        lines = []
        for name, block in named.items():
            lines += [*([""] if lines else []), f"{name}: {block[0]}", *block[1:]]
        return lines
    rows = [[name for name in models], *zip(*(block[1:] for block in bare.values()))]
    leads = ["", "", *(line[:lead] for line in named[first][2:])]
    return [named[first][0], *((f"{head:<{lead}}" + gap.join(f"{part:<{widths[name]}}" for part, name in zip(row, models))).rstrip()
                               for head, row in zip(leads, rows))]
