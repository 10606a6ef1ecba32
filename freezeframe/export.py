"""ONNX export (fp32, and int8 by dynamic quantization) and an onnxruntime classifier.

``freezeframe export --model DIR`` writes ``DIR/onnx/``: ``model.onnx`` (fp32), with ``--quantize int8``
also ``model.int8.onnx``, the tokenizer files and ``export.json`` (labels, shapes, parity, source digest).
:class:`OnnxClassifier` runs either graph behind the same ``predict_proba``/``predict`` as the torch
:class:`~freezeframe.predict.Classifier`, so ``predict`` and ``serve`` switch with ``--backend onnx``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from freezeframe.data import model_text
from freezeframe.ensemble import has_member_dirs
from freezeframe.errors import FreezeframeError, report
from freezeframe.predict import META_FILE, Classifier, check_model_dir, load_classifier, read_meta, refuse_export_dir
from freezeframe.storage import (
    CONTENTS_KEY,
    EXPORT_LAYOUT,
    EXPORT_META,
    ONNX_DIR,
    atomic_directory,
    atomic_write_bytes,
    check_output_dir,
    check_output_path,
    check_replaceable,
    make_parent,
    recognize,
)

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
FORMATS = ("onnx",)
QUANTIZE_CHOICES = ("none", "int8")
INPUT_NAMES = ["input_ids", "attention_mask"]
PARITY_TEXTS = ["a", "the camera work is stunning", "the plot twist at the end made no sense at all " * 6]


@dataclass
class ExportConfig:
    """What ``freezeframe export`` writes."""

    model: Path
    """Model directory written by ``freezeframe train``."""
    out: Path | None = None
    """Export directory (default ``MODEL/onnx``), or a ``.onnx`` file for the graph alone."""
    format: str = "onnx"
    """Export format; only ``onnx`` for now."""
    quantize: str = "none"
    """``int8`` also writes a dynamically quantized graph (int8 weights, int8 activations per batch)."""
    opset: int = 18
    """ONNX opset version."""
    overwrite: bool = False
    """Replace an existing ``.onnx`` file, or an export directory holding another model's export (one of the same
    model, or ``MODEL/onnx``, is regenerated in place)."""

    def __post_init__(self) -> None:
        self.model = Path(self.model)
        self.out = Path(self.out) if self.out is not None else None
        if self.format not in FORMATS:
            raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.quantize not in QUANTIZE_CHOICES:
            raise ValueError(f"--quantize: expected one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize!r}")
        if not 17 <= self.opset <= 23:
            raise ValueError(f"--opset: expected 17 to 23, got {self.opset}")


@dataclass
class ExportResult:
    """The files an export wrote and how closely the fp32 graph matches torch."""

    files: list[Path]
    max_abs_diff: float
    int8_max_abs_diff: float | None = None
    meta: dict = field(default_factory=dict)


class _LogitsOnly(nn.Module):
    """Fixes the graph's signature to ``(input_ids, attention_mask) -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's and quantizer's progress lines and warnings (they are not the user's to act on)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def export_graph(model: nn.Module, path: Path, opset: int = 18) -> None:
    """Write ``model`` as an ONNX graph with dynamic batch and sequence axes (torch.export based)."""
    ids = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 3], [2, 5, 6, 7, 3, 0, 0, 0]], dtype=torch.long)
    mask = (torch.arange(8) < torch.tensor([[8], [5]])).long()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    wrapped = _LogitsOnly(model.cpu().eval())
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(wrapped, (ids, mask), str(path), dynamo=True, input_names=INPUT_NAMES,
                          output_names=["logits"], dynamic_shapes=shapes, opset_version=opset,
                          external_data=False, verbose=False)


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the weighted MatMuls (per output channel); embeddings and head stay fp32.

    The embedding lookup and the small pooler/classifier gain no speed from int8 but lose accuracy.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])


