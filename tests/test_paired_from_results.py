"""benchmarks/paired_from_results.py: the paired table of a stored comparison, from its results.json alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "paired_from_results.py"
STORED = ROOT / "benchmarks" / "results" / "compare_default" / "results.json"


def test_the_stored_default_comparison_gives_the_readme_table():
    """benchmarks/paired_from_results.py recomputes the paired table from a stored results.json without training."""
    done = subprocess.run([sys.executable, str(SCRIPT), str(STORED)],
                          capture_output=True, text=True, check=True)
    assert "| full | 15 | +0.010 | 0.007 | −0.006 to +0.026 | 1.35 | 0.2 | 0.2 |" in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4, "the header, its rule and a row per configuration other than encoder"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n".join(table) in readme, "README's paired table is the one the stored results give"
    paired = json.loads(done.stdout[done.stdout.index("{"):])
    assert paired["best"] == "encoder" and paired["n_test_over_n_train"] == 0.25


def test_a_results_file_with_runs_missing_is_a_one_line_error(tmp_path):
    stored = json.loads(STORED.read_text())
    stored["configs"]["head"]["accuracy"]["runs"].pop()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(stored))
    done = subprocess.run([sys.executable, str(SCRIPT), str(path)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "expected 3 repetitions x 5 folds = 15 accuracies, got 14" in done.stderr
