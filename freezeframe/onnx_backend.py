"""Running exported ONNX graphs with onnxruntime: ``predict`` and ``serve`` with ``--backend onnx``.

:class:`OnnxClassifier` runs ``model.onnx`` (or ``model.int8.onnx``) behind the same
``predict_proba``/``predict`` as the torch :class:`~freezeframe.predict.Classifier`; a model directory
without its graph yet is exported into ``DIR/onnx`` on first use (:mod:`freezeframe.export`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from freezeframe.data import model_text
from freezeframe.ensemble import has_member_dirs
from freezeframe.errors import FreezeframeError, report, require_packages
from freezeframe.layouts import EXPORT_META, ONNX_DIR, export_source
from freezeframe.predict import META_FILE, Classifier, check_model_dir, read_meta

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
QUANTIZE_CHOICES = ("none", "int8")
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # torch.onnx.export needs the first two
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # ANSI colour codes


def weights_digest(directory: Path) -> str:
    """SHA-256 over the weight files of a model directory (tells a stale export from a fresh one)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.safetensors")) + sorted(Path(directory).glob("*.bin")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()



def padded_batches(ids: list[list[int]], batch_size: int, pad_id: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """Length-sorted batches as ``(indices, input_ids, attention_mask)`` int64 arrays padded to the batch's longest."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        width = max(1, max(len(ids[i]) for i in indices))
        input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(indices), width), dtype=np.int64)
        for row, i in enumerate(indices):
            input_ids[row, : len(ids[i])] = ids[i]
            mask[row, : len(ids[i])] = 1
        yield indices, input_ids, mask


def open_session(path: Path, threads: int | None = None, quiet: bool = False):
    """An onnxruntime CPU session with full graph optimization; ``threads`` defaults to the physical cores;
    ``quiet`` also keeps its error logs off stderr (for a caller that reports failures itself)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4 if quiet else 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise FreezeframeError(f"cannot load ONNX graph {path}: {first_line(err)}; re-run freezeframe export") from None


def run_session(session, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Logits for one padded batch (feeds only the inputs the graph kept)."""
    feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]


class OnnxClassifier(Classifier):
    """An exported graph with its tokenizer and labels; same ``predict_proba``/``predict`` as the torch classifier.

    Args:
        session: an onnxruntime ``InferenceSession`` of ``(input_ids, attention_mask) -> logits``.
        tokenizer: has ``encode(texts, max_length)`` and ``pad_id``.
        labels: class names in index order.
        max_length: longest tokenized text.
        meta: the model's freezeframe.json.
        path: the graph file (for ``/info`` and messages).
    """

    def __init__(self, session, tokenizer, labels: list[str], max_length: int, meta: dict, path: Path) -> None:
        # Deliberately not Classifier.__init__: there is no torch module to place on a device.
        self.session = session
        self.model = None
        self.device = torch.device("cpu")
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.meta = meta
        self.path = Path(path)

    def _probabilities(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        ids, _ = self.tokenizer.encode([model_text(t) for t in texts], self.max_length)
        for indices, input_ids, mask in padded_batches(ids, batch_size, self.tokenizer.pad_id):
            out[indices] = run_session(self.session, input_ids, mask)
        out -= out.max(axis=1, keepdims=True)
        np.exp(out, out=out)
        return out / out.sum(axis=1, keepdims=True)


def find_export_dir(directory: Path) -> Path:
    """``directory`` itself when it is an export directory, else its ``onnx/`` subdirectory."""
    directory = Path(directory)
    return directory if (directory / EXPORT_META).is_file() else directory / ONNX_DIR


def load_onnx_classifier(directory: Path, quantize: str = "none", threads: int | None = None,
                         export_if_missing: bool = True) -> OnnxClassifier:
    """Load the exported graph of a model directory (or an export directory itself).

    Args:
        directory: a trained model directory (its ``onnx/`` is used) or an ``export --out`` directory.
        quantize: ``none`` runs ``model.onnx``, ``int8`` runs ``model.int8.onnx``.
        threads: onnxruntime intra-op threads (default: physical cores).
        export_if_missing: export into ``DIR/onnx`` first when a trained model has no such graph yet.
    """
    directory = Path(directory)
    if quantize not in QUANTIZE_CHOICES:
        raise FreezeframeError(f"--quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    require_packages(("onnxruntime",), "--backend onnx", "export")
    check_model_dir(directory)
    export_dir = find_export_dir(directory)
    graph = export_dir / (INT8_FILE if quantize == "int8" else FP32_FILE)
    is_default_dir = export_dir == directory / ONNX_DIR
    source = directory if is_default_dir else export_source(export_dir).get("directory", "TRAINED_DIR")
    hint = (f"freezeframe export --model {source} --format onnx" + ("" if is_default_dir else f" --out {export_dir}")
            + (" --quantize int8" if quantize == "int8" else ""))
    if is_default_dir and graph.is_file() and _is_stale(directory, export_dir):
        raise FreezeframeError(f"{export_dir} was exported from other weights than {directory} holds now; re-run `{hint}`")
    if not graph.is_file():
        if not (is_default_dir and export_if_missing and (directory / META_FILE).is_file()):
            raise FreezeframeError(f"{graph} not found; create it with `{hint}`")
        if has_member_dirs(directory, read_meta(directory)):
            raise FreezeframeError(f"{directory} is an ensemble with a directory per member; the ONNX backend runs one network: "
                                   "use --backend torch")
        require_packages(EXPORT_PACKAGES, f"--backend onnx (exporting {graph} first)", "export")
        report(f"{graph} not found; exporting it now (once; later runs reuse it)")
        from freezeframe.export import ExportConfig, export_model

        try:
            export_model(ExportConfig(directory, quantize=quantize))
        except OSError as err:
            raise FreezeframeError(f"cannot write {export_dir} ({err.strerror}); run `{hint} --out NEW_DIR` "
                                   "and pass NEW_DIR as --model") from None
    meta = read_meta(export_dir)
    export_meta = read_export_meta(export_dir)
    tokenizer = _load_tokenizer(export_dir, export_meta.get("kind", "transformer"))
    labels = export_meta.get("labels") or meta.get("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(label, str) for label in labels)):
        raise FreezeframeError(f"{export_dir / EXPORT_META} lists no labels; re-run `{hint}`")
    return OnnxClassifier(open_session(graph, threads), tokenizer, labels, int(export_meta.get("max_length", 128)),
                          meta, graph)


def read_export_meta(export_dir: Path) -> dict:
    path = export_dir / EXPORT_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FreezeframeError(f"{export_dir} has no {EXPORT_META}; it was not written by freezeframe export") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FreezeframeError(f"{path} is damaged (not valid JSON); re-run freezeframe export") from None
    if not isinstance(meta, dict):
        raise FreezeframeError(f"{path} is damaged (not a JSON object); re-run freezeframe export")
    return meta


def _is_stale(model_dir: Path, export_dir: Path) -> bool:
    recorded = export_source(export_dir).get("weights_sha256")
    return bool(recorded) and recorded != weights_digest(model_dir)


def _load_tokenizer(export_dir: Path, kind: str):
    if kind == "baseline":
        from freezeframe.baseline import WordTokenizer

        return WordTokenizer.load(export_dir)
    from freezeframe.bert import tokenizer_unsupported
    from freezeframe.encoder import import_transformers
    from freezeframe.tokenizer import FastTokenizer, SubwordTokenizer, check_tokenizer_files

    check_tokenizer_files(str(export_dir))
    try:
        if tokenizer_unsupported(export_dir) is None:
            return FastTokenizer(export_dir)
        return SubwordTokenizer(import_transformers().AutoTokenizer.from_pretrained(str(export_dir)))
    except (OSError, ValueError) as err:
        raise FreezeframeError(f"cannot load the tokenizer in {export_dir}: {first_line(err)}") from None


def first_line(err: Exception) -> str:
    """The first line of an error's message, without the terminal colour codes torch's exporter puts in it."""
    text = _COLOURS.sub("", str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__
