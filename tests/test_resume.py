"""Checkpoints and resume: a run killed (SIGKILL) or interrupted (Ctrl-C) and resumed ends exactly
like an uninterrupted one; resuming with other settings or data is refused; same seed, same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from freezeframe.checkpoint import CHECKPOINT_DIR, STATE_FILE, CheckpointStore, read_state

EPOCHS = 4


def train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    # mean pooling, a high rate and last-2 (cached prefix): the tiny model's best epoch is not the first
    return ["train", "--train", str(data), "--model", str(model), "--out", str(out), "--freeze", "last-2",
            "--pooling", "mean", "--lr", "1e-2", "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--seed", "1",
            "--quiet", *extra]


def looks_complete(out: Path) -> bool:
    return all((out / name).exists() for name in ("freezeframe.json", "config.json", "model.safetensors"))


def outcome(out: Path) -> dict:
    meta = json.loads((out / "freezeframe.json").read_text())
    return {"best_epoch": meta["best_epoch"], "metrics": meta["validation_metrics"],
            "valid_losses": [r["valid_loss"] for r in meta["history"]],
            "train_losses": [r["train_loss"] for r in meta["history"]]}


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, tiny_data) -> Path:
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("resume") / "reference"
    main(train_args(tiny_model_dir, tiny_data["train"], out))
    return out


def test_same_seed_gives_identical_metrics_and_weights(run_cli, uninterrupted, tiny_model_dir, tiny_data, tmp_path):
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], tmp_path / "again"))
    assert code == 0, err
    assert outcome(tmp_path / "again") == outcome(uninterrupted)
    assert same_weights(tmp_path / "again", uninterrupted)
    assert not (uninterrupted / CHECKPOINT_DIR).exists(), "the checkpoint is removed after success"


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                            tmp_path):
    out = tmp_path / "model"
    command = [sys.executable, "-m", "freezeframe", *train_args(tiny_model_dir, tiny_data["train"], out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 180
    while not (out / CHECKPOINT_DIR / STATE_FILE).exists():
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 180 s")
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not looks_complete(out), "a killed run must not leave a directory that looks complete"
    assert 1 <= read_state(out / CHECKPOINT_DIR / STATE_FILE)["epoch"] < EPOCHS
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
    assert code == 0, err
    assert "resuming from the checkpoint of epoch" in err
    assert outcome(out) == outcome(uninterrupted)
    assert same_weights(out, uninterrupted)
    assert not (out / CHECKPOINT_DIR).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left beside --out"


def test_ctrl_c_saves_says_how_to_resume_and_refuses_changes(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                             tmp_path, monkeypatch):
    save = CheckpointStore.save

    def save_then_ctrl_c(self, state):
        save(self, state)
        if state["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(CheckpointStore, "save", save_then_ctrl_c)
    out = tmp_path / "model"
    args = train_args(tiny_model_dir, tiny_data["train"], out)
    code, _, err = run_cli(*args)
    monkeypatch.setattr(CheckpointStore, "save", save)
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert f"interrupted after epoch 2 of {EPOCHS}" in last and "epochs 1-2 are saved" in last and "--resume" in last
    assert "Traceback" not in err and not looks_complete(out)

    code, _, err = run_cli(*args)
    assert code == 2 and "--resume" in err and "--overwrite" in err
    code, _, err = run_cli(*[a if a != "1e-2" else "2e-2" for a in args], "--resume")
    assert code == 2 and "--lr 0.02 (checkpoint: 0.01)" in err
    other = tmp_path / "other.csv"
    other.write_text(Path(tiny_data["train"]).read_text() + "one more camera shot,Cinematography\n")
    code, _, err = run_cli(*[str(other) if a == str(tiny_data["train"]) else a for a in args], "--resume")
    assert code == 2 and "the --train file has different contents" in err

    (tmp_path / ".model.tmp-cut-short").mkdir()  # as a kill during the final write leaves it
    code, _, err = run_cli(*args, "--resume", "--keep-checkpoint")
    assert code == 0, err
    assert not (tmp_path / ".model.tmp-cut-short").exists()
    assert outcome(out) == outcome(uninterrupted)
    assert (out / CHECKPOINT_DIR / STATE_FILE).exists(), "--keep-checkpoint keeps it inside the model directory"


def test_resume_without_a_checkpoint_starts_over_or_refuses(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                            tmp_path):
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], uninterrupted, "--resume"))
    assert code == 2 and "no checkpoint to resume" in err
    fresh = tmp_path / "fresh"
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], fresh, "--resume", "--epochs", "1"))
    assert code == 0 and "starting from epoch 1" in err
    assert looks_complete(fresh)
