"""The benchmark scripts refuse bad arguments in one line (exit code 2) before any training, never with a traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rows, write_csv

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize(("script", "args", "message"), [
    ("cv_sweep.py", ["--grid", "nope"], "argument --grid: invalid choice: 'nope'"),
    ("cv_sweep.py", ["--workers", "0"], "--workers must be at least 1, not 0"),
    ("cv_sweep.py", ["--folds", "1"], "--folds must be at least 2, not 1"),
    ("cv_sweep.py", ["--config", "freeze=head,lr"], "'lr' in 'freeze=head,lr' is not key=value"),
    ("cv_sweep.py", ["--config", "freeze=head,lr=abc"], "lr='abc' in 'freeze=head,lr=abc' is not a valid value"),
    ("cv_sweep.py", ["--config", "freeze=head,bogus=1"], "unknown setting 'bogus'"),
    ("cv_sweep.py", ["--baseline", "freeze=head"], "--baseline works with --summarize only"),
    ("cv_sweep.py", ["--summarize", "missing.jsonl"], "missing.jsonl is not a readable results file"),
    ("vs_peers.py", ["--folds", "1"], "--folds must be at least 2, not 1"),
    ("vs_peers.py", ["--folds", "5", "--fold-limit", "7"], "--fold-limit must be from 1 to --folds (5), not 7"),
    ("vs_peers.py", ["--all-rows", "--data", "missing.csv"], "file not found: missing.csv"),
    ("train_speed.py", ["--epochs", "0"], "--epochs must be at least 1, not 0"),
    ("predict_speed.py", ["--model", "m", "--clients", "0"], "--clients must be at least 1, not 0"),
    ("predict_speed.py", ["--model", "m", "--only", "torch,onnnx"], "--only: unknown contender 'onnnx'"),
    ("baseline_cv.py", ["dim=64,dropout=abc"], "dropout='abc' in 'dim=64,dropout=abc' is not a valid value"),
    ("baseline_cv.py", ["--threads", "0", "dim=64"], "--threads must be at least 1, not 0"),
])
def test_bad_arguments_are_one_line(script, args, message):
    done = run_script(script, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"{script}: error: {message}"), done.stderr


def test_more_folds_than_the_smallest_class_is_one_line(tmp_path):
    data = write_csv(tmp_path / "tiny.csv", make_rows(4))
    for script, args in [("cv_sweep.py", ["--config", "freeze=head", "--out", str(tmp_path / "out.jsonl")]),
                         ("vs_peers.py", [])]:
        done = run_script(script, "--data", str(data), "--folds", "5", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[-1].endswith("--folds 5 is more than the 4 texts of the smallest class")
    assert not (tmp_path / "out.jsonl").exists()


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_cv_keeps_the_defaults_a_setting_leaves_out():
    """A setting without ``dim`` means the baseline's default embedding size (256), not a fixed 64."""
    from freezeframe.config import BASELINE_SIZES

    module = load_script("baseline_cv")
    model = module.run_for(module.parse("dropout=0.6"), seed=0).model
    assert (model.embedding_dim, model.vocab_size, model.dropout) == (BASELINE_SIZES["embedding_dim"], BASELINE_SIZES["vocab_size"], 0.6)
    assert module.run_for(module.parse("dim=64"), seed=0).model.embedding_dim == 64


def test_baseline_cv_runs_its_folds(tmp_path, monkeypatch, capsys):
    """The whole script on tiny data: it called compare.run_split with an argument run_split no longer takes."""
    import torch

    module = load_script("baseline_cv")
    monkeypatch.setattr(module, "DATA", write_csv(tmp_path / "tiny.csv", make_rows(8)))
    monkeypatch.setattr(sys, "argv", ["baseline_cv.py", "--folds", "2", "--seeds", "1", "--jsonl", str(tmp_path / "r.jsonl"),
                                      "dim=8,epochs=3"])
    threads, level = torch.get_num_threads(), module.logger.level
    try:
        module.main()
    finally:  # the script sets torch's threads and the log level for its process; keep them out of later tests
        torch.set_num_threads(threads)
        module.logger.setLevel(level)
    out = capsys.readouterr().out
    assert "best first:" in out and "dim=8,epochs=3" in out
    row = json.loads((tmp_path / "r.jsonl").read_text())
    assert row["runs"] == 2 and 0 <= row["mean"] <= 1


def test_cv_sweep_pairs_configurations_with_the_corrected_test_too():
    """The plain standard error of paired CV runs understates the spread; the corrected one sits beside it."""
    module = load_script("cv_sweep")
    rows = [{"config": config, "fold": fold, "seed": seed, "accuracy": base + 0.01 * ((fold + seed) % 3)}
            for config, base in (("a", 0.90), ("b", 0.92)) for fold in range(5) for seed in range(3)]
    rows = [row if row["config"] == "a" or row["fold"] != 0 else {**row, "accuracy": row["accuracy"] - 0.03} for row in rows]
    line = module.paired(rows, "a").splitlines()[-1]
    differences = [0.02 - (0.03 if fold == 0 else 0.0) for fold in range(5) for _ in range(3)]
    from freezeframe.evaluate import corrected_resampled_ttest

    test = corrected_resampled_ttest(differences, 1 / 4)
    assert line == f"| b | 15 | +1.40 ± 0.32 | {100 * test['std_error_corrected']:.2f}, p = {test['p_value']:.2g} |"
    plain = np.std(differences, ddof=1) / np.sqrt(15)
    assert test["std_error_corrected"] == pytest.approx(plain * np.sqrt(1 + 15 / 4))  # (1/n + 1/(k-1)) against 1/n
