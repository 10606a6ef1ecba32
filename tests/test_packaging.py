"""freezeframe as a user installs it: the package metadata, the built wheel and sdist, and optional extras that
are not installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_the_version_has_one_source():
    """Before: pyproject.toml and freezeframe/__init__.py each spelled out 0.1.0, free to drift apart."""
    project = _pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "freezeframe.__version__"}


def test_declared_dependencies_admit_the_locked_versions():
    """Every runtime dependency and serve/export extra is pinned in requirements.lock, at a version its range allows."""
    project, pins = _pyproject()["project"], _lock()
    declared = [*project["dependencies"], *project["optional-dependencies"]["serve"],
                *project["optional-dependencies"]["export"]]
    for line in declared:
        requirement = Requirement(line)
        assert requirement.name.lower() in pins, f"{requirement.name} is not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[requirement.name.lower()]), (line, pins[requirement.name.lower()])
    named = {Requirement(line).name.lower() for line in [*declared, *project["optional-dependencies"]["dev"]]}
    assert set(pins) <= named, f"pinned but not declared: {sorted(set(pins) - named)}"


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freezeframe: error: ") and "Traceback" not in err, err
    return lines[0]


def test_export_without_the_export_extra_says_how_to_install_it(run_cli, head_model, monkeypatch, tmp_path):
    """Before: `ONNX export of M failed: No module named 'onnxscript'`, which named no fix."""
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    code, out, err = run_cli("export", "--model", head_model, "--out", tmp_path / "graph.onnx")
    assert code == 2 and out == ""
    assert _one_error_line(err).endswith("ONNX export needs onnxscript (not installed): pip install 'freezeframe[export]'")
    assert not list(tmp_path.iterdir())


def test_the_onnx_backend_without_onnxruntime_says_how_to_install_it(run_cli, head_model, monkeypatch):
    """Before: a warning that it was exporting, then the export failing on `import of onnxruntime halted`."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, out, err = run_cli("predict", "--model", head_model, "--backend", "onnx", "great camera work")
    assert code == 2 and out == ""
    assert "--backend onnx needs onnxruntime (not installed): pip install 'freezeframe[export]'" in _one_error_line(err)
    assert not (head_model / "onnx").exists()


@pytest.mark.parametrize("missing", ["fastapi", "uvicorn"])
def test_serve_without_the_serve_extra_says_how_to_install_it(run_cli, head_model, monkeypatch, missing):
    """Before: without uvicorn (FastAPI installed), serve loaded the model and then failed as an internal error."""
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, "freezeframe.serve", raising=False)  # import it afresh, as a new process would
    code, out, err = run_cli("serve", "--model", head_model, "--port", "1")
    assert code == 2 and out == ""
    assert _one_error_line(err).endswith(f"serving needs {missing} (not installed): pip install 'freezeframe[serve]'")


def _build(backend: str, source: Path, out: Path) -> Path:
    """Build with setuptools in a fresh process, as pip would (offline: the test venv's own setuptools)."""
    code = f"from setuptools import build_meta; print(build_meta.{backend}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / done.stdout.strip().splitlines()[-1]


def test_the_sdist_builds_a_wheel_that_holds_everything_run_time_needs(tmp_path):
    """The wheel is built from the sdist, as pip builds it: the sdist must hold what building needs. Before: the
    sdist had the tests without tests/conftest.py, and no requirements.lock."""
    pytest.importorskip("setuptools", minversion="77")
    from freezeframe import __version__

    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"))
    sdist = _build("build_sdist", source, tmp_path)
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert {"pyproject.toml", "README.md", "LICENSE", "requirements.lock", "tests/conftest.py", "benchmarks/cv_sweep.py"} <= names
    assert not any(name.startswith("benchmarks/results") or "__pycache__" in name for name in names)

    wheel = _build("build_wheel", tmp_path / "unpacked" / sdist.name.removesuffix(".tar.gz"), tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta = archive.read(f"freezeframe-{__version__}.dist-info/METADATA").decode()
        entry_points = archive.read(f"freezeframe-{__version__}.dist-info/entry_points.txt").decode()
    # hf_modeling.py is copied into every saved model as modeling_freezeframe.py (pipeline's remote code)
    assert {"freezeframe/hf_modeling.py", "freezeframe/__main__.py", "freezeframe/py.typed"} <= names
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    assert f"\nVersion: {__version__}\n" in meta and "\nLicense-Expression: MIT\n" in meta
    assert "\nLicense-File: LICENSE\n" in meta and f"freezeframe-{__version__}.dist-info/licenses/LICENSE" in names
    assert "freezeframe = freezeframe.cli:main" in entry_points


def test_every_missing_package_is_named_in_one_sentence(monkeypatch):
    from freezeframe.errors import FreezeframeError, require_packages

    for name in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(FreezeframeError, match=r"^ONNX export needs onnx, onnxscript and onnxruntime \(not installed\): "
                                                r"pip install 'freezeframe\[export\]'$"):
        require_packages(("onnx", "sys", "onnxscript", "onnxruntime"), "ONNX export", "export")
