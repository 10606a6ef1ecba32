"""The comparison report: results.json, plots, report.md and a self-contained report.html.

The report is assembled once as a list of blocks (headings, paragraphs, tables, images) and
rendered twice, as Markdown and as HTML with the images embedded, so the two never disagree.
Every sentence of the plain-language reading is generated from the numbers in results.json.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

from freezeframe.evaluate import plot_confusion_matrices, plot_learning_curves, save_figure
from freezeframe.layouts import REPORT_LAYOUT
from freezeframe.paired import paired_clause, paired_note, paired_table
from freezeframe.storage import atomic_directory
from freezeframe.tables import counted, percent

CONFUSION_PNG = "confusion_matrices.png"
CURVES_PNG = "learning_curves.png"
ACCURACY_PNG = "accuracy_per_run.png"


@dataclass
class Block:
    """One piece of the report: ``kind`` is h1, h2, p, table or image."""

    kind: str
    text: str = ""
    header: list[str] | None = None
    rows: list[list[str]] | None = None


def write_report(results: dict, records: list, out: Path, overwrite: bool = False,
                 data_rows: list[int] | None = None) -> None:
    """Write results.json, predictions.csv, the PNGs, report.md and report.html into ``out``.

    Args:
        results: the output of :func:`freezeframe.results.summarize`.
        records: the per-run records (:class:`freezeframe.results.RunRecord`) behind ``results``.
        out: the report directory; it appears complete or not at all.
        overwrite: replace an existing ``out``.
        data_rows: each test item's data row in its file (as warnings number them), for predictions.csv.
    """
    with atomic_directory(Path(out), overwrite, REPORT_LAYOUT) as staging:
        (staging / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
        _write_predictions(results, records, staging / "predictions.csv", data_rows)
        configs = results["configs"]
        plot_confusion_matrices(_pooled_matrices(results), results["labels"], staging / CONFUSION_PNG)
        plot_learning_curves(_example_histories(records, list(configs), results["settings"]["folds"] is not None),
                             staging / CURVES_PNG)
        plot_accuracy_runs(results, staging / ACCURACY_PNG)
        blocks = report_blocks(results)
        (staging / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (staging / "report.html").write_text(render_html(blocks, staging), encoding="utf-8")


def _pooled_matrices(results: dict) -> dict[str, list[list[int]]]:
    """Each configuration's confusion matrix, titled with the number of runs its counts add up."""
    runs = results["n_runs"]
    return {(f"{name} ({runs} runs pooled)" if runs > 1 else name): config["confusion_matrix"]
            for name, config in results["configs"].items()}


def _write_predictions(results: dict, records: list, path: Path, data_rows: list[int] | None) -> None:
    """One row per tested item and seed: the item's data row in its file, the true label and each
    configuration's prediction."""
    labels, names = results["labels"], list(results["configs"])
    rows: dict[tuple[int, int], dict] = {}
    for record in records:
        for item, predicted, true in zip(record.test_items, record.predictions, record.true_labels):
            row = rows.setdefault((record.seed, item), {"seed": record.seed, "fold": record.fold, "item": item,
                                                        "row": data_rows[item] if data_rows else "",
                                                        "label": labels[true]})
            row[record.config] = labels[predicted]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["seed", "fold", "item", "row", "label", *names])
        writer.writeheader()
        writer.writerows(rows[key] for key in sorted(rows))


def _example_histories(records: list, names: list[str], folds: bool = True) -> dict[str, tuple[list[dict], int]]:
    """The learning curves of the first split (seed 0, fold 1; under ``--test``, ``folds`` False: seed 0 on the
    test file) of each configuration."""
    first = min((r.seed, r.fold) for r in records)
    chosen = {r.config: r for r in records if (r.seed, r.fold) == first}
    label = f"seed {first[0]}, fold {first[1]}" if folds else f"seed {first[0]}, test file"

    def title(name: str) -> str:
        members = chosen[name].members
        return f"{name} ({label}" + (f", member 1 of {members}" if members > 1 else "") + ")"

    return {title(name): (chosen[name].history, chosen[name].best_epoch) for name in names}


