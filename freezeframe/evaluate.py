"""Metrics of a classifier on labelled data, as a table, a JSON object and plots; McNemar's test between two
classifiers on the same items, and the corrected resampled t-test between two configurations over paired runs."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np

from freezeframe.data import LabelledTexts, check_known_labels, load_labelled, warn_absent_labels
from freezeframe.errors import FreezeframeError
from freezeframe.frames import LabelledFrame, is_frame
from freezeframe.storage import atomic_write_bytes, check_output_path, check_writable

SIGNIFICANCE_TEST = "McNemar's exact test (two-sided binomial test on the discordant test items)"


def mcnemar_exact(first_right: np.ndarray, second_right: np.ndarray) -> dict:
    """McNemar's exact test of two classifiers on the same items.

    Returns:
        The discordant counts (``first_only``: first right, second wrong; ``second_only``) and
        the two-sided p-value of the binomial test of ``first_only`` against half the discordant items.
    """
    from scipy.stats import binomtest  # scipy only where a comparison is tested

    first_only = int(np.sum(first_right & ~second_right))
    second_only = int(np.sum(~first_right & second_right))
    discordant = first_only + second_only
    p_value = float(binomtest(first_only, discordant, 0.5).pvalue) if discordant else 1.0
    return {"first_only": first_only, "second_only": second_only, "p_value": p_value}


def corrected_resampled_ttest(differences: list[float], test_train_ratio: float) -> dict:
    """The Nadeau-Bengio corrected resampled t-test of paired differences (Nadeau & Bengio 2003).

    Runs of repeated k-fold cross-validation share most of their training texts, so their differences are
    correlated and the plain paired t-test's variance ``s²/n`` is too small; the correction takes
    ``(1/n + n_test/n_train) s²``. With ``test_train_ratio`` 0 it is the plain paired t-test.

    Args:
        differences: one difference per pair of runs that shared a split and seed.
        test_train_ratio: test texts over training texts of a fold (about 1/(k-1)); 0 for no correction.

    Returns:
        ``n``, ``mean_difference``, ``std_error_corrected``, ``ci95`` (the 95% interval of the mean difference
        with the corrected variance), ``t``, ``df`` and the two-sided ``p_value``; with fewer than two
        differences, or differences that are all the same, the last five are ``None`` and ``reason`` says why.
    """
    values = np.asarray(differences, dtype=float)
    n = len(values)
    result = {"n": n, "mean_difference": float(values.mean()) if n else None, "std_error_corrected": None,
              "ci95": None, "t": None, "df": None, "p_value": None}
    if n < 2:
        return {**result, "reason": f"{n} paired run{'' if n == 1 else 's'}: a spread needs at least two"}
    if np.allclose(values, values[0], rtol=0.0, atol=1e-12):  # float noise aside, one value: a variance of 0
        return {**result, "reason": f"every paired difference was {values[0]:.3f}: no spread to test it against"}
    from scipy.stats import t as student_t  # scipy only where a comparison is tested

    std_error = float(np.sqrt((1.0 / n + test_train_ratio) * values.var(ddof=1)))
    statistic, df = float(values.mean() / std_error), n - 1
    half = float(student_t.ppf(0.975, df)) * std_error
    mean = float(values.mean())
    return {**result, "std_error_corrected": std_error, "ci95": [mean - half, mean + half], "t": statistic,
            "df": df, "p_value": float(2.0 * student_t.sf(abs(statistic), df))}


def holm_adjusted(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of several p-values (``None``: not tested, not counted among them).

    The k-th smallest of m p-values is multiplied by m - k + 1, kept at least as large as the one before it, and
    capped at 1: rejecting where the adjusted p is below alpha keeps the chance of any false rejection below alpha.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def compute_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1, per-class scores and the confusion matrix.

    Args:
        y_true: true class indices.
        y_pred: predicted class indices.
        labels: class names in index order.

    Returns:
        A JSON-ready dict; ``confusion_matrix`` rows are true labels, columns predictions.
    """
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    hits, support, predicted = np.diag(matrix), matrix.sum(1), matrix.sum(0)
    precision, recall = _ratio(hits, predicted), _ratio(hits, support)
    f1 = _ratio(2 * hits, support + predicted)  # 2PR / (P + R), 0 where a class is never true nor predicted
    return {
        "accuracy": float(hits.sum() / len(y_true)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
        "n": len(y_true),
    }


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Element-wise ``top / bottom``, 0 where ``bottom`` is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(top, bottom, out=np.zeros(len(top)), where=bottom > 0)


def format_metrics(metrics: dict) -> str:
    """The metrics as a plain-text table a person reads in a terminal."""
    labels = metrics["labels"]
    width = max(12, *(len(label) for label in labels))
    lines = [
        (f"accuracy {metrics['accuracy']:.4f}   macro F1 {metrics['macro_f1']:.4f}   "
         f"macro precision {metrics['macro_precision']:.4f}   macro recall {metrics['macro_recall']:.4f}   n {metrics['n']}"),
        "",
        f"{'class':<{width}}  precision  recall     f1  support",
    ]
    for label in labels:
        s = metrics["per_class"][label]
        lines.append(f"{label:<{width}}  {s['precision']:9.4f}  {s['recall']:6.4f}  {s['f1']:.4f}  {s['support']:7d}")
    return "\n".join(lines + ["", *confusion_lines(labels, metrics["confusion_matrix"], width)])


MATRIX_WIDTH = 120
"""Wider than this with the class names as column heads, the confusion matrix numbers its columns instead."""


def confusion_lines(labels: list[str], matrix: list[list[int]], width: int, names_shown: bool = True) -> list[str]:
    """The confusion matrix as text, its columns headed by class names or, where those would make the lines
    wrap in a terminal (many or long names), by the numbers its rows carry; ``names_shown`` False leaves out
    the column of row names (for a matrix set beside another that shows them)."""
    cell = max(6, *(len(label) for label in labels))
    if width + 2 + len(labels) * (cell + 2) <= MATRIX_WIDTH:
        heads, names = [label[:cell] for label in labels], labels
        title = "confusion matrix (rows: true, columns: predicted)"
    else:
        cell = max(4, len(str(max(max(row) for row in matrix))), len(str(len(labels))))
        heads = [str(i) for i in range(1, len(labels) + 1)]
        names = [f"{i:>{len(heads[-1])}} {label}" for i, label in enumerate(labels, 1)]
        width = max(len(name) for name in names)
        title = "confusion matrix (rows: true, columns: predicted, numbered as the rows)"
    lead = (lambda name: f"{name:<{width}}  ") if names_shown else (lambda name: "")
    lines = [title, lead("") + "  ".join(f"{head:>{cell}}" for head in heads)]
    lines += [lead(name) + "  ".join(f"{v:>{cell}d}" for v in row) for name, row in zip(names, matrix)]
    return lines


PLOT_FILES = ("confusion_matrix.png", "learning_curve.png")
"""What ``evaluate --plots`` writes."""


def evaluate_model(
    model_dir: Path, data_path: Path | LabelledFrame, text_column: str = "review", label_column: str = "aspect",
    normalize_labels: bool = False, batch_size: int = 64, plots: Path | None = None, overwrite: bool = False,
    backend: str = "torch", quantize: str = "none",
) -> dict:
    """Load a saved classifier and score it on a labelled file or DataFrame.

    Args:
        model_dir: a model directory ``train`` wrote (or any Hugging Face sequence classifier).
        data_path: the labelled file to score (.csv, .tsv, .jsonl), or a pandas DataFrame with the same columns;
            the classifier's labels must cover its labels.
        text_column, label_column: its columns.
        normalize_labels: merge labels that differ only in case.
        batch_size: texts per forward pass.
        plots: a directory to write ``confusion_matrix.png`` (and ``learning_curve.png`` when the model
            recorded its epochs) into; it is checked before any work.
        overwrite: replace those files where ``plots`` has them already (else refused before any work).
        backend, quantize: score the torch weights, or the exported ONNX graph (``int8``: the quantized one),
            as :func:`~freezeframe.predict.load_predictor` loads them.

    Returns:
        The metrics of :func:`compute_metrics`.
    """
    from freezeframe.predict import load_predictor

    check_data_argument(data_path)
    model_dir, plots = Path(model_dir), check_plots(plots, PLOT_FILES, overwrite)
    classifier = load_predictor(model_dir, backend, quantize)
    data = load_scored_data(data_path, text_column, label_column, normalize_labels, classifier.labels)
    metrics, _ = score_classifier(classifier, data, batch_size)
    if plots is not None:
        meta, drawings = classifier.meta, [(PLOT_FILES[0], lambda path: plot_confusion_matrices(
            {model_dir.name: metrics["confusion_matrix"]}, metrics["labels"], path))]
        if meta.get("history"):
            # "member 0": the first member, as models saved before members were counted from 1 name it
            of = {"member 0": "member 1"}.get(meta.get("history_of"), meta.get("history_of"))
            name = model_dir.name + (f" ({of})" if of else "")
            drawings.append((PLOT_FILES[1], lambda path: plot_learning_curves(
                {name: (meta["history"], meta.get("best_epoch", 0))}, path)))
        write_plots(plots, drawings)
    return metrics


def check_data_argument(data_path: object) -> None:
    """Refuse a ``data_path`` that is neither a path nor a DataFrame (a programming slip, hence ``TypeError``)."""
    if not isinstance(data_path, (str, Path)) and not is_frame(data_path):
        raise TypeError(f"data_path takes the path of a labelled file or a pandas DataFrame, got {type(data_path).__name__}")


def check_plots(plots: Path | str | None, files: tuple[str, ...], overwrite: bool) -> Path | None:
    """Check a ``--plots`` directory before any work: writable, and not holding ``files`` unless ``overwrite``."""
    if plots is None:
        return None
    plots = Path(plots)
    check_output_path(plots, "--plots")
    check_writable(plots, f"--plots {plots}")  # an existing plots directory is written into, not replaced
    there = [name for name in files if (plots / name).exists()]
    if there and not overwrite:
        raise FreezeframeError(f"--plots {plots} already holds {' and '.join(there)}; pass --overwrite to replace "
                               f"{'it' if len(there) == 1 else 'them'}, or choose another directory")
    return plots


def load_scored_data(data_path: Path | LabelledFrame, text_column: str, label_column: str, normalize_labels: bool,
                     known: list[str]) -> LabelledTexts:
    """The labelled texts to score a classifier of the classes ``known`` on, checked against them (reported once)."""
    data = load_labelled(data_path, text_column, label_column, normalize_labels, known)
    check_known_labels(data, known)
    warn_absent_labels(data, known, "macro averages")
    return data


def score_classifier(classifier, data: LabelledTexts, batch_size: int,
                     labels: list[str] | None = None) -> tuple[dict, np.ndarray]:
    """Score a loaded classifier on labelled texts :func:`load_scored_data` read for its classes.

    Args:
        labels: the class order of the metrics (default: the classifier's own); it must hold the classifier's classes.

    Returns:
        The metrics of :func:`compute_metrics`, and for each row whether the classifier got it right.
    """
    probabilities = classifier.predict_proba(data.texts, batch_size=batch_size)
    order = list(labels or classifier.labels)
    index = {label: i for i, label in enumerate(order)}
    truth = np.asarray([index[y] for y in data.labels], dtype=np.int64)
    predicted = np.asarray([index[classifier.labels[k]] for k in probabilities.argmax(1)], dtype=np.int64)
    return compute_metrics(truth.tolist(), predicted.tolist(), order), truth == predicted


def write_plots(plots: Path, drawings: list[tuple[str, Callable[[Path], None]]]) -> None:
    """Draw each ``(file name, draw)`` into ``plots``: each file whole or absent, a directory made here removed if empty."""
    made = not plots.exists()
    try:
        plots.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FreezeframeError(f"--plots: cannot create {plots}: {err.strerror or err}") from None
    written = []
    try:
        for name, draw in drawings:
            draw(plots / name)
            written.append(name)
    except OSError as err:  # a full disk, a file-size limit: each file is whole or absent, and a new directory goes
        if made and not any(plots.iterdir()):
            plots.rmdir()
        failed, done = drawings[len(written)][0], f" ({' and '.join(written)} {'was' if len(written) == 1 else 'were'} written)" if written else ""
        raise FreezeframeError(f"--plots {plots}: cannot write {failed}: {err.strerror or err}{done}") from None


def save_figure(fig, path: Path, **options) -> None:
    """Write a matplotlib figure as a PNG whole or not at all (an interrupted run leaves any earlier file), and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, **options)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_confusion_matrices(matrices: dict[str, list[list[int]]], labels: list[str], path: Path) -> None:
    """Confusion matrices side by side on one colour scale, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(matrices)
    vmax = max(max(max(row) for row in m) for m in matrices.values()) or 1
    # constrained layout leaves room for each panel's label names, so long ones never overlap the next panel
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names) + 0.8, 4.4), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        matrix = np.asarray(matrices[name])
        image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > vmax / 2 else "black")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="count")
    save_figure(fig, path, bbox_inches="tight")


def plot_learning_curves(histories: dict[str, tuple[list[dict], int]], path: Path) -> None:
    """Train and validation loss per epoch, one panel per run, the kept (best) epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = list(histories)
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        history, best_epoch = histories[name]
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train loss")
        validated = any(r["valid_loss"] is not None for r in history)  # not when nothing was held out
        if validated:
            ax.plot(epochs, [r["valid_loss"] for r in history], marker="o", label="validation loss")
        if best_epoch:
            kept = "best epoch" if validated else "kept (last) epoch"
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"{kept} ({best_epoch})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
