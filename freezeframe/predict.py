"""Batched inference with a saved classifier directory (transformer or baseline)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from freezeframe.batching import ExampleSet, token_examples
from freezeframe.data import model_text
from freezeframe.errors import FreezeframeError
from freezeframe.layouts import EXPORT_META, META_FILE, export_source, not_a_model
from freezeframe.source import is_pretrained_encoder, not_a_classifier, plain_max_length
from freezeframe.storage import check_output_path
from freezeframe.train import choose_device, predict_logits


class Classifier:
    """A trained model, its tokenizer and label names, ready to classify texts.

    Args:
        model: returns logits from ``forward(input_ids, attention_mask)``.
        tokenizer: has ``encode(texts, max_length)`` and ``pad_id``.
        labels: class names in index order.
        max_length: longest tokenized text.
        meta: the model's freezeframe.json (empty for a plain Hugging Face directory).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, labels: list[str], max_length: int = 128,
                 meta: dict | None = None, device: str = "auto") -> None:
        self.device = choose_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.meta = meta or {}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(labels={self.labels!r}, kind={self.meta.get('kind', 'transformer')!r}, "
                f"max_length={self.max_length}, device={str(self.device)!r})")

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, one row per text, in input order."""
        return finite_scores(self._probabilities(checked_texts(texts, batch_size), batch_size))

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        """``{"text", "label", "scores"}`` per text, in input order."""
        texts = checked_texts(texts, batch_size)
        return rows_from_probabilities(texts, finite_scores(self._probabilities(texts, batch_size)), self.labels)

    def _probabilities(self, texts: list[str], batch_size: int) -> np.ndarray:
        """:meth:`predict_proba` of texts that :func:`checked_texts` has already checked."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids, _ = self.tokenizer.encode([model_text(t) for t in texts], self.max_length)
        data = ExampleSet(token_examples(ids), pad_id=self.tokenizer.pad_id)
        with torch.inference_mode():  # no autograd records: less memory, faster on the CPU
            logits = predict_logits(self.model, data, batch_size, self.device)
        return torch.softmax(logits.float(), dim=-1).numpy()