def plot_accuracy_runs(results: dict, path: Path) -> None:
    """Test accuracy of every run, one column per configuration, mean ± std drawn over the dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["configs"])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.4, 3.8))
    for x, name in enumerate(names):
        accuracy = results["configs"][name]["accuracy"]
        runs = accuracy["runs"]
        offsets = [(i - (len(runs) - 1) / 2) * 0.06 for i in range(len(runs))]
        ax.scatter([x + o for o in offsets], runs, color="tab:blue", alpha=0.6, s=22, zorder=2)
        ax.errorbar(x + 0.28, accuracy["mean"], yerr=accuracy["std"], fmt="o", color="black", capsize=5, zorder=3)
        ax.annotate(f"{accuracy['mean']:.3f}", (x + 0.34, accuracy["mean"]), va="center", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.3)
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy of every run (dots) and mean ± std (black)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def _pm(spread: dict) -> str:
    return f"{spread['mean']:.3f} ± {spread['std']:.3f}"


def _results_heading(runs: int) -> str:
    """What the results table's ± is: a sample standard deviation needs two runs (one run's is shown as 0)."""
    if runs == 1:
        return "Results (one run per configuration: no spread, so every ± is 0)"
    return f"Results (mean ± sample standard deviation over the {runs} runs, n − 1)"


def _points(difference: float) -> str:
    return f"{abs(100 * difference):.1f} percentage points"


def _held_out_share(config: dict) -> float:
    """The share of each training part a configuration held out for early stopping (0: none);
    results written before the key existed always held out 15%."""
    return config.get("valid_fraction", 0.15)


def _holdout_sentence(configs: dict) -> str:
    """How each configuration used its training part: early stopping on a held-out share, or all of it."""
    by_share: dict[float, list[str]] = {}
    for name, config in configs.items():
        by_share.setdefault(_held_out_share(config), []).append(name)
    fixed = by_share.pop(0.0, [])
    parts = [f"{', '.join(names)} held out a stratified {percent(share)} of each training part for early stopping"
             for share, names in by_share.items()]
    if fixed:
        parts.append(f"{', '.join(fixed)} trained on all of it for {'its' if len(fixed) == 1 else 'their'} fixed schedule")
    return "; ".join(parts) + "."


def _chance_sentence(results: dict) -> str:
    """The test items by class, and what always guessing the most frequent one would score: the floor every
    configuration is read against."""
    counts = results.get("test_class_counts")  # absent from results.json files written before it was added
    if not counts:
        return ""
    shown = ", ".join(f"{label} {n}" for label, n in counts.items())
    return (f"Test items by class: {shown}; always guessing the most frequent class would score "
            f"{max(counts.values()) / sum(counts.values()):.3f}.")


def report_blocks(results: dict) -> list[Block]:
    """The report's content, in order."""
    settings, configs, labels = results["settings"], results["configs"], results["labels"]
    blocks = [
        Block("h1", "freezeframe comparison"),
        Block("p", f"Evaluation: {settings['evaluation']}; repetitions {', '.join(map(str, settings['seeds']))} (repetition "
                   "r shuffles with seed r and trains seed r, or seeds rK to rK + K − 1 for a configuration of K members); "
                   f"{results['n_runs']} run(s) per configuration on {results['n_items']} test items. "
                   f"Encoder: {settings['model']}. Every configuration saw identical splits. {_holdout_sentence(configs)} "
                   f"{_chance_sentence(results)}"),
        Block("h2", "What the numbers say"),
        *[Block("p", sentence) for sentence in reading(results)],
        Block("h2", _results_heading(results["n_runs"])),
        Block("table", header=["configuration", "accuracy", "macro-F1", "trainable parameters", "total parameters",
                               "train seconds per run (load, cache pass, epochs)", "best epoch"],
              rows=[[name, _pm(c["accuracy"]), _pm(c["macro_f1"]), f"{c['trainable_parameters']:,}",
                     f"{c['total_parameters']:,}", f"{c['train_seconds']['mean']:.1f}", f"{c['best_epoch']['mean']:.1f}"]
                    for name, c in configs.items()]),
        Block("h2", "Recall per class (all runs pooled)"),
        Block("table", header=["configuration", *labels],
              rows=[[name, *(_recall(c["per_class_recall"][label]) for label in labels)] for name, c in configs.items()]),
        *_paired_blocks(results.get("paired")),
        Block("h2", "Paired significance test on the items (McNemar)"),
        Block("p", _significance_text(results["significance"])),
        Block("h2", "Accuracy of every run"),
        Block("image", ACCURACY_PNG),
        Block("h2", "Confusion matrices (all runs pooled, one colour scale)"),
        Block("image", CONFUSION_PNG),
        Block("h2", "Learning curves (first split; dashed line: the epoch whose weights were kept)"),
        Block("image", CURVES_PNG),
    ]
    return blocks


