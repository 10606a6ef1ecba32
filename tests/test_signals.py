"""SIGTERM (timeout, systemd, docker stop, CI runners) stops a command as Ctrl-C does: at a safe point, with
one line and exit code 143; what a resumed run records adds up."""

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

from freezeframe.checkpoint import CHECKPOINT_DIR, SUMMARY_FILE, read_state

ENSEMBLE_ARGS = ["--ensemble", "2", "--epochs", "3", "--lr", "1e-3", "--max-length", "32", "--quiet"]


def train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(data), "--model", str(model), "--out", str(out), *ENSEMBLE_ARGS, *extra]


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture
def sigterm_raises():
    """SIGTERM raises KeyboardInterrupt in this process, as under the CLI, so that code that does not hold it
    where it must fails the test instead of killing pytest."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not a background job)
    yield
    signal.signal(signal.SIGTERM, previous)
    signal.signal(signal.SIGINT, sigint)


# In a child process: SIGTERM arrives as member 1's epoch-1 file has been renamed into place, before checkpoint.json
# is written; the writer then waits a moment, as a slow disk would, for the signal to take effect.
SIGTERM_BETWEEN_THE_FILES = """
import os, signal, sys, time
from freezeframe import checkpoint
write = checkpoint.atomic_write_bytes
def write_then_sigterm(path, payload):
    write(path, payload)
    if path.name == "member-0.pt" and not os.environ.get("SIGTERM_SENT"):
        os.environ["SIGTERM_SENT"] = "1"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
checkpoint.atomic_write_bytes = write_then_sigterm
from freezeframe.cli import main
main(sys.argv[1:])
"""


def test_sigterm_saves_the_checkpoint_whole_says_one_line_exits_143_and_resumes_to_the_same_weights(
        run_cli, tiny_model_dir, tiny_data, tmp_path):
    """Before: SIGTERM killed the process wherever it was (exit by the signal, no line), here between a member's
    file and checkpoint.json, which then still said that no epoch of member 1 was saved."""
    reference, out = tmp_path / "reference", tmp_path / "model"
    assert run_cli(*train_args(tiny_model_dir, tiny_data["train"], reference))[0] == 0
    child = subprocess.run([sys.executable, "-c", SIGTERM_BETWEEN_THE_FILES,
                            *train_args(tiny_model_dir, tiny_data["train"], out)],
                           check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert child.returncode == 143, (child.returncode, child.stderr)
    lines = child.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("freezeframe: interrupted by SIGTERM; saved: member 1: "), lines
    assert "--resume" in lines[0] and "Traceback" not in child.stderr
    saved = read_state(out / CHECKPOINT_DIR)
    summary = json.loads((out / CHECKPOINT_DIR / SUMMARY_FILE).read_text())
    epochs = {str(k): len(state["result"]["history"]) for k, state in saved["members"].items()}
    assert summary["epochs_saved"] == {"0": 0, "1": 0, **epochs}, "checkpoint.json says what the member files hold"
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
    assert code == 0, err
    assert same_weights(out, reference)


def test_ctrl_c_as_a_run_without_out_finishes_stops_it(tiny_model_dir, tiny_data, monkeypatch):
    """compare's runs write nothing: a Ctrl-C held while one was finishing was dropped, and compare went on."""
    from freezeframe import fit
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    versions = fit._versions

    def ctrl_c_then_versions():  # while freezeframe.json's record is built
        os.kill(os.getpid(), signal.SIGINT)
        return versions()

    monkeypatch.setattr(fit, "_versions", ctrl_c_then_versions)
    run = RunConfig(DataConfig(Path(tiny_data["train"])), ModelConfig(model=str(tiny_model_dir), freeze="head"),
                    TrainConfig(epochs=1, show_progress=False))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not a background job)
    try:
        with pytest.raises(KeyboardInterrupt):
            fit.train_classifier(run)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_resumed_ensemble_counts_its_earlier_training_time_as_its_members_do(run_cli, tiny_model_dir, tiny_data,
                                                                              tmp_path, monkeypatch, ctrl_c_after):
    """Before: the top-level train_seconds counted the resumed session only, below each member's, which
    counts its saved epochs too."""
    from freezeframe import train

    epoch = train._train_epoch

    def slow_epoch(*args, **kwargs):  # the interrupted session's epochs take long, the resumed one's do not
        time.sleep(0.5)
        return epoch(*args, **kwargs)

    out = tmp_path / "model"
    monkeypatch.setattr(train, "_train_epoch", slow_epoch)
    with ctrl_c_after(2):
        assert run_cli(*train_args(tiny_model_dir, tiny_data["train"], out))[0] == 130
    monkeypatch.setattr(train, "_train_epoch", epoch)
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
    assert code == 0, err
    meta = json.loads((out / "freezeframe.json").read_text())
    members = [run["train_seconds"] for run in meta["member_runs"]]
    # trained at once, the run took at least as long as either member; one after the other, as long as both
    assert meta["train_seconds"] >= max(members), (meta["train_seconds"], members)