def finite_scores(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities``, or a clear error when a row holds NaN or infinity (which no JSON output can carry):
    the model's weights are broken, e.g. trained with a learning rate that diverged."""
    bad = ~np.isfinite(probabilities).all(axis=1) if probabilities.size else np.zeros(0, dtype=bool)
    if bad.any():
        first = ", ".join(str(i + 1) for i in np.flatnonzero(bad)[:5])
        raise FreezeframeError(f"the model gives non-finite scores (NaN or infinity) for {int(bad.sum())} of {len(bad)} "
                               f"texts (number {first}{', ...' if bad.sum() > 5 else ''}); its weights are broken, "
                               "e.g. by a learning rate that diverged in training: retrain it")
    return probabilities


def checked_texts(texts, batch_size: int) -> list[str]:
    """``texts`` as a list of strings (any iterable of them: a generator, an array, a Series), or a clear error.

    A bare string is refused rather than classified character by character, and so is a batch size below 1.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, not one string: predict([text])")
    if hasattr(texts, "columns") and hasattr(texts, "iloc"):  # iterating a DataFrame gives its column names
        raise TypeError("texts is a DataFrame; pass its text column, e.g. predict(frame['review'])")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings (any iterable of them), got {type(texts).__name__}") from None
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts must be strings; item {position} is {type(text).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    return texts


def rows_from_probabilities(texts: list[str], probabilities: np.ndarray, labels: list[str]) -> list[dict]:
    """``{"text", "label", "scores"}`` per text from a [texts, labels] probability matrix."""
    return [
        {
            "text": text,
            "label": labels[int(row.argmax())],
            "scores": {label: round(float(p), 6) for label, p in zip(labels, row)},
        }
        for text, row in zip(texts, probabilities)
    ]


OUTPUT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None}
"""File types ``predict --output`` writes, with their separators (``None``: JSON Lines)."""


def check_output_file(path: Path, overwrite: bool, source: Path | None = None) -> None:
    """Refuse, before any work, an output file that would fail or destroy something: an unknown
    type, a directory, an existing file without ``overwrite``, or the input file ``source``."""
    if path.is_dir():
        raise FreezeframeError(f"--output {path} is a directory; give a file path")
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise FreezeframeError(f"--output {path}: unsupported file type {path.suffix or '(none)'!r}; "
                               f"use {', '.join(OUTPUT_SUFFIXES)}")
    check_output_path(path, "--output", directory=False)  # a file where a folder belongs, a place no one can write
    if source is not None and str(source) != "-" and source.exists() and path.exists() and path.samefile(source):
        raise FreezeframeError(f"--output {path} is the input file; choose another path")
    if path.exists() and not overwrite:
        raise FreezeframeError(f"--output {path} exists; pass --overwrite to replace it")


def check_output_columns(inputs: list[dict], labels: list[str]) -> None:
    """Refuse input rows holding a column that the output's ``predicted_label`` or ``score_<label>`` would replace."""
    columns = {key for given in inputs for key in given}
    clash = [name for name in ("predicted_label", *(f"score_{label}" for label in labels)) if name in columns]
    if clash:
        raise FreezeframeError(f"the input already has a column {clash[0]!r}; rename it before predicting")


def prediction_records(predictions: list[dict], inputs: list[dict]) -> list[dict]:
    """Each input row's own columns, then ``predicted_label`` and a ``score_<label>`` per class."""
    if predictions:
        check_output_columns(inputs, list(predictions[0]["scores"]))
    return [given | {"predicted_label": row["label"]} | {f"score_{label}": p for label, p in row["scores"].items()}
            for given, row in zip(inputs, predictions)]


def prediction_text(records: list[dict], separator: str | None, header: bool = True) -> str:
    """``records`` as JSON Lines (``separator`` ``None``) or as CSV/TSV rows, under a header row if ``header``."""
    if separator is None:
        return "".join(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n" for record in records)
    import pandas as pd

    from freezeframe.tables import json_cell

    # a JSON input's values as their cells in a table (true, lists as JSON); numbers stay numbers, and
    # dtype=object keeps a whole number a whole number in a column with gaps
    cells = [{key: value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else json_cell(value)
              for key, value in record.items()} for record in records]
    return pd.DataFrame(cells, dtype=object).to_csv(sep=separator, index=False, lineterminator="\n", header=header)


def stream_predictions(classifier: Classifier, chunks: Iterable[tuple[list[str], list[dict] | None]],
                       output: Path | None = None, batch_size: int = 64, out: TextIO | None = None) -> int:
    """Classify ``chunks`` one at a time, writing each one's predictions before the next is read, so that memory
    holds one chunk whatever the size of the input.

    Args:
        classifier: from :func:`load_predictor`.
        chunks: ``(texts, rows)`` pairs, e.g. :func:`freezeframe.chunks.open_texts`'s; ``rows`` (each text's input
            row, for ``output``) may be ``None``: ``{"text": text}``.
        output: a .csv, .tsv or .jsonl file of each row's columns, ``predicted_label`` and ``score_<label>`` per
            class, written whole or not at all (an error or Ctrl-C leaves an existing file as it was). ``None``:
            one JSON line ``{"text", "label", "scores"}`` per text to ``out``, flushed after each chunk.
        batch_size: texts per forward pass.
        out: where JSON lines go without ``output`` (default: standard output).

    Returns:
        The number of texts classified. Empty or invisible texts are named in one warning at the end.
    """
    from freezeframe.storage import atomic_writer, make_parent

    checked_texts([], batch_size)
    if output is None:
        out = sys.stdout if out is None else out

        def show(predictions: list[dict], rows: list[dict] | None) -> None:
            out.write("".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in predictions))
            out.flush()  # a reader (`| head`) sees each chunk as it is done

        return _classify_chunks(classifier, chunks, batch_size, show)
    output = Path(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"output {output}: unsupported file type {output.suffix or '(none)'!r}; "
                         f"use {', '.join(OUTPUT_SUFFIXES)}")
    separator = OUTPUT_SUFFIXES[output.suffix.lower()]
    make_parent(output)
    try:
        with atomic_writer(output) as handle:
            def write(predictions: list[dict], rows: list[dict] | None) -> None:
                rows = [{"text": row["text"]} for row in predictions] if rows is None else rows
                records = prediction_records(predictions, rows)
                handle.write(prediction_text(records, separator, header=handle.tell() == 0).encode("utf-8"))

            return _classify_chunks(classifier, chunks, batch_size, write)
    except OSError as err:
        raise FreezeframeError(f"cannot write {output}: {err.strerror or err}") from None


def _classify_chunks(classifier: Classifier, chunks: Iterable[tuple[list[str], list[dict] | None]], batch_size: int,
                     write: Callable[[list[dict], list[dict] | None], None]) -> int:
    """Classify and ``write`` each chunk in turn; warn at the end about the texts that are empty or invisible."""
    from freezeframe.data import is_blank
    from freezeframe.errors import logger
    from freezeframe.tables import one_or_many

    total, blank, first_blank = 0, 0, []
    for texts, rows in chunks:
        for number, text in enumerate(texts, total + 1):
            if is_blank(text):
                blank += 1
                if len(first_blank) < 5:
                    first_blank.append(number)
        total += len(texts)
        if texts:
            write(classifier.predict(texts, batch_size), rows)
    if blank:
        logger.warning(
            f"{blank} of {total} texts {one_or_many(blank, 'is', 'are')} empty or invisible (number {', '.join(map(str, first_blank))}"
            f"{', ...' if blank > 5 else ''}); they are labelled all the same, from no words")
    return total


def read_meta(directory: Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FreezeframeError(f"{path} is damaged (not valid JSON); retrain the model or restore the file") from None


def check_model_dir(directory: Path) -> None:
    """Refuse a ``--model`` that is not a trained model's directory, naming what it is instead."""
    if is_pretrained_encoder(str(directory)):
        raise FreezeframeError(not_a_classifier(str(directory)))
    if directory.is_dir():
        return
    if directory.suffix.lower() == ".onnx" and directory.is_file():
        raise FreezeframeError(f"{directory} is a single ONNX graph (for onnxruntime itself); --model takes the trained "
                               "model's directory or an export directory")
    if directory.exists():
        raise FreezeframeError(f"{directory} is a file; --model takes a model directory")
    raise FreezeframeError(f"model directory not found: {directory}")


def refuse_export_dir(directory: Path, advice: str = "pass the model directory it was exported from ({source}) as --model") -> None:
    """Refuse an export directory (ONNX graphs, no torch weights) where torch weights are needed.

    Args:
        directory: the ``--model`` given.
        advice: what to do instead; ``{source}`` becomes the model directory it was exported from.
    """
    directory = Path(directory)
    if not (directory / EXPORT_META).is_file() or any(directory.glob("*.safetensors")) or any(directory.glob("*.bin")):
        return
    source = export_source(directory).get("directory", "see its export.json")
    raise FreezeframeError(f"{directory} is an ONNX export (no torch weights); {advice.format(source=source)}")


def check_model_files(directory: Path) -> dict:
    """Refuse a ``--model`` that is not a model directory (no freezeframe.json or config.json), cheaply,
    before anything loads; return its freezeframe.json (empty for a plain Hugging Face directory)."""
    check_model_dir(directory)
    refuse_export_dir(directory)
    if not (directory / META_FILE).exists() and not (directory / "config.json").exists():
        raise FreezeframeError(not_a_model(directory, f"a model directory (no {META_FILE} or config.json); pass the "
                                                      "--out directory of `freezeframe train`"))
    return read_meta(directory)


def load_classifier(directory: Path, device: str = "auto") -> Classifier:
    """Load a model directory written by ``freezeframe train`` (or any HF sequence classifier).

    Args:
        directory: the ``--out`` of a training run.
        device: ``auto``, ``cpu`` or ``cuda``.
    """
    directory = Path(directory)
    meta = check_model_files(directory)
    from freezeframe.ensemble import has_member_dirs, load_ensemble

    if has_member_dirs(directory, meta):
        return load_ensemble(directory, meta, device)
    if meta.get("kind") == "baseline":
        from freezeframe.baseline import load_baseline

        model, tokenizer = load_baseline(directory)
        labels = meta["labels"]
    else:
        from freezeframe.encoder import load_trained

        model, tokenizer = load_trained(directory)
        labels = meta.get("labels") or model.label_names
    max_length = meta.get("settings", {}).get("model", {}).get("max_length") or plain_max_length(directory)
    return Classifier(model, tokenizer, labels, max_length, meta, device)


BACKENDS = ("torch", "onnx")


def load_predictor(directory: Path, backend: str = "torch", quantize: str = "none", device: str = "auto") -> Classifier:
    """The classifier of a model directory on ``backend``: torch weights, or the exported ONNX graph.

    Args:
        directory: the ``--out`` of a training run (or of ``freezeframe export`` for ``onnx``).
        backend: ``torch`` or ``onnx`` (onnxruntime; exports ``DIR/onnx`` on first use).
        quantize: ``none``, or ``int8`` for the quantized ONNX graph (needs ``backend="onnx"``).
        device: torch device; onnx always runs on the CPU.
    """
    if backend not in BACKENDS:
        raise FreezeframeError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx":
        from freezeframe.onnx_backend import load_onnx_classifier

        return load_onnx_classifier(directory, quantize)
    if quantize != "none":
        raise FreezeframeError(f"--quantize {quantize} runs the exported ONNX graph; add --backend onnx")
    refuse_export_dir(directory, "add --backend onnx")
    return load_classifier(directory, device)