def _paired_blocks(paired: dict | None) -> list[Block]:
    """The paired table and what its test is (none for results.json files written before it was added)."""
    if not paired:
        return []
    header, rows = paired_table(paired)
    table = [Block("table", header=header, rows=rows)] if rows else []  # a single configuration: nothing to pair
    return [Block("h2", f"Paired differences with {paired['best']} over runs (accuracy)"), *table,
            Block("p", paired_note(paired))]


def _recall(value: float | None) -> str:
    return "no test items" if value is None else f"{value:.3f}"


def _significance_text(test: dict) -> str:
    if test.get("p_value") is None:
        return f"Not run: {test['reason']}."
    best, baseline = test["compared"]
    return (f"{test['test']} between {best} (the most accurate encoder configuration) and {baseline} on the same "
            f"{test['items']} items: {best} alone was right on {test['best_only_right']}, {baseline} alone on "
            f"{test['baseline_only_right']}; p = {test['p_value']:.3g}. ({test['item_correct_rule'].capitalize()}.) "
            "The test takes the choice of test items as the only source of chance: the variation that retraining "
            "on other data or with other seeds brings is not in it." + _picked_caveat(test))


def _picked_caveat(test: dict) -> str:
    """When the encoder tested was picked as the best of several on the very items the test counts, its p-value is
    optimistic (results.json files written before ``chosen_from`` existed say nothing)."""
    candidates = len(test.get("chosen_from", []))
    if candidates < 2:
        return ""
    return (f" {test['compared'][0]} was picked as the most accurate of {candidates} encoder configurations on these "
            f"same {test['items']} items, so its p-value is smaller than it would be for a configuration chosen in advance.")


def reading(results: dict) -> list[str]:
    """A short plain-language reading of the results, every figure taken from ``results``."""
    configs = results["configs"]
    ranked = sorted(configs, key=lambda n: configs[n]["accuracy"]["mean"], reverse=True)
    best, top = ranked[0], configs[ranked[0]]
    runs = len(top["accuracy"]["runs"])
    sentences = [(f"{best} was the most accurate configuration: accuracy {_pm(top['accuracy'])} over {runs} run(s), "
                  f"macro-F1 {_pm(top['macro_f1'])}.")]
    sentences += _chance_level_sentence(results, ranked)
    for name in ranked[1:]:
        gap = top["accuracy"]["mean"] - configs[name]["accuracy"]["mean"]
        # the runs pair up by split and seed: their differences, not the unpaired spreads, say how firm the gap is
        paired = results.get("paired", {})  # absent from results.json files written before it was added
        firm = (paired_clause(paired, name) if paired.get("best") == best and name in paired["configs"]
                else "no paired comparison with it in these results")
        sentences.append(f"{name} reached {_pm(configs[name]['accuracy'])}, {_points(gap)} below {best} ({firm}).")
    test = results["significance"]
    if test.get("p_value") is not None:
        encoder, baseline = test["compared"]
        gain = configs[encoder]["accuracy"]["mean"] - configs[baseline]["accuracy"]["mean"]
        direction = "above" if gain >= 0 else "below"
        ahead, behind = test["best_only_right"], test["baseline_only_right"]
        if ahead != behind and gain != 0 and (ahead > behind) != (gain > 0):
            # the mean over runs and the items right in most seeds disagree: p speaks for the items' side only
            verdict = ("the item counts and the mean accuracies point opposite ways, so these data do not say "
                       "which of the two is better")
        elif test["p_value"] < 0.01:
            verdict = "a difference this large is very unlikely to be chance (p < 0.01)"
        elif test["p_value"] < 0.05:
            verdict = "unlikely to be chance at the 5% level, but not at 1%"
        else:
            verdict = "this could well be chance: these data do not separate the two"
        sentences.append(
            f"The pretrained encoder ({encoder}) scored {_points(gain)} {direction} the from-scratch baseline. "
            f"On the same items it was right where the baseline was wrong {counted(test['best_only_right'], 'time')} and wrong "
            f"where the baseline was right {counted(test['baseline_only_right'], 'time')}; McNemar's exact test gives "
            f"p = {test['p_value']:.2g}: {verdict}." + _picked_caveat(test))
    for name, c in configs.items():
        # without validation data the last epoch is kept by construction: it says nothing about improvement
        if _held_out_share(c) > 0 and c["runs_best_at_epoch_limit"] * 2 > len(c["accuracy"]["runs"]):
            sentences.append(
                f"{name} kept its last allowed epoch ({c['epoch_limit']}) in {c['runs_best_at_epoch_limit']} of "
                f"{len(c['accuracy']['runs'])} runs: it was still improving when training stopped, so more epochs or "
                f"a higher learning rate would probably raise its score.")
    sentences.append(_cost_sentence(configs, best))
    sentences.append(_hardest_class_sentence(results, best))
    return sentences