def test_a_signal_between_the_two_renames_of_a_replacement_loses_nothing(tmp_path, monkeypatch, sigterm_raises):
    """Before: SIGTERM or Ctrl-C landing after the old directory was moved aside and before the new one took its
    place removed the new one and left the old under a hidden name: --out was gone (a re-export, compare
    --overwrite)."""
    from freezeframe.storage import atomic_directory

    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text("old")
    rename = Path.rename

    def rename_then_sigterm(self, target):
        moved = rename(self, target)
        if self == out:  # the old directory is aside now
            os.kill(os.getpid(), signal.SIGTERM)
        return moved

    monkeypatch.setattr(Path, "rename", rename_then_sigterm)
    with pytest.raises(KeyboardInterrupt), atomic_directory(out, overwrite=True) as staging:
        (staging / "results.json").write_text("new")
    assert (out / "results.json").read_text() == "new", "the new directory is in place before the signal acts"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"], "nothing left aside"


# In a child process: Ctrl-C (as in a terminal, not a background job) or SIGTERM arrives once member 1's first epoch
# is checkpointed, while the run goes on.
SIGNAL_AFTER_THE_FIRST_EPOCH = """
import os, signal, sys
from freezeframe.checkpoint import MemberCheckpoint
save = MemberCheckpoint.save
def save_then_signal(self, state):
    save(self, state)
    if state["epoch"] == 1 and not os.environ.get("SIGNAL_SENT"):
        os.environ["SIGNAL_SENT"] = "1"
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
MemberCheckpoint.save = save_then_signal
signal.signal(signal.SIGINT, signal.default_int_handler)
from freezeframe.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(("family", "sent", "status"), [("roberta", "SIGINT", 130), ("distilbert", "SIGTERM", 143)])
def test_other_families_resume_to_the_weights_of_an_uninterrupted_run(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                      family, sent, status):
    """Resume had been checked on BERT only. A RoBERTa (offset positions, its own two-layer head) and a DistilBERT
    (transformer.layer, pre_classifier) stopped after their first checkpointed epoch resume to the weights an
    uninterrupted run ends with, bit for bit (two members at once, dropout on)."""
    from test_families import _with_tokenizer
    from transformers import DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel

    vocab_size = json.loads((tiny_model_dir / "config.json").read_text())["vocab_size"]
    source = _with_tokenizer(tiny_model_dir, tmp_path / family)
    torch.manual_seed(0)
    if family == "roberta":
        RobertaModel(RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=160, pad_token_id=0)).save_pretrained(source)
    else:
        DistilBertModel(DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                         max_position_embeddings=160)).save_pretrained(source)
    reference, out = tmp_path / "reference", tmp_path / "model"
    assert run_cli(*train_args(source, tiny_data["train"], reference))[0] == 0
    child = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_THE_FIRST_EPOCH, *train_args(source, tiny_data["train"], out)],
                           check=False, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "HF_HUB_OFFLINE": "1", "SIGNAL": sent})
    assert child.returncode == status, (child.returncode, child.stderr)
    last = child.stderr.strip().splitlines()[-1]
    assert last.startswith("freezeframe: interrupted") and "--resume" in last and "Traceback" not in child.stderr, child.stderr
    assert read_state(out / CHECKPOINT_DIR)["members"][0]["epoch"] == 1
    code, _, err = run_cli(*train_args(source, tiny_data["train"], out, "--resume"))
    assert code == 0 and "resuming from the checkpoint of member 1 epoch 1" in err, err
    assert same_weights(out, reference) and not (out / CHECKPOINT_DIR).exists()