def weights_digest(directory: Path) -> str:
    """SHA-256 over the weight files of a model directory (tells a stale export from a fresh one)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.safetensors")) + sorted(Path(directory).glob("*.bin")):
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def export_model(config: ExportConfig) -> ExportResult:
    """Export a trained model to ONNX (and int8), check the fp32 graph against torch, write it atomically.

    Args:
        config: source directory, destination, quantization.

    Returns:
        The files written and the largest logit difference between ONNX (fp32) and torch.
    """
    out = config.out if config.out is not None else config.model / ONNX_DIR
    single_file = out.suffix.lower() == ".onnx"
    check_model_dir(config.model)
    refuse_export_dir(config.model, "to export it again, pass the model directory it was "
                                    "exported from ({source}) as --model")
    if single_file:
        check_output_path(out, "--out", directory=False)
        if out.exists() and not config.overwrite:
            raise FreezeframeError(f"--out {out} already exists; pass --overwrite to replace it")
        quantize = config.quantize
    else:
        quantize = _check_export_dir(out, config)
    classifier = load_classifier(config.model, device="cpu")
    if classifier.model is None:
        raise FreezeframeError(f"{config.model} is an ensemble with a directory per member; ONNX export takes one network: "
                               "export a member directory")
    with tempfile.TemporaryDirectory(prefix=".freezeframe-export-") as scratch:
        fp32, int8 = Path(scratch) / FP32_FILE, Path(scratch) / INT8_FILE
        with _failures_named(f"ONNX export of {config.model}"):
            export_graph(classifier.model, fp32, config.opset)
            diff = max_logit_difference(classifier, fp32)
        if diff > 1e-3:
            report(f"the ONNX graph differs from torch by up to {diff:.2e} in the logits")
        int8_diff = None
        if quantize == "int8":
            with _failures_named(f"int8 quantization of {config.model}"):
                quantize_int8(fp32, int8)
                int8_diff = max_logit_difference(classifier, int8)
        if single_file:
            make_parent(out)
            with _failures_named(f"writing {out}", OSError):
                atomic_write_bytes(out, (int8 if quantize == "int8" else fp32).read_bytes())
            return ExportResult([out], diff, int8_diff)
        meta = _export_meta(classifier, config, quantize, diff, int8_diff)
        written = [FP32_FILE] + ([INT8_FILE] if quantize == "int8" else [])
        with _failures_named(f"writing {out}", OSError), atomic_directory(out, overwrite=True) as staging:
            for name in written:
                shutil.copyfile(Path(scratch) / name, staging / name)
            classifier.tokenizer.save(staging)
            for name in (META_FILE, "config.json"):
                if (config.model / name).is_file():
                    shutil.copyfile(config.model / name, staging / name)
            meta[CONTENTS_KEY] = sorted([EXPORT_META, *(p.name for p in staging.iterdir())])
            (staging / EXPORT_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return ExportResult([out / name for name in written], diff, int8_diff, meta)


def _check_export_dir(out: Path, config: ExportConfig) -> str:
    """Refuse, before any work, an export directory ``out`` that this export must not replace; return the
    quantization to write (``int8`` also when ``out`` holds an int8 graph of the same model, which would
    otherwise be dropped).

    ``out`` may be replaced when it is empty, ``MODEL/onnx`` (the model's own export, stale or not), or an
    export of the same weights; an export of other weights needs ``--overwrite``; anything in it that
    freezeframe did not write is never deleted.
    """
    check_output_dir(out, overwrite=True)  # its type and place; its contents below
    if not (out.is_dir() and any(out.iterdir())):
        return config.quantize
    if recognize(out) is None:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise FreezeframeError(f"--out {out} exists and is not an export directory (it holds {held}); choose a new path")
    check_replaceable(out, EXPORT_LAYOUT)
    own = out.resolve() == (config.model / ONNX_DIR).resolve()
    try:
        previous = json.loads((out / EXPORT_META).read_text(encoding="utf-8"))["source"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    previous = previous if isinstance(previous, dict) else {}  # unreadable: another model's, as far as can be told
    same = previous.get("weights_sha256") == weights_digest(config.model)
    if not (own or same or config.overwrite):
        raise FreezeframeError(f"--out {out} holds the export of other weights (from {previous.get('directory', 'another model')}); "
                               "pass --overwrite to replace it, or choose another path")
    if config.quantize == "none" and (own or same) and (out / INT8_FILE).is_file():
        report(f"{out} holds {INT8_FILE}: writing it again from these weights (delete it to drop it)")
        return "int8"
    return config.quantize


@contextlib.contextmanager
def _failures_named(what: str, kinds: type[BaseException] | tuple[type[BaseException], ...] = Exception) -> Iterator[None]:
    """Turn an exporter, quantizer, onnxruntime or file-system failure into one line naming ``what`` failed."""
    try:
        yield
    except FreezeframeError:
        raise
    except kinds as err:  # torch.export and onnxruntime raise many kinds; the user needs one line
        detail = err.strerror if isinstance(err, OSError) and err.strerror else _first_line(err)
        if len(detail) > 320:  # onnxruntime's statuses quote C++ signatures between the cause and the node
            detail = f"{detail[:150]} ... {detail[-150:]}"
        raise FreezeframeError(f"{what} failed: {detail}") from None


def _export_meta(classifier: Classifier, config: ExportConfig, quantize: str, diff: float, int8_diff: float | None) -> dict:
    import onnxruntime

    return {
        "format": "onnx", "opset": config.opset, "quantize": quantize,
        "kind": classifier.meta.get("kind", "transformer"), "labels": classifier.labels,
        "max_length": classifier.max_length, "pad_id": int(classifier.tokenizer.pad_id),
        "inputs": {name: "int64 [batch, sequence]" for name in INPUT_NAMES}, "outputs": {"logits": "float32 [batch, labels]"},
        "files": {"fp32": FP32_FILE, **({"int8": INT8_FILE} if quantize == "int8" else {})},
        "parity": {"fp32_max_abs_logit_diff": diff, "int8_max_abs_logit_diff": int8_diff, "texts": len(PARITY_TEXTS)},
        "source": {"directory": str(config.model.resolve()), "weights_sha256": weights_digest(config.model)},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
    }


def max_logit_difference(classifier: Classifier, graph: Path, texts: list[str] | None = None) -> float:
    """Largest absolute difference between the torch logits and those of an ONNX graph."""
    texts = texts or PARITY_TEXTS
    ids, _ = classifier.tokenizer.encode(texts, classifier.max_length)
    session = open_session(graph, quiet=True)
    worst = 0.0
    for indices, input_ids, mask in padded_batches(ids, len(ids), classifier.tokenizer.pad_id):
        theirs = run_session(session, input_ids, mask)
        with torch.inference_mode():
            ours = classifier.model(torch.from_numpy(input_ids), torch.from_numpy(mask)).float().numpy()
        worst = max(worst, float(np.abs(theirs - ours).max()))
    return worst


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
        raise FreezeframeError(f"cannot load ONNX graph {path}: {_first_line(err)}; re-run freezeframe export") from None


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
    check_model_dir(directory)
    export_dir = find_export_dir(directory)
    graph = export_dir / (INT8_FILE if quantize == "int8" else FP32_FILE)
    is_default_dir = export_dir == directory / ONNX_DIR
    source = directory if is_default_dir else _read_export_meta(export_dir).get("source", {}).get("directory", "TRAINED_DIR")
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
        report(f"{graph} not found; exporting it now (once; later runs reuse it)")
        try:
            export_model(ExportConfig(directory, quantize=quantize))
        except OSError as err:
            raise FreezeframeError(f"cannot write {export_dir} ({err.strerror}); run `{hint} --out NEW_DIR` "
                                   "and pass NEW_DIR as --model") from None
    meta = read_meta(export_dir)
    export_meta = _read_export_meta(export_dir)
    tokenizer = _load_tokenizer(export_dir, export_meta.get("kind", "transformer"))
    labels = export_meta.get("labels") or meta.get("labels")
    if not labels:
        raise FreezeframeError(f"{export_dir / EXPORT_META} lists no labels; re-run `{hint}`")
    return OnnxClassifier(open_session(graph, threads), tokenizer, labels, int(export_meta.get("max_length", 128)),
                          meta, graph)


def _read_export_meta(export_dir: Path) -> dict:
    path = export_dir / EXPORT_META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FreezeframeError(f"{export_dir} has no {EXPORT_META}; it was not written by freezeframe export") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FreezeframeError(f"{path} is damaged (not valid JSON); re-run freezeframe export") from None


def _is_stale(model_dir: Path, export_dir: Path) -> bool:
    recorded = _read_export_meta(export_dir).get("source", {}).get("weights_sha256")
    return bool(recorded) and recorded != weights_digest(model_dir)


def _load_tokenizer(export_dir: Path, kind: str):
    if kind == "baseline":
        from freezeframe.baseline import WordTokenizer

        return WordTokenizer.load(export_dir)
    from freezeframe.bert import tokenizer_unsupported
    from freezeframe.encoder import FastTokenizer, SubwordTokenizer, check_tokenizer_files, import_transformers

    check_tokenizer_files(str(export_dir))
    try:
        if tokenizer_unsupported(export_dir) is None:
            return FastTokenizer(export_dir)
        return SubwordTokenizer(import_transformers().AutoTokenizer.from_pretrained(str(export_dir)))
    except (OSError, ValueError) as err:
        raise FreezeframeError(f"cannot load the tokenizer in {export_dir}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