def _chance_level_sentence(results: dict, ranked: list[str]) -> list[str]:
    """Name the configurations no more accurate than always guessing the most frequent test class (on imbalanced
    data the most accurate configuration can be one of them); no sentence when every one is above it."""
    counts = results.get("test_class_counts")  # absent from results.json files written before it was added
    if not counts:
        return []
    floor = max(counts.values()) / sum(counts.values())
    below = [name for name in ranked if results["configs"][name]["accuracy"]["mean"] <= floor]
    if not below:
        return []
    who = "No configuration scored above" if len(below) == len(ranked) else f"{', '.join(below)} scored no more than"
    advice = ("on classes this unequal, read macro-F1 and the recall per class rather than accuracy"
              if max(counts.values()) >= 2 * min(counts.values()) else "nothing was learned beyond the class balance")
    return [f"{who} the {floor:.3f} of always guessing the most frequent class: {advice}."]


def _cost_sentence(configs: dict, best: str) -> str:
    parts = []
    for name, c in configs.items():
        share = c["trainable_parameters"] / c["total_parameters"] if c["total_parameters"] else 0.0
        parts.append(f"{name} trains {c['trainable_parameters']:,} of {c['total_parameters']:,} parameters "
                     f"({100 * share:.2f}%) in {c['train_seconds']['mean']:.1f} s")
    cheapest = min(configs, key=lambda n: configs[n]["train_seconds"]["mean"])
    return ("Cost, in training seconds per run (loading the model, the frozen-prefix pass and the epochs; scoring "
            "the test part is not counted): " + "; ".join(parts) + f". The fastest to train was {cheapest}"
            + (", which was also the most accurate." if cheapest == best else "."))


def _hardest_class_sentence(results: dict, best: str) -> str:
    labels, config = results["labels"], results["configs"][best]
    recall = config["per_class_recall"]
    hardest = min((label for label in labels if recall[label] is not None), key=lambda label: recall[label])
    row = config["confusion_matrix"][labels.index(hardest)]
    confusions = [(count, labels[j]) for j, count in enumerate(row) if labels[j] != hardest]
    count, other = max(confusions) if confusions else (0, "")
    mistaken = f", most often mistaken for {other} ({counted(count, 'time')})" if count else ""
    return f"For {best}, the hardest class was {hardest} (recall {recall[hardest]:.3f}){mistaken}."


def render_markdown(blocks: list[Block]) -> str:
    """The blocks as Markdown; images are linked by file name (they sit next to report.md)."""
    out = []
    for block in blocks:
        if block.kind == "h1":
            out.append(f"# {block.text}")
        elif block.kind == "h2":
            out.append(f"## {block.text}")
        elif block.kind == "p":
            out.append(_markdown_text(block.text))
        elif block.kind == "table":
            out.append("| " + " | ".join(_markdown_cell(cell) for cell in block.header) + " |")
            out.append("|" + "|".join("---" for _ in block.header) + "|")
            out.extend("| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in block.rows)
        elif block.kind == "image":
            out.append(f"![{block.text}]({block.text})")
        out.append("")
    return "\n".join(out)


def _markdown_text(text: str) -> str:
    """Text as Markdown shows it literally: a label such as ``<b>`` would otherwise be read as an HTML tag."""
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)


def _markdown_cell(text: str) -> str:
    """A table cell: a ``|`` in a label name would otherwise end the cell and shift the row's columns."""
    return _markdown_text(text).replace("|", "\\|")


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}"""


def render_html(blocks: list[Block], image_dir: Path) -> str:
    """The blocks as one HTML page with every image embedded as base64 (no other files needed)."""
    body = []
    for block in blocks:
        text = html.escape(block.text)
        if block.kind in ("h1", "h2", "p"):
            tag = block.kind
            body.append(f"<{tag}>{text}</{tag}>")
        elif block.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block.kind == "image":
            data = base64.b64encode((Path(image_dir) / block.text).read_bytes()).decode("ascii")
            body.append(f'<img alt="{text}" src="data:image/png;base64,{data}">')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>freezeframe comparison</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
