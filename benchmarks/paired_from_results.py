"""The paired comparison of a stored ``freezeframe compare`` report, from its results.json alone: no training.

results.json lists each configuration's run accuracies repetition by repetition, fold by fold within one (the
same order for every configuration), so the runs pair up by position; this prints the paired table that a report
written today would carry (:mod:`freezeframe.paired`), for results written before it existed.

    python benchmarks/paired_from_results.py benchmarks/results/compare_default/results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freezeframe.paired import paired_comparison, paired_note, paired_table, runs_in_order


def _fail(message: str) -> NoReturn:
    """The user's mistake: one line on stderr, exit code 2 (as the freezeframe command does)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def paired_from_results(results: dict) -> dict:
    """The ``paired`` section of a results.json written by ``freezeframe compare``."""
    settings = results["settings"]
    accuracy = {name: runs_in_order(config["accuracy"]["runs"], settings["seeds"], settings["folds"])
                for name, config in results["configs"].items()}
    return paired_comparison(accuracy, settings["folds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results.json that freezeframe compare wrote")
    args = parser.parse_args()
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
        paired = paired_from_results(results)
    except OSError as err:
        _fail(f"{args.results}: {err.strerror or err}")
    except (ValueError, KeyError, TypeError) as err:
        _fail(f"{args.results}: not a results.json of freezeframe compare ({err})")
    header, rows = paired_table(paired)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(paired_note(paired))
    print()
    print(json.dumps(paired, indent=2))


if __name__ == "__main__":
    main()
