"""ONNX export (fp32, and int8 by dynamic quantization).

``freezeframe export --model DIR`` writes ``DIR/onnx/``: ``model.onnx`` (fp32), with ``--quantize int8``
also ``model.int8.onnx``, the tokenizer files and ``export.json`` (labels, shapes, parity, source digest).
:mod:`freezeframe.onnx_backend` runs the graphs for ``predict`` and ``serve`` (``--backend onnx``).
"""

from __future__ import annotations

import contextlib
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

from freezeframe.errors import FreezeframeError, report, require_packages
from freezeframe.layouts import (
    CONTENTS_KEY,
    EXPORT_LAYOUT,
    EXPORT_META,
    ONNX_DIR,
    check_replaceable,
    export_source,
    recognize,
)
from freezeframe.onnx_backend import (
    EXPORT_PACKAGES,
    FP32_FILE,
    INT8_FILE,
    QUANTIZE_CHOICES,
    first_line,
    open_session,
    padded_batches,
    run_session,
    weights_digest,
)
from freezeframe.predict import META_FILE, Classifier, check_model_dir, load_classifier, refuse_export_dir
from freezeframe.storage import atomic_directory, atomic_write_bytes, check_output_dir, check_output_path, make_parent

FORMATS = ("onnx",)
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
        if isinstance(self.opset, bool) or not isinstance(self.opset, int):
            raise TypeError(f"ExportConfig.opset must be an int, got {type(self.opset).__name__} {self.opset!r}")
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


def export_model(config: ExportConfig) -> ExportResult:
    """Export a trained model to ONNX (and int8), check the fp32 graph against torch, write it atomically.

    Args:
        config: source directory, destination, quantization.

    Returns:
        The files written and the largest logit difference between ONNX (fp32) and torch.
    """
    if not isinstance(config, ExportConfig):
        raise TypeError(f"export_model takes an ExportConfig, e.g. ExportConfig('runs/minilm'), got {type(config).__name__}")
    require_packages(EXPORT_PACKAGES, "ONNX export", "export")
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
    named = "--out" if config.out is not None else "the model's export directory"  # not an option the user gave
    check_output_dir(out, overwrite=True, option=named)  # its type and place; its contents below
    if not (out.is_dir() and any(out.iterdir())):
        return config.quantize
    if recognize(out) is None:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:4])
        raise FreezeframeError(f"{named} {out} exists and is not an export directory (it holds {held}); choose a new path")
    check_replaceable(out, EXPORT_LAYOUT, named)
    own = out.resolve() == (config.model / ONNX_DIR).resolve()
    previous = export_source(out)  # unreadable: another model's, as far as can be told
    same = previous.get("weights_sha256") == weights_digest(config.model)
    if not (own or same or config.overwrite):
        raise FreezeframeError(f"{named} {out} holds the export of other weights (from {previous.get('directory', 'another model')}); "
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
        if _caused_by_ctrl_c(err):  # torch's exporter wraps a Ctrl-C that lands inside it (mid-import) in its own error
            raise KeyboardInterrupt from None
        detail = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
        if len(detail) > 320:  # onnxruntime's statuses quote C++ signatures between the cause and the node
            detail = f"{detail[:150]} ... {detail[-150:]}"
        raise FreezeframeError(f"{what} failed: {detail}") from None


def _caused_by_ctrl_c(err: BaseException | None) -> bool:
    """Whether a ``KeyboardInterrupt`` is among the exceptions that led to ``err``."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


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
