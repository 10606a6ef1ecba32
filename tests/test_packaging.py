"""freezeframe as a user installs it: optional extras that are not installed."""

from __future__ import annotations

import sys

import pytest


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freezeframe: error: ") and "Traceback" not in err, err
    return lines[0]


def test_export_without_the_export_extra_says_how_to_install_it(run_cli, head_model, monkeypatch, tmp_path):
    """Before: `ONNX export of M failed: No module named 'onnxscript'`, which named no fix."""
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    code, out, err = run_cli("export", "--model", head_model, "--out", tmp_path / "graph.onnx")
    assert code == 2 and out == ""
    assert _one_error_line(err).endswith("ONNX export needs onnxscript, not installed here: pip install 'freezeframe[export]'")
    assert not list(tmp_path.iterdir())


def test_the_onnx_backend_without_onnxruntime_says_how_to_install_it(run_cli, head_model, monkeypatch):
    """Before: a warning that it was exporting, then the export failing on `import of onnxruntime halted`."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out, err = run_cli("predict", "--model", head_model, "--backend", "onnx", "great camera work")
    assert code == 2 and out == ""
    assert "--backend onnx needs onnxruntime, not installed here: pip install 'freezeframe[export]'" in _one_error_line(err)
    assert not (head_model / "onnx").exists()


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn"])
def test_serve_without_the_serve_extra_says_how_to_install_it(run_cli, head_model, monkeypatch, missing):
    """Before: without uvicorn (FastAPI installed), serve loaded the model and then failed as an internal error."""
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, "freezeframe.serve", raising=False)  # import it afresh, as a new process would
    code, out, err = run_cli("serve", "--model", head_model, "--port", "1")
    assert code == 2 and out == ""
    assert _one_error_line(err).endswith(f"serving needs {missing}, not installed here: pip install 'freezeframe[serve]'")
